#!/usr/bin/env python3
"""Peak memory of a sharded build (issue 18, docs/SCALING.md "Memory of a build"): writes a tree of
N small MMU image files (32x32x4 LZF cutouts, one file per nside-16 cell, positions inside their cell),
then runs `mmu-index fit` and `mmu-index build --fit` under /usr/bin/time -v and prints their peak RSS.

  /usr/bin/python3 bench/shard_memory.py --bin build --tmp /work/tmp-shards/mem --objects 20000 40000 80000
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mmu_healpix import mmu_cell  # noqa: E402

SIZE, BANDS = 32, 4


def write_tree(root, n, cells, seed=0):
    """n objects over `cells` files; each file's objects lie in its own cell."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, 4 * n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 4 * n)))
    cell = np.asarray(mmu_cell(ra, dec))
    chosen = np.unique(cell)[:cells]
    per = n // len(chosen)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    made = 0
    for k, c in enumerate(chosen):
        idx = np.nonzero(cell == c)[0]
        m = per if k < len(chosen) - 1 else n - made
        take = idx[rng.integers(0, len(idx), m)]
        sx = rng.uniform(2, 8, (m, 1, 1, 1)).astype(np.float32)
        amp = rng.uniform(0.5, 5, (m, BANDS, 1, 1)).astype(np.float32)
        r2 = ((xx - SIZE / 2) ** 2 + (yy - SIZE / 2) ** 2)[None, None]
        img = amp * np.exp(-0.5 * r2 / sx ** 2) + rng.normal(0, 0.02, (m, BANDS, SIZE, SIZE)).astype(np.float32)
        path = os.path.join(root, "legacysurvey", "dr10_south_21", "healpix=%d" % c, "001-of-001.hdf5")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with h5py.File(path, "w") as f:
            f["object_id"] = np.array([("B%07d" % (made + i)).encode() for i in range(m)], dtype="S16")
            f["ra"] = ra[take]
            f["dec"] = dec[take]
            f["healpix"] = np.full(m, c, dtype=np.int64)
            f.create_dataset("image_array", data=img.astype(np.float32), compression="lzf", chunks=(1, BANDS, SIZE, SIZE))
            f["image_band"] = np.array([b"DES-G", b"DES-R", b"DES-I", b"DES-Z"])
        made += m
    return len(chosen)


def peak_rss(cmd, env=None):
    """(peak RSS in MB, seconds) of cmd under /usr/bin/time -v."""
    t = time.time()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr[-2000:]))
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return kb / 1024.0, time.time() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--objects", type=int, nargs="+", default=[20000, 40000, 80000])
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--sample-cells", type=int, default=4)
    a = ap.parse_args()
    index = os.path.join(a.bin, "mmu-index")
    print("objects  cells  fit_MB  fit_s  build_MB  build_s  (build --fit, whole tree)")
    for n in a.objects:
        shutil.rmtree(a.tmp, ignore_errors=True)
        root = os.path.join(a.tmp, "tree")
        cells = write_tree(root, n, a.cells)
        fit = os.path.join(a.tmp, "fit")
        fit_mb, fit_s = peak_rss([index, "fit", root, "--out", fit, "--sample-cells", str(a.sample_cells), "--quiet"])
        build_mb, build_s = peak_rss([index, "build", root, "--store", os.path.join(a.tmp, "store"), "--fit", fit,
                                      "--quiet"])
        print("%7d  %5d  %6.0f  %5.1f  %8.0f  %7.1f" % (n, cells, fit_mb, fit_s, build_mb, build_s), flush=True)
    shutil.rmtree(a.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
