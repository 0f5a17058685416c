"""Cross-match benchmark, same positions, same cores, same run:
- the match alone (mmu_bench_xmatch, in process: the right side indexed,
  every pair found, sorted and readable) against astropy's match on arrays in
  memory (python3-astropy), each best of --repeat calls in one process whose
  memory is warm;
- `mmu-index xmatch` (whole process: read HDF5, match, write CSV) against the
  same steps in Python (h5py, astropy, numpy.savetxt), as a notebook does them.
Each time is the best of --repeat runs (ours: of --repeat-ours, as they are
short; their median is printed too), so a busy machine penalises neither side
more. Prints wall and CPU times (CPU time, user + system of every thread,
is less inflated than wall time when other processes load the machine), both
ratios per mode, the load average, whether the pairs agree, and the file
system both CSVs are written to (the same folder, --work).

Run: /usr/bin/python3 bench/xmatch_bench.py --build build [--n 1000000] [--repeat 3] [--repeat-ours 7] [--work DIR]
"""
import argparse
import os
import platform
import re
import resource
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


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, repeat=1):
    """Best wall and best CPU time of `repeat` calls of fn in this process, and
    the last call's result."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), cpu_self()
        out = fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, cpu_self() - c)
    return best, best_cpu, out


def run_timed(cmd, out_path, repeat):
    """Best wall and best CPU time (the child's user + system) of `repeat` runs
    of cmd with stdout to out_path, and the median wall time. Not warmed as
    the in-process matches are: a block of memory freed just before made the
    command slower (0.147-0.179 s best of 7, against 0.137-0.148 s best of 3
    without), as this VM's guest hands freed memory back to the host meanwhile."""
    best, best_cpu, walls = float("inf"), float("inf"), []
    for _ in range(repeat):
        with open(out_path, "w") as f:
            t = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(p.pid, 0)
            walls.append(time.perf_counter() - t)
            best = min(best, walls[-1])
        if status != 0:
            raise SystemExit(f"{' '.join(cmd)} failed (status {status})")
        best_cpu = min(best_cpu, usage.ru_utime + usage.ru_stime)
    return best, best_cpu, sorted(walls)[len(walls) // 2]


def in_process(build, lpath, rpath, repeat, warm_mb=512):
    """Best nearest and all-pairs wall and CPU times (and the median wall time) of `repeat` matches in one
    mmu_bench_xmatch process (the match alone), as astropy's are timed in this
    one, and the rate at which the process first got warm_mb of fresh memory
    (mapped and freed before the matches: see warm_memory in xmatch_core.cpp)."""
    best = {m: [float("inf"), float("inf")] for m in ("nearest", "all pairs")}
    out = subprocess.run([os.path.join(build, "mmu_bench_xmatch"), lpath, rpath, "1", str(repeat), str(warm_mb)],
                         capture_output=True, text=True, check=True).stdout
    for mode, key in (("nearest", "nearest"), ("all pairs", "all")):
        walls = []
        for m in re.finditer(rf"^{key} ([0-9.]+) s \(cpu ([0-9.]+) s\)", out, re.M):
            walls.append(float(m.group(1)))
            best[mode][0] = min(best[mode][0], walls[-1])
            best[mode][1] = min(best[mode][1], float(m.group(2)))
        best[mode].append(sorted(walls)[len(walls) // 2])
    return best, float(re.search(r"^fresh memory ([0-9.]+) GB/s", out, re.M).group(1))


def file_system(path):
    """'tmpfs', 'ext4', ... of the file system holding path (from /proc/mounts)."""
    path, best = os.path.realpath(path), ("?", "")
    for line in open("/proc/mounts"):
        _, mount, kind = line.split()[:3]
        if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best[1]):
            best = (kind, mount)
    return f"{best[0]} (mounted at {best[1]})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    # Ours take 0.1-0.4 s, theirs 3-15 s: a burst of this VM's noise (other
    # tenants, the host backing memory) fills a short run and averages out in a
    # long one. So ours are repeated more, for about the same exposure, as
    # timeit repeats a short statement; the median of ours is printed too.
    ap.add_argument("--repeat-ours", type=int, default=7)
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
    print(f"positions: {a.n:,} x {a.n:,}, radius 1 arcsec, best of {a.repeat} (Python, astropy) and of "
          f"{a.repeat_ours} (ours), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"both CSVs written to {os.path.abspath(work)}: {file_system(work)}")

    exe = os.path.join(a.build, "mmu-index")
    results = {}
    for mode, extra in (("nearest", []), ("all pairs", ["--all"])):
        out = os.path.join(work, f"mmu-{mode.replace(' ', '_')}.csv")
        cmd = [exe, "xmatch", "--left", lpath, "--right", rpath, "--radius", "1arcsec", "--format", "csv"] + extra
        t, cpu, median = run_timed(cmd, out, a.repeat_ours)
        pairs = np.loadtxt(out, delimiter=",", skiprows=1, usecols=(0, 2), dtype=np.int64, ndmin=2)
        results[mode] = (t, cpu, {(int(l), int(r) - 10**9) for l, r in pairs}, os.getloadavg()[0], median)

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

    core, fresh_rate = in_process(a.build, lpath, rpath, a.repeat_ours)
    peers, whole_peers = {}, {}
    for mode, fn in (("nearest", astropy_nearest), ("all pairs", astropy_all)):
        t, cpu, (il, ir) = timed(fn, a.repeat)
        peers[mode] = (t, cpu, {(int(i), int(j)) for i, j in zip(il, ir)})
        whole_peers[mode] = timed(lambda: pipeline(mode), a.repeat)[:2]
    print("wall seconds (CPU seconds), best of each; ratio = theirs / ours, wall (CPU)")
    print(f"{'mode':10} {'astropy':>14} {'in process':>15} {'ratio':>13} {'python steps':>15} "
          f"{'whole command':>15} {'ratio':>13} {'load':>5}  pairs")
    for mode in ("nearest", "all pairs"):
        (tm, cm, pm, load, _), (ta, ca, pa), (tc, cc, _), (tw, cw) = (results[mode], peers[mode], core[mode],
                                                                       whole_peers[mode])
        agree = "identical" if pm == pa else f"differ: {len(pm - pa)} only ours, {len(pa - pm)} only astropy"
        print(f"{mode:10} {ta:5.2f} ({ca:5.2f}) {tc:6.3f} ({cc:5.3f}) {ta / tc:5.1f}x ({ca / cc:4.1f}x) "
              f"{tw:6.2f} ({cw:5.2f}) {tm:6.3f} ({cm:5.3f}) {tw / tm:5.1f}x ({cw / cm:4.1f}x) {load:5.2f}"
              f"  {len(pm):,} ({agree})")
    for mode in ("nearest", "all pairs"):
        tc, tm = core[mode][2], results[mode][4]
        print(f"ours, median of {a.repeat_ours}: {mode} in process {tc:.3f} s ({peers[mode][0] / tc:.1f}x), "
              f"whole command {tm:.3f} s ({whole_peers[mode][0] / tm:.1f}x)")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"fresh memory before the in-process matches: {fresh_rate:.2f} GB/s (this VM: ~0.6 where the host "
          f"backs pages at first touch, ~20 where they were freed a moment ago; the matches then reuse them)")


if __name__ == "__main__":
    main()
