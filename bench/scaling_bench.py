"""The per-core rates docs/SCALING.md scales to the whole Multimodal Universe, in one run:

 (1) baseline encode: `mmu-index build <survey> --store S --quiet` (whole process: read, features,
     PCA fit, projection, catalog, index) with OMP_NUM_THREADS=1 and =2, images and spectra,
     best of --repeat runs: objects/s, and objects/s per core;
 (2) an AstroCLIP-size image model on the CPU: the full-width image replica (ViT-L/12 at 144x144,
     tools/make_replicas.py, random weights, the real tower's layers and shapes) run by
     `mmu-index build --model` on --full-n images with 1 and 2 LibTorch threads: the model stage as
     the build reports it, seconds per image, GFLOP/s, and the SGEMM peak measured in the same run
     (torch.mm 2048^2 with the same threads) so the rate can be carried to another CPU by its peak.
and (3) cross-match growth: mmu_bench_xmatch (the match alone, in process) and `mmu-index xmatch`
     (whole process: read both HDF5 files, match, write the CSV) on --xmatch-n x --xmatch-n positions
     of bench/xmatch_bench.py's hard sky (poles, seam, a crowded strip; half the right side within
     2 arcsec of the left), radius 1 arcsec, best of --repeat: seconds and positions/s per size, so
     the growth to 10^8 is measured on two sizes, not assumed.
and (4) bytes per vector on disk of each index `mmu-index reindex` makes (flat, flat16, ivf) on a
     --index-n x 512 clustered store (mmu_bench_make_store), file by file, against the formulas.
Every line says the load average beside it; OPENBLAS_CORETYPE is printed (run once as set, once
with `env -u OPENBLAS_CORETYPE`).

Run: /usr/bin/python3 bench/scaling_bench.py --build build [--n 1000] [--full-n 12] [--repeat 3]
         [--xmatch-n 1000000,3000000] [--index-n 100000] [--skip-encode] [--skip-model] [--skip-xmatch]
         [--skip-index]
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import time

import h5py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"


def load():
    return open("/proc/loadavg").read().split()[0]


def count(root):
    return sum(len(h5py.File(f, "r")["object_id"]) for f in glob.glob(os.path.join(root, "**", "*.hdf5"), recursive=True))


def build(index, root, store, threads, model=None, batch=None, fit=None):
    """(wall s, model stage s or None) of one fresh build (with fit: projecting with that fit folder)."""
    shutil.rmtree(store, ignore_errors=True)
    cmd = [index, "build", root, "--store", store] + (["--fit", fit] if fit else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if model:
        cmd += ["--model", model, "--threads", str(threads)]
        if batch:
            cmd += ["--batch-size", str(batch)]
    else:
        cmd.append("--quiet")
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    wall = time.perf_counter() - t
    stage = None
    if model:
        line = next(l for l in out.splitlines() if "encoded in" in l)
        stage = float(line.split("encoded in ")[1].split(" s")[0])
    shutil.rmtree(store, ignore_errors=True)
    return wall, stage


def sgemm_peak(threads):
    """encode_bench's torch SGEMM peak (imported late: it loads torch)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from encode_bench import sgemm_peak as peak
    return peak(threads)


def space_files(store):
    with open(os.path.join(store, "CURRENT")) as f:
        d = os.path.join(store, f.read().strip(), "spaces", "vec")
    return {name: os.path.getsize(os.path.join(d, name)) for name in sorted(os.listdir(d))
            if os.path.isfile(os.path.join(d, name))}


def index_bytes(a, work):
    n, dim = a.index_n, 512
    store = os.path.join(work, f"vec-{n}")
    if not os.path.exists(os.path.join(store, "CURRENT")):
        subprocess.run([os.path.join(a.build, "mmu_bench_make_store"), "--out", store, "--n", str(n), "--dim",
                        str(dim), "--kind", "clustered"], check=True, capture_output=True)
    print(f"\n(4) bytes on disk per vector, {n:,} x {dim} clustered (formula: flat 4d, flat16 2d, IVF-Flat 4d + 8 "
          f"per vector + 4d per list)")
    print(f"{'index':>7} {'file':>24} {'bytes':>12} {'bytes/vector':>12} {'seconds':>8} {'load':>5}")
    for kind in ("flat", "flat16", "ivf"):
        t = time.perf_counter()
        subprocess.run([os.path.join(a.build, "mmu-index"), "reindex", "--store", store, "--space", "vec",
                        "--index", kind, "--quiet"], check=True, capture_output=True)
        secs = time.perf_counter() - t
        for name, size in space_files(store).items():
            print(f"{kind:>7} {name:>24} {size:12,d} {size / n:12.1f} {secs:8.1f} {load():>5}")


def xmatch(a, work):
    import re
    import numpy as np
    sys.path.insert(0, HERE)
    import xmatch_bench as xb  # noqa: E402 -- the same positions as the cross-match benchmark
    print(f"\n(3) cross-match, radius 1 arcsec, best of {a.repeat}")
    print(f"{'n x n':>12} {'mode':>9} {'in process s':>12} {'pos/s':>10} {'whole process s':>15} {'peak RSS MB':>11} "
          f"{'load':>5}")
    for n in (int(x) for x in a.xmatch_n.split(",")):
        lpath, rpath = os.path.join(work, f"xm-left-{n}.h5"), os.path.join(work, f"xm-right-{n}.h5")
        if not os.path.exists(rpath):
            rng = np.random.default_rng(5)
            left = xb.positions(n, rng)
            right = xb.positions(n, rng, base=left, radius_deg=1.0 / 3600)
            xb.write(lpath, *left, 0)
            xb.write(rpath, *right, 10**9)
        best = {"nearest": float("inf"), "all": float("inf")}
        whole = {"nearest": float("inf"), "all": float("inf")}
        rss = {}
        for _ in range(a.repeat):
            out = subprocess.run([os.path.join(a.build, "mmu_bench_xmatch"), lpath, rpath, "1"], capture_output=True,
                                 text=True, check=True).stdout
            for key in best:
                best[key] = min(best[key], float(re.search(rf"^{key} ([0-9.]+) s", out, re.M).group(1)))
            for key, extra in (("nearest", []), ("all", ["--all"])):
                t = time.perf_counter()
                with open(os.path.join(work, "xm.csv"), "w") as f:
                    p = subprocess.run(["/usr/bin/time", "-f", "%M", os.path.join(a.build, "mmu-index"), "xmatch",
                                        "--left", lpath, "--right", rpath, "--radius", "1arcsec", "--format", "csv",
                                        *extra], stdout=f, stderr=subprocess.PIPE, text=True, check=True)
                whole[key] = min(whole[key], time.perf_counter() - t)
                rss[key] = int(p.stderr.strip().splitlines()[-1]) / 1024
        os.remove(os.path.join(work, "xm.csv"))
        for key in best:
            print(f"{n:>12,} {key:>9} {best[key]:12.3f} {2 * n / best[key]:10.3g} {whole[key]:15.3f} {rss[key]:11.0f} "
                  f"{load():>5}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default=None)
    ap.add_argument("--n", type=int, default=1000, help="galaxies for the baseline data (tools/make_samples.py)")
    ap.add_argument("--full-n", type=int, default=12, help="images for the full-width model (whole files: at least this many)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--xmatch-n", default="1000000,3000000")
    ap.add_argument("--skip-encode", action="store_true")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--skip-xmatch", action="store_true")
    ap.add_argument("--index-n", type=int, default=100000)
    ap.add_argument("--skip-index", action="store_true")
    a = ap.parse_args()
    work = os.path.abspath(a.work or os.path.join(a.build, "bench-scaling"))
    os.makedirs(work, exist_ok=True)
    index = os.path.abspath(os.path.join(a.build, "mmu-index"))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")

    if not a.skip_index:
        index_bytes(a, work)
    if not a.skip_xmatch:
        xmatch(a, work)
    data = os.path.join(work, f"data-n{a.n}")
    if not os.path.exists(os.path.join(data, "truth.csv")):
        subprocess.run([PY, os.path.join(ROOT, "tools", "make_samples.py"), "--out", data, "--n", str(a.n),
                        "--seed", "21"], check=True, capture_output=True)
    if a.skip_encode:
        return
    print("\n(1) baseline encode, whole `mmu-index build --quiet`, best of %d" % a.repeat)
    print("    whole = fit and projection in one build; --fit = a shard's work: projecting with a fit made before")
    print(f"{'survey':13} {'kind':>7} {'objects':>7} {'threads':>7} {'wall s':>7} {'obj/s':>8} {'obj/s/core':>10} {'load':>5}")
    for survey in ("legacysurvey", "desi"):
        root = os.path.join(data, survey)
        n = count(root)
        fit = os.path.join(work, f"fit-{survey}")
        subprocess.run([index, "fit", root, "--out", fit, "--sample-cells", "0", "--quiet"], check=True)
        for kind, with_fit in (("whole", None), ("--fit", fit)):
            for threads in (1, 2):
                best = min(build(index, root, os.path.join(work, "store"), threads, fit=with_fit)[0]
                           for _ in range(a.repeat))
                print(f"{survey:13} {kind:>7} {n:7d} {threads:7d} {best:7.2f} {n / best:8.1f} {n / best / threads:10.1f} "
                      f"{load():>5}")

    if a.skip_model:
        return
    sys.path.insert(0, HERE)
    from encode_bench import image_subset, vit_flops  # noqa: E402 -- the encoder benchmark's subset and FLOP count
    full = os.path.join(work, "replica-image-full")
    if not os.path.exists(os.path.join(full, "model.json")):
        subprocess.run([PY, os.path.join(ROOT, "tools", "make_replicas.py"), "--out", full, "--tower", "image",
                        "--width", "full"], check=True, capture_output=True)
    subset = os.path.join(work, f"full-subset-{a.full_n}")
    image_subset(data, subset, a.full_n)
    n = count(subset)
    flops = vit_flops()
    print(f"\n(2) full-width image replica (ViT-L/12 at 144x144, {flops / 1e9:.1f} GFLOP/image), {n} images, batch 8")
    print(f"{'threads':>7} {'stage s':>8} {'s/image':>8} {'GFLOP/s':>8} {'SGEMM peak':>10} {'% peak':>7} {'load':>5}")
    for threads in (1, 2):
        peak = sgemm_peak(threads)
        _, stage = build(index, subset, os.path.join(work, "store-full"), threads, full, 8)
        achieved = n * flops / stage
        print(f"{threads:7d} {stage:8.1f} {stage / n:8.2f} {achieved / 1e9:8.1f} {peak / 1e9:10.1f} "
              f"{achieved / peak * 100:6.1f}% {load():>5}")


if __name__ == "__main__":
    main()
