"""`mmu-index xmatch --format csv` in nearest mode writes its rows straight
from the match's answers; every other output goes through the vector of
pairs. The two must agree row for row: the CSV is compared with the JSON
output of the same match (ids, surveys, "%.6f" separations), over enough
rows for several of the CSV writer's blocks, and with a numpy haversine
brute force on a sample of left objects (nearest right object within the
radius, lowest index on ties).
Run: test_xmatch_nearest_csv.py --bin BUILD --tmp DIR
"""
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, binaries_samples_tmp  # noqa: E402
from mmu_fixtures import write_positions  # noqa: E402

CHECKS = Checks()
check = CHECKS.check
RADIUS = 2.0  # arcsec


def main():
    a, mmu_index, _ = binaries_samples_tmp(inputs=())
    rng = np.random.default_rng(19)
    n = 40000
    # A small field (many pairs), the ra seam and a pole; the right side is
    # half copies of the left moved by < 2 radii, half fresh positions.
    lra = np.concatenate([10 + rng.random(n // 2) * 0.2, np.mod((rng.random(n // 4) - 0.5) * 0.02, 360),
                          rng.random(n - n // 2 - n // 4) * 360])
    ldec = np.concatenate([rng.random(n // 2) * 0.2, rng.random(n // 4) * 0.02,
                           90 - rng.random(n - n // 2 - n // 4) * 0.01])
    r = RADIUS / 3600
    rra = np.where(np.arange(n) % 2 == 0, np.mod(lra + (rng.random(n) - 0.5) * 2 * r / np.maximum(np.cos(np.radians(ldec)), 1e-3), 360),
                   10 + rng.random(n) * 0.2)
    rdec = np.where(np.arange(n) % 2 == 0, np.clip(ldec + (rng.random(n) - 0.5) * 2 * r, -90, 90), rng.random(n) * 0.2)
    left, right = os.path.join(a.tmp, "lcat", "l.h5"), os.path.join(a.tmp, "rcat", "r.h5")
    lids, rids = np.arange(n, dtype=np.int64) - 5000, np.arange(n, dtype=np.int64) + 10**12
    write_positions(left, lids, lra, ldec)
    write_positions(right, rids, rra, rdec)

    def run(fmt):
        p = subprocess.run([mmu_index, "xmatch", "--left", left, "--right", right, "--radius", f"{RADIUS}arcsec",
                            "--format", fmt], capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, f"xmatch --format {fmt} exits 0 ({p.stderr.strip()[-300:]})")
        return p.stdout

    rows = list(csv.reader(io.StringIO(run("csv"))))
    check(rows[0] == ["left_id", "left_survey", "right_id", "right_survey", "sep_arcsec"], "CSV header")
    rows = rows[1:]
    pairs = json.loads(run("json"))
    as_json = [[str(p["left_id"]), p["left_survey"], str(p["right_id"]), p["right_survey"], f"{p['sep_arcsec']:.6f}"]
               for p in pairs]
    check(len(rows) > 20000, f"enough rows for several CSV blocks ({len(rows)})")
    check(rows == as_json, f"CSV rows equal the JSON pairs ({len(rows)} against {len(as_json)})")

    # Brute force on every 40th left object.
    got = {int(row[0]): (int(row[2]), float(row[4])) for row in rows}
    sample = np.arange(0, n, 40)
    d1, r1 = np.radians(ldec[sample])[:, None], np.radians(lra[sample])[:, None]
    d2, r2 = np.radians(rdec)[None, :], np.radians(rra)[None, :]
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    sep = np.degrees(2 * np.arcsin(np.sqrt(np.minimum(1, h)))) * 3600
    bad = 0
    for k, i in enumerate(sample):
        j = int(np.argmin(sep[k]))  # lowest index among equal minima
        want = (int(rids[j]), sep[k, j]) if sep[k, j] <= RADIUS * (1 - 1e-12) else None
        have = got.get(int(lids[i]))
        if sep[k, j] > RADIUS * (1 - 1e-12) and sep[k, j] <= RADIUS * (1 + 1e-12):
            continue  # within rounding of the radius: either answer is right
        if (want is None) != (have is None) or (want and (want[0] != have[0] or abs(want[1] - have[1]) > 2e-6)):
            bad += 1
    check(bad == 0, f"nearest pairs equal the brute force on {len(sample)} left objects ({bad} differ)")
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
