"""`mmu-index xmatch --format csv` with every kind of object id: int64 (negative
too), uint64 beyond 2^63, fixed and variable-length strings, and a folder whose
files mix integer and string ids. The CSV is compared with an independent
numpy haversine brute force (ids as h5py reads them, separations as Python's
"%.6f" prints them). Also: a CSV that cannot be written is an error naming
standard output, and an invalid position names the file and the integer id.
Run: test_xmatch_ids.py --bin BUILD --tmp DIR
"""
import os
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, binaries_samples_tmp  # noqa: E402
from mmu_fixtures import write_positions  # noqa: E402

CHECKS = Checks()
check = CHECKS.check
RADIUS = 5.0  # arcsec


def positions(rng, n, base=None):
    """Clustered positions (many pairs per point) near the ra seam and a pole too."""
    if base is None:
        centre_ra = rng.choice([0.0, 120.0, 359.9999], n)
        centre_dec = rng.choice([10.0, -30.0, 89.999], n)
        return (np.mod(centre_ra + rng.normal(0, 4e-3, n), 360), np.clip(centre_dec + rng.normal(0, 4e-3, n), -90, 90))
    ra, dec = base
    idx = rng.integers(0, len(ra), n)
    return np.mod(ra[idx] + rng.normal(0, 1e-3, n), 360), np.clip(dec[idx] + rng.normal(0, 1e-3, n), -90, 90)


def separations_arcsec(ra1, dec1, ra2, dec2):
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((d2[None, :] - d1[:, None]) / 2) ** 2 + np.cos(d1)[:, None] * np.cos(d2)[None, :] * np.sin(
        (r2[None, :] - r1[:, None]) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.minimum(1, h)))) * 3600


def xmatch(mmu_index, left, right, *extra, stdout=subprocess.PIPE):
    return subprocess.run([mmu_index, "xmatch", "--left", left, "--right", right, "--radius", f"{RADIUS}arcsec",
                           "--format", "csv", *extra], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120)


def main():
    a, mmu_index, _ = binaries_samples_tmp(inputs=())
    rng = np.random.default_rng(3)
    n = 1500
    # Left: folder 'cat' with two files, int64 ids then fixed-width strings
    # (trailing spaces trimmed, as the reader's canonical text has them).
    lra, ldec = positions(rng, 2 * n)
    left = os.path.join(a.tmp, "cat")
    int_ids = np.arange(n, dtype=np.int64) * 7919 - 10**12
    str_ids = np.array([f"J{i:05d}  ".encode() for i in range(n)], dtype="S8")
    write_positions(os.path.join(left, "a.h5"), int_ids, lra[:n], ldec[:n])
    write_positions(os.path.join(left, "b.h5"), str_ids, lra[n:], ldec[n:])
    left_ids = [str(int(i)) for i in int_ids] + [s.decode().rstrip() for s in str_ids]
    # Right files: uint64 ids beyond 2^63, and variable-length strings.
    rra, rdec = positions(rng, n, base=(lra, ldec))
    u64 = os.path.join(a.tmp, "u64", "right.h5")
    u64_ids = np.arange(n, dtype=np.uint64) + np.uint64(2**63 + 5)
    write_positions(u64, u64_ids, rra, rdec)
    vlen = os.path.join(a.tmp, "vlen", "right.h5")
    vlen_ids = np.array([f"src-{i}" for i in range(n)], dtype=object)
    write_positions(vlen, vlen_ids.astype(h5py.string_dtype()), rra, rdec)

    sep = separations_arcsec(lra, ldec, rra, rdec)
    for right, right_ids, survey in ((u64, [str(int(i)) for i in u64_ids], "u64"),
                                     (vlen, [str(s) for s in vlen_ids], "vlen")):
        for mode, extra in (("all pairs", ["--all"]), ("nearest", [])):
            p = xmatch(mmu_index, left, right, *extra)
            if not check(p.returncode == 0, f"{survey} {mode}: exit 0 ({p.stderr.strip()[-300:]})"):
                continue
            lines = p.stdout.splitlines()
            check(lines[0] == "left_id,left_survey,right_id,right_survey,sep_arcsec", f"{survey} {mode}: header")
            got = {}
            for line in lines[1:]:
                lid, ls, rid, rs, s = line.split(",")
                got[(lid, ls, rid, rs)] = s
            want = {}
            for i in range(2 * n):
                js = np.nonzero(sep[i] <= RADIUS)[0]
                if mode == "nearest" and len(js):
                    js = js[[np.argmin(sep[i, js])]]
                for j in js:
                    want[(left_ids[i], "cat", right_ids[j], survey)] = sep[i, j]
            edge = {k for k, s in want.items() if abs(s - RADIUS) < 1e-9}
            check(set(got) - edge == set(want) - edge, f"{survey} {mode}: the pairs of the brute force "
                  f"({len(got)} vs {len(want)}; {len(set(got) ^ set(want))} differ)")
            # Printed as Python's "%.6f" of the brute force's separation, but
            # for values whose 7th decimal sits on a rounding edge.
            text_ok = all(got[k] == "%.6f" % want[k] or abs(float(got[k]) - want[k]) <= 5.1e-7
                          for k in got.keys() & want.keys())
            check(text_ok, f"{survey} {mode}: separations printed as %.6f")
            check(len(lines) - 1 >= (3 * n if mode == "all pairs" else n), f"{survey} {mode}: many rows ({len(lines) - 1})")

    # A CSV that cannot be written fails loudly, naming standard output.
    with open("/dev/full", "w") as full:
        p = xmatch(mmu_index, left, u64, "--all", stdout=full)
    check(p.returncode != 0 and "standard output" in p.stderr, f"/dev/full: error naming standard output "
          f"(exit {p.returncode}: {p.stderr.strip()[-200:]})")

    # An invalid position names its file and its integer id.
    bad = os.path.join(a.tmp, "bad", "bad.h5")
    bad_dec = ldec[:n].copy()
    bad_dec[777] = 91.0
    write_positions(bad, int_ids, lra[:n], bad_dec)
    p = xmatch(mmu_index, bad, u64)
    check(p.returncode == 1 and f"object '{int_ids[777]}'" in p.stderr and "bad.h5" in p.stderr,
          f"invalid position: file and id named ({p.stderr.strip()[-200:]})")

    # A string id that is not UTF-8, or empty, is refused naming file and row.
    for label, raw, why in (("utf8", b"\xff\xfe", "not valid UTF-8"), ("empty", b"", "empty object_id")):
        bad_ids = str_ids.copy()
        bad_ids[5] = raw
        path = os.path.join(a.tmp, label, "ids.h5")
        write_positions(path, bad_ids, lra[n:], ldec[n:])
        p = xmatch(mmu_index, path, u64)
        check(p.returncode == 1 and "row 5" in p.stderr and why in p.stderr and "ids.h5" in p.stderr,
              f"{label} id: file and row named ({p.stderr.strip()[-200:]})")
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
