"""Encoder-stage benchmark (issue: encoder stage), in one run on the same files
and cores:

 (a) reduced-width AstroCLIP replicas, where reading and preprocessing weigh:
     `mmu-index build --model` objects/s against the Python pipeline a user would
     write (h5py + numpy preprocessing + the same TorchScript in python3-torch);
 (b) the full-width image replica (ViT-L/12 at 144x144, ~90 GFLOP/image), where
     the model dominates: achieved FLOP/s against the SGEMM peak measured here,
     at batch sizes 8, 16, 64 and automatic, and the pipeline overhead (reading +
     preprocessing not hidden behind inference) against pure model time.

Run: /usr/bin/python3 bench/encode_bench.py --build build [--n 400] [--full-n 48] [--skip-full]
"""
import argparse
import glob
import os
import platform
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
import reference_transforms as ref  # noqa: E402

PY = "/usr/bin/python3"


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return (f"{cpu}, {os.cpu_count()} cores, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
            f"torch {torch.__version__}, {platform.platform()}")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def timed_build(index, roots, store, model=None, batch=None, encode_only=False):
    """Wall time of the whole build, or (encode_only) the model stage's own
    time as the build reports it ("encoded in S s (batch B)"), with the batch."""
    shutil.rmtree(store, ignore_errors=True)
    cmd = [index, "build", *roots, "--store", store]
    if model:
        cmd += ["--model", model]
    if batch:
        cmd += ["--batch-size", str(batch)]
    t = time.perf_counter()
    out = run(cmd).stdout
    wall = time.perf_counter() - t
    if not encode_only:
        return wall
    line = next(l for l in out.splitlines() if "encoded in" in l)
    secs = float(line.split("encoded in ")[1].split(" s")[0])
    return secs, int(line.split("(batch ")[1].rstrip(")"))


def python_pipeline(files, model_path, transform, batch):
    """What a notebook does: h5py batches -> numpy transform -> TorchScript -> L2 norm -> np.save."""
    module = torch.jit.load(model_path)
    module.eval()
    out = []
    t = time.perf_counter()
    for path in files:
        with h5py.File(path, "r") as f:
            n = len(f["object_id"])
            for s in range(0, n, batch):
                if transform == "astroclip-image":
                    x = ref.astroclip_image(f["image_array"][s:s + batch], f["image_mask"][s:s + batch],
                                            list(f["image_band"][0]))
                else:
                    flux = f["spectrum_flux"][s:s + batch]
                    ok = ref.usable_spectra(flux, f["spectrum_ivar"][s:s + batch], f["spectrum_lambda"][s:s + batch],
                                            f["spectrum_mask"][s:s + batch])
                    x = ref.specformer_spectrum(flux, ok)
                with torch.inference_mode():
                    y = module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
                out.append(torch.nn.functional.normalize(y, dim=1).numpy())
    np.save(os.path.join(os.path.dirname(model_path), "python-embeddings.npy"), np.concatenate(out))
    return time.perf_counter() - t


def image_subset(data, subset, n):
    """Copies the first legacysurvey files of data (path order) into subset until they hold >= n images;
    an existing subset is kept."""
    if os.path.exists(subset):
        return
    os.makedirs(subset)
    got = 0
    for f in sorted(glob.glob(os.path.join(data, "legacysurvey", "**", "*.hdf5"), recursive=True)):
        dst = os.path.join(subset, os.path.relpath(f, data))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(f, dst)
        got += len(h5py.File(f, "r")["object_id"])
        if got >= n:
            break


def vit_flops(width=1024, blocks=24, tokens=144, mlp=4096, head_mlp=4096, heads_q=1):
    """Multiply-adds x 2 of the ViT-L/12 image tower at 144x144 (patch embed, blocks, head)."""
    patch = 2 * tokens * (3 * 12 * 12) * width
    per_block = 2 * tokens * width * (3 * width + width + 2 * mlp) + 2 * 2 * tokens * tokens * width
    head = 2 * (2 * tokens * width * width + 2 * width * width + 2 * tokens * width + 2 * width * head_mlp)
    return patch + blocks * per_block + head


def sgemm_peak(threads):
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - t))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default=None)
    ap.add_argument("--n", type=int, default=400, help="galaxies for part (a)")
    ap.add_argument("--full-n", type=int, default=48, help="images for part (b)")
    ap.add_argument("--skip-full", action="store_true")
    a = ap.parse_args()
    work = a.work or os.path.join(a.build, "bench-encode")
    os.makedirs(work, exist_ok=True)
    index = os.path.join(a.build, "mmu-index")
    threads = os.cpu_count() or 1
    print("machine:", machine())

    data = os.path.join(work, f"data-n{a.n}")
    if not os.path.exists(os.path.join(data, "truth.csv")):
        run([PY, os.path.join(ROOT, "tools", "make_samples.py"), "--out", data, "--n", str(a.n), "--seed", "21"])
    models = {}
    for tower in ("image", "spectrum"):
        out = os.path.join(work, f"replica-{tower}-reduced")
        if not os.path.exists(os.path.join(out, "model.json")):
            run([PY, os.path.join(ROOT, "tools", "make_replicas.py"), "--out", out, "--tower", tower, "--width", "reduced"])
        models[tower] = out

    print("\n(a) reduced-width replicas, objects/s: the model stage of `mmu-index build --model` (reading,")
    print("    preprocessing, model, checkpoint; as the build reports it) and the whole build (+ catalog, baseline")
    print("    PCA, FAISS, model load), against the Python pipeline (read, preprocess, model, np.save)")
    print(f"{'tower':9} {'objects':>7} {'model stage':>12} {'whole build':>12} {'python':>10} {'ratio':>6}")
    for tower, survey, transform in (("image", "legacysurvey", "astroclip-image"),
                                     ("spectrum", "desi", "specformer-spectrum")):
        root = os.path.join(data, survey)
        files = sorted(glob.glob(os.path.join(root, "**", "*.hdf5"), recursive=True))
        n = sum(len(h5py.File(f, "r")["object_id"]) for f in files)
        whole = timed_build(index, [root], os.path.join(work, f"store-{tower}"), models[tower], 32)
        stage, _ = timed_build(index, [root], os.path.join(work, f"store-{tower}"), models[tower], 32, encode_only=True)
        torch.set_num_threads(threads)
        peer = python_pipeline(files, os.path.join(models[tower], "model.pt"), transform, 32)
        print(f"{tower:9} {n:7d} {n / stage:10.1f}/s {n / whole:10.1f}/s {n / peer:8.1f}/s {peer / stage:5.2f}x")

    if a.skip_full:
        return
    print("\n(b) full-width image replica (ViT-L/12, 144x144)")
    full = os.path.join(work, "replica-image-full")
    if not os.path.exists(os.path.join(full, "model.json")):
        run([PY, os.path.join(ROOT, "tools", "make_replicas.py"), "--out", full, "--tower", "image", "--width", "full"])
    peak = sgemm_peak(threads)
    flops = vit_flops()
    print(f"SGEMM peak (torch.mm 2048^2, {threads} threads): {peak / 1e9:.1f} GFLOP/s; model {flops / 1e9:.1f} GFLOP/image")
    subset = os.path.join(work, "full-subset")
    image_subset(data, subset, a.full_n)
    n = sum(len(h5py.File(f, "r")["object_id"]) for f in glob.glob(os.path.join(subset, "**", "*.hdf5"), recursive=True))
    module = torch.jit.load(os.path.join(full, "model.pt"))
    torch.set_num_threads(threads)
    print("encode s = the model stage as the build reports it (reading + preprocessing overlapped; model load excluded)")
    print(f"{'batch':>7} {'objects':>7} {'encode s':>9} {'GFLOP/s':>8} {'% peak':>7} {'pure model s':>13} {'overhead':>9}")
    for batch in (8, 16, 64, None):
        t, used = timed_build(index, [subset], os.path.join(work, "store-full"), full, batch, encode_only=True)
        achieved = n * flops / t
        pure = None
        if batch:
            x = torch.rand(batch, 3, 144, 144)
            with torch.inference_mode():
                module(x)
                iters = (n + batch - 1) // batch
                t0 = time.perf_counter()
                for _ in range(iters):
                    module(x)
                # Per object, times n: full batches only, so scale to the same object count.
                pure = (time.perf_counter() - t0) / (iters * batch) * n
        over = f"{(t - pure) / pure * 100:8.1f}%" if pure else "        -"
        pm = f"{pure:13.1f}" if pure else "            -"
        label = str(batch) if batch else f"auto={used}"
        print(f"{label:>7} {n:7d} {t:9.1f} {achieved / 1e9:8.1f} {achieved / peak * 100:6.1f}% {pm} {over}")


if __name__ == "__main__":
    main()
