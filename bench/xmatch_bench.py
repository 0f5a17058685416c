"""Cross-match benchmark: `mmu-index xmatch` against astropy (python3-astropy)
on the same positions, same cores, same run. Prints times, ratios and whether
the pairs agree.

Run: /usr/bin/python3 bench/xmatch_bench.py --build build [--n 1000000] [--work DIR]
"""
import argparse
import os
import platform
import subprocess
import time

import h5py
import numpy as np


def positions(n, rng, base=None, radius_deg=None):
    """Uniform sky plus hard places: a strip along a cell border, the ra seam,
    both poles. With base, half the points are copies of base moved < 2 radii."""
    kind = rng.random(n)
    ra = rng.random(n) * 360
    dec = np.degrees(np.arcsin(2 * rng.random(n) - 1))
    strip = kind < 0.2
    ra[strip] = 40 + 2 * rng.random(strip.sum())
    dec[strip] = 41.8103149 + (rng.random(strip.sum()) - 0.5) * 0.05
    seam = (kind >= 0.2) & (kind < 0.3)
    ra[seam] = np.mod((rng.random(seam.sum()) - 0.5) * 0.1, 360)
    dec[seam] = 10 + rng.random(seam.sum())
    for sign, lo, hi in ((1, 0.3, 0.35), (-1, 0.35, 0.4)):
        cap = (kind >= lo) & (kind < hi)
        dec[cap] = sign * (90 - 0.02 * rng.random(cap.sum()))
    if base is not None:
        half = np.arange(n) % 2 == 0
        d = 2 * radius_deg * rng.random(half.sum())
        pa = 2 * np.pi * rng.random(half.sum())
        bdec = base[1][half]
        dec[half] = np.clip(bdec + d * np.cos(pa), -90, 90)
        ra[half] = np.mod(base[0][half] + d * np.sin(pa) / np.maximum(np.cos(np.radians(bdec)), 1e-6), 360)
    return ra, dec


def write(path, ra, dec, id0):
    with h5py.File(path, "w") as f:
        f.create_dataset("object_id", data=np.arange(len(ra), dtype=np.int64) + id0)
        f.create_dataset("ra", data=ra)
        f.create_dataset("dec", data=dec)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or os.path.join(a.build, "bench-xmatch")
    os.makedirs(work, exist_ok=True)
    radius = 1.0 / 3600
    rng = np.random.default_rng(5)
    left = positions(a.n, rng)
    right = positions(a.n, rng, base=left, radius_deg=radius)
    lpath, rpath = os.path.join(work, "left.h5"), os.path.join(work, "right.h5")
    write(lpath, *left, 0)
    write(rpath, *right, 10**9)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')}, "
          f"{platform.platform()}")
    print(f"positions: {a.n:,} x {a.n:,}, radius 1 arcsec")

    exe = os.path.join(a.build, "mmu-index")
    results = {}
    for mode, extra in (("nearest", []), ("all pairs", ["--all"])):
        out = os.path.join(work, f"mmu-{mode.replace(' ', '_')}.csv")
        cmd = [exe, "xmatch", "--left", lpath, "--right", rpath, "--radius", "1arcsec", "--format", "csv"] + extra
        t, _ = timed(lambda: subprocess.run(cmd, stdout=open(out, "w"), stderr=subprocess.DEVNULL, check=True))
        pairs = np.loadtxt(out, delimiter=",", skiprows=1, usecols=(0, 2), dtype=np.int64, ndmin=2)
        results[mode] = (t, {(int(l), int(r) - 10**9) for l, r in pairs})

    from astropy import units as u
    from astropy.coordinates import SkyCoord, search_around_sky

    def astropy_nearest():
        lc = SkyCoord(left[0] * u.deg, left[1] * u.deg)
        rc = SkyCoord(right[0] * u.deg, right[1] * u.deg)
        idx, sep, _ = lc.match_to_catalog_sky(rc)
        keep = sep.to_value(u.deg) <= radius
        return {(int(i), int(j)) for i, j in zip(np.nonzero(keep)[0], idx[keep])}

    def astropy_all():
        lc = SkyCoord(left[0] * u.deg, left[1] * u.deg)
        rc = SkyCoord(right[0] * u.deg, right[1] * u.deg)
        il, ir, _, _ = search_around_sky(lc, rc, radius * u.deg)
        return {(int(i), int(j)) for i, j in zip(il, ir)}

    peers = {"nearest": timed(astropy_nearest), "all pairs": timed(astropy_all)}
    print(f"{'mode':10} {'mmu-index xmatch (whole process)':>34} {'astropy (in-process)':>22} {'ratio':>7}  pairs")
    for mode in ("nearest", "all pairs"):
        (tm, pm), (ta, pa) = results[mode], peers[mode]
        agree = "identical" if pm == pa else f"differ: {len(pm - pa)} only ours, {len(pa - pm)} only astropy"
        print(f"{mode:10} {tm:31.2f} s {ta:19.2f} s {ta / tm:6.1f}x  {len(pm):,} ({agree})")


if __name__ == "__main__":
    main()
