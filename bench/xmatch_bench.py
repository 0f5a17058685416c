"""Cross-match benchmark, same positions, same cores, same run:
- `mmu::cross_match` alone (mmu_bench_xmatch, in process) against astropy's
  match on arrays in memory (python3-astropy);
- `mmu-index xmatch` (whole process: read HDF5, match, write CSV) against the
  same steps in Python (h5py, astropy, numpy.savetxt), as a notebook does them.
Each time is the best of --repeat runs, so a busy machine penalises neither
side more. Prints times, ratios and whether the pairs agree.

Run: /usr/bin/python3 bench/xmatch_bench.py --build build [--n 1000000] [--repeat 3] [--work DIR]
"""
import argparse
import os
import platform
import re
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


def timed(fn, repeat=1):
    """Best time of `repeat` calls, and the last call's result."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def in_process(build, lpath, rpath, repeat):
    """Best nearest and all-pairs times of mmu_bench_xmatch (the match alone)."""
    best = {"nearest": float("inf"), "all pairs": float("inf")}
    for _ in range(repeat):
        out = subprocess.run([os.path.join(build, "mmu_bench_xmatch"), lpath, rpath, "1"], capture_output=True,
                             text=True, check=True).stdout
        for mode, key in (("nearest", "nearest"), ("all pairs", "all")):
            best[mode] = min(best[mode], float(re.search(rf"^{key} ([0-9.]+) s", out, re.M).group(1)))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
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
    print(f"positions: {a.n:,} x {a.n:,}, radius 1 arcsec, best of {a.repeat}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")

    exe = os.path.join(a.build, "mmu-index")
    results = {}
    for mode, extra in (("nearest", []), ("all pairs", ["--all"])):
        out = os.path.join(work, f"mmu-{mode.replace(' ', '_')}.csv")
        cmd = [exe, "xmatch", "--left", lpath, "--right", rpath, "--radius", "1arcsec", "--format", "csv"] + extra
        def run():
            with open(out, "w") as f:
                subprocess.run(cmd, stdout=f, stderr=subprocess.DEVNULL, check=True)
        t, _ = timed(run, a.repeat)
        pairs = np.loadtxt(out, delimiter=",", skiprows=1, usecols=(0, 2), dtype=np.int64, ndmin=2)
        results[mode] = (t, {(int(l), int(r) - 10**9) for l, r in pairs})

    from astropy import units as u
    from astropy.coordinates import SkyCoord, search_around_sky

    # Timed: SkyCoord construction and the match, up to index arrays (not the
    # Python sets built from them for the comparison).
    def astropy_nearest():
        lc = SkyCoord(left[0] * u.deg, left[1] * u.deg)
        rc = SkyCoord(right[0] * u.deg, right[1] * u.deg)
        idx, sep, _ = lc.match_to_catalog_sky(rc)
        keep = sep.to_value(u.deg) <= radius
        return np.nonzero(keep)[0], idx[keep]

    def astropy_all():
        lc = SkyCoord(left[0] * u.deg, left[1] * u.deg)
        rc = SkyCoord(right[0] * u.deg, right[1] * u.deg)
        il, ir, _, _ = search_around_sky(lc, rc, radius * u.deg)
        return il, ir

    def read(path):
        with h5py.File(path, "r") as f:
            return f["object_id"][:], f["ra"][:], f["dec"][:]

    def pipeline(mode):
        """Whole steps as in a notebook: read both files, match, write the CSV."""
        (lid, lra, ldec), (rid, rra, rdec) = read(lpath), read(rpath)
        lc, rc = SkyCoord(lra * u.deg, ldec * u.deg), SkyCoord(rra * u.deg, rdec * u.deg)
        if mode == "nearest":
            idx, sep, _ = lc.match_to_catalog_sky(rc)
            il = np.nonzero(sep.to_value(u.deg) <= radius)[0]
            ir, sep = idx[il], sep[il]
        else:
            il, ir, sep, _ = search_around_sky(lc, rc, radius * u.deg)
        rows = np.empty((len(il), 3))
        rows[:, 0], rows[:, 1], rows[:, 2] = lid[il], rid[ir], sep.to_value(u.arcsec)
        np.savetxt(os.path.join(work, "astropy.csv"), rows, fmt="%d,left,%d,right,%.6f",
                   header="left_id,left_survey,right_id,right_survey,sep_arcsec", comments="")

    core = in_process(a.build, lpath, rpath, a.repeat)
    peers, whole_peers = {}, {}
    for mode, fn in (("nearest", astropy_nearest), ("all pairs", astropy_all)):
        t, (il, ir) = timed(fn, a.repeat)
        peers[mode] = (t, {(int(i), int(j)) for i, j in zip(il, ir)})
        whole_peers[mode], _ = timed(lambda: pipeline(mode), a.repeat)
    print(f"{'mode':10} {'astropy':>8} {'in process':>11} {'ratio':>6} {'python steps':>13} {'whole process':>14} "
          f"{'ratio':>6}  pairs")
    for mode in ("nearest", "all pairs"):
        (tm, pm), (ta, pa), tc, tw = results[mode], peers[mode], core[mode], whole_peers[mode]
        agree = "identical" if pm == pa else f"differ: {len(pm - pa)} only ours, {len(pa - pm)} only astropy"
        print(f"{mode:10} {ta:6.2f} s {tc:9.3f} s {ta / tc:5.1f}x {tw:11.2f} s {tm:12.3f} s {tw / tm:5.1f}x"
              f"  {len(pm):,} ({agree})")


if __name__ == "__main__":
    main()
