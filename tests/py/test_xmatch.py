"""`mmu-index xmatch` against an independent numpy haversine brute force and the
sample truth table, and `--link` making a spectrum's id reach the image space.
Run: test_xmatch.py --bin BUILD --samples DIR --tmp DIR
"""
import csv
import io
import json
import os
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, binaries_samples_tmp  # noqa: E402

CHECKS = Checks()
check = CHECKS.check


def run(cmd, ok=True):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if ok and p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p


def read_positions(root):
    ids, ra, dec = [], [], []
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            with h5py.File(os.path.join(dirpath, name), "r") as f:
                for raw in f["object_id"][:]:
                    ids.append(raw.decode().rstrip("\0") if isinstance(raw, bytes) else str(int(raw)))
                ra.extend(f["ra"][:].astype(float))
                dec.extend(f["dec"][:].astype(float))
    return ids, np.radians(ra), np.radians(dec)


def haversine_arcsec(ra1, dec1, ra2, dec2):
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.minimum(1, h)))) * 3600


def main():
    a, index, search = binaries_samples_tmp()
    store = os.path.join(a.tmp, "store")
    run([index, "build", a.samples, "--store", store, "--quiet"])
    left = os.path.join(a.samples, "legacysurvey")
    right = os.path.join(a.samples, "desi")
    lid, lra, ldec = read_positions(left)
    rid, rra, rdec = read_positions(right)
    sep = haversine_arcsec(lra[:, None], ldec[:, None], rra[None, :], rdec[None, :])

    for radius in (0.5, 1.0, 30.0):
        for extra in ([], ["--all"]):
            # Folders, store surveys and STORE:SURVEY must give the same pairs.
            for lspec, rspec in ((left, right), ("legacysurvey", "desi"), (store + ":legacysurvey", store + ":desi")):
                p = run([index, "xmatch", "--left", lspec, "--right", rspec, "--radius", f"{radius}arcsec",
                         "--format", "csv", "--store", store] + extra)
                got = [(r["left_id"], r["right_id"], float(r["sep_arcsec"])) for r in csv.DictReader(io.StringIO(p.stdout))]
                want = []
                for i in range(len(lid)):
                    js = [j for j in np.argsort(sep[i], kind="stable") if sep[i, j] <= radius]
                    if not extra:
                        js = js[:1]
                    want += [(lid[i], rid[j], sep[i, j]) for j in js]
                key = lambda t: (t[0], t[1])
                check(sorted(map(key, got)) == sorted(map(key, want)),
                      f"radius {radius} {extra} {lspec}: {len(got)} pairs vs brute force {len(want)}")
                wmap = {key(w): w[2] for w in want}
                check(all(abs(g[2] - wmap.get(key(g), -1)) < 1e-5 for g in got), f"radius {radius}: separations")

    # Every galaxy the truth table puts in both surveys is matched within 1".
    with open(os.path.join(a.samples, "truth.csv")) as f:
        truth = list(csv.DictReader(f))
    by_galaxy = {}
    for t in truth:
        by_galaxy.setdefault(t["galaxy"], {})[t["survey"]] = t["object_id"]
    expected = {(g["legacysurvey"], g["desi"]) for g in by_galaxy.values() if len(g) == 2}
    p = run([index, "xmatch", "--left", "legacysurvey", "--right", "desi", "--store", store, "--format", "json",
             "--link"])
    pairs = {(r["left_id"], r["right_id"]) for r in json.loads(p.stdout)}
    check(expected <= pairs, f"truth pairs missed: {sorted(expected - pairs)[:3]}")
    check("linked" in p.stderr, "--link reports what it linked")

    # A spectrum's id now reaches the image space through its link.
    lsid, did = sorted(expected)[0]
    p = run([search, "--store", store, "--like", did, "--space", "image", "--k", "5", "--format", "json"])
    res = json.loads(p.stdout)
    check(res.get("via", {}).get("object_id") == lsid, f"linked query used {res.get('via')} not {lsid}")
    direct = json.loads(run([search, "--store", store, "--like", lsid, "--k", "5", "--format", "json"]).stdout)
    check([r["object_id"] for r in res["results"]] == [r["object_id"] for r in direct["results"]],
          "linked query equals querying the image object itself")

    # Bad radius and --link on folders are refused by name.
    p = run([index, "xmatch", "--left", left, "--right", right, "--radius", "1parsec"], ok=False)
    check(p.returncode == 1 and "--radius" in p.stderr, "bad radius unit")
    p = run([index, "xmatch", "--left", left, "--right", right, "--link", "--store", store], ok=False)
    check(p.returncode == 1 and "--link" in p.stderr, "--link needs store sides")
    p = run([index, "xmatch", "--left", "nosuchsurvey", "--right", "desi", "--store", store], ok=False)
    check(p.returncode == 1 and "nosuchsurvey" in p.stderr, "unknown survey named")

    # A position no match can use is refused by object and file, not skipped.
    odd = os.path.join(a.tmp, "odd.h5")
    with h5py.File(odd, "w") as f:
        f["object_id"] = np.arange(3, dtype=np.int64)
        f["ra"] = np.array([10.0, 20.0, np.nan])
        f["dec"] = np.array([0.0, 30.0, 0.0])
    p = run([index, "xmatch", "--left", odd, "--right", right, "--radius", "1arcsec"], ok=False)
    check(p.returncode == 1 and "'2'" in p.stderr and odd in p.stderr, f"NaN position named: {p.stderr!r}")

    # A CSV of several formatting blocks (65,536 rows each, formatted by all
    # threads, written in order): rows in (left, separation, right) order, the
    # fields as ever, the pairs astropy finds. Ids of varying length, so that
    # rows differ in size.
    rng = np.random.default_rng(19)
    n = 60000
    lra, ldec = 150 + rng.random(n), 2 + rng.random(n)
    rra = np.concatenate([lra + rng.normal(0, 0.3, n) / 3600, lra + rng.normal(0, 0.3, n) / 3600])
    rdec = np.concatenate([ldec + rng.normal(0, 0.3, n) / 3600, ldec + rng.normal(0, 0.3, n) / 3600])
    for name, ids, ra, dec in (("left", np.arange(n) * 7919, lra, ldec), ("right", np.arange(2 * n) + 10**12, rra, rdec)):
        with h5py.File(os.path.join(a.tmp, name + ".h5"), "w") as f:
            f["object_id"], f["ra"], f["dec"] = ids, ra, dec
    p = run([index, "xmatch", "--left", os.path.join(a.tmp, "left.h5"), "--right", os.path.join(a.tmp, "right.h5"),
             "--radius", "1arcsec", "--all", "--format", "csv"])
    lines = p.stdout.splitlines()
    check(lines[0] == "left_id,left_survey,right_id,right_survey,sep_arcsec", "CSV header")
    rows = [l.split(",") for l in lines[1:]]
    check(len(rows) > 65536, f"several CSV blocks ({len(rows)} rows)")
    import re
    survey = os.path.basename(a.tmp)  # files at a root are named after it
    check(all(len(r) == 5 and r[1] == survey and r[3] == survey and re.fullmatch(r"\d+\.\d{6}", r[4]) for r in rows),
          "every CSV row: id,survey,id,survey,separation with 6 decimals")
    order = [(int(r[0]) // 7919, float(r[4]), int(r[2])) for r in rows]
    check(order == sorted(order), "CSV rows in (left, separation, right) order across blocks")
    from astropy import units as u
    from astropy.coordinates import SkyCoord, search_around_sky
    il, ir, sep, _ = search_around_sky(SkyCoord(lra * u.deg, ldec * u.deg), SkyCoord(rra * u.deg, rdec * u.deg),
                                       1 * u.arcsec)
    want = {(int(i) * 7919, int(j) + 10**12): s for i, j, s in zip(il, ir, sep.to_value(u.arcsec))}
    got = {(int(r[0]), int(r[2])): float(r[4]) for r in rows}
    near_edge = {k for k, s in want.items() if abs(s - 1) < 1e-9}
    check(set(got) - near_edge == set(want) - near_edge and all(abs(got[k] - want[k]) < 2e-6 for k in got.keys() & want.keys()),
          f"CSV pairs = astropy's ({len(got)} vs {len(want)})")

    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
