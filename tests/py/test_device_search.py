"""End-to-end checks of `mmu-search --device` (issue 7, GPU search): the LibTorch
exact search (matrix product + topk in row blocks, plugin/torch_search.cpp) against
the own CPU scan (--device cpu) and a numpy brute force over the store's vectors,
for one --like, --like-file batches, filters (--cone, --in, --where), --vector
with k beyond the space's rows, a flat16 space (fp16 rows), an HNSW space
(--device scans exactly), hunt --outliers, serve --device, and the refusals
(--device cuda in a build without CUDA, an unknown device).

The LibTorch path runs on `torch-cpu`, LibTorch's CPU device: the same code the
GPU runs, so machines without a GPU (CI) check it. With --cuda ON (a build
configured with -DMMU_ENABLE_CUDA=ON) every case also runs on `cuda`.

Scores are fp32 sums in another order than BLAS's, so they may differ in the
last bits: results are compared rank by rank with a score tolerance, and a row
may differ only where another candidate's score lies within that tolerance (a
near tie). Exact ties rank the lower row first on every device (unit test
device_search_test.cpp checks that bit for bit).
Run: test_device_search.py --bin BUILD --samples DIR --cuda ON|OFF --tmp DIR
"""
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from space_reading import brute, load_space  # noqa: E402
from harness import Env, binaries_samples_tmp, case_list, haversine_deg, need, run, run_cases, unit  # noqa: E402

CASES, case = case_list()


def search(env, store, *args, ok=True):
    return run(env.search, "--store", store, *args, ok=ok)


def search_json(env, store, *args):
    return json.loads(search(env, store, *args, "--format", "json").stdout)


def pairs(results):
    return [(r["object_id"], r["score"]) for r in results]


def same(got, want, label, tol=1e-5):
    """got equals want rank by rank up to `tol` in the scores; ids may differ only at near ties."""
    need(len(got) == len(want), "%s: %d results, expected %d" % (label, len(got), len(want)))
    for rank, ((gid, gsc), (wid, wsc)) in enumerate(zip(got, want), start=1):
        need(abs(gsc - wsc) <= tol, "%s: rank %d score %.7f, expected %.7f" % (label, rank, gsc, wsc))
        near_tie = any(abs(wsc - w[1]) <= tol for j, w in enumerate(want) if j != rank - 1)
        need(gid == wid or near_tie, "%s: rank %d is %s, expected %s" % (label, rank, gid, wid))


def setup(env):
    env.store = os.path.join(env.tmp, "store")
    run(env.index, "build", env.samples, "--store", env.store, "--quiet")
    env.spec, env.spec_meta = load_space(env.store, "spectrum", np.float32)
    env.ids = [m[0] for m in env.spec_meta]
    env.devices = ["torch-cpu"] + (["cuda"] if env.cuda else [])


@case("--like: every device equals the CPU scan and numpy; the method names the device")
def _(env):
    q_i = 3
    oid = env.ids[q_i]
    want = brute(env.spec, env.spec_meta, env.spec[q_i], 25, exclude={oid})
    cpu = search_json(env, env.store, "--like", oid, "--k", "25")
    same(pairs(cpu["results"]), want, "cpu vs numpy")
    need(cpu["method"] == "exact fp32 scan", "cpu method: %s" % cpu["method"])
    for dev in env.devices:
        got = search_json(env, env.store, "--like", oid, "--k", "25", "--device", dev)
        need(got["method"] == "exact fp32 scan on %s (LibTorch)" % dev, "%s method: %s" % (dev, got["method"]))
        same(pairs(got["results"]), pairs(cpu["results"]), "%s vs cpu" % dev)
        same(pairs(got["results"]), want, "%s vs numpy" % dev)


@case("--like-file: a batched scan per device equals the CPU batch and numpy, block by block")
def _(env):
    picks = list(range(0, 40, 3))
    path = os.path.join(env.tmp, "ids.txt")
    with open(path, "w") as f:
        f.write("\n".join(env.ids[i] for i in picks) + "\n")
    cpu = json.loads(search(env, env.store, "--like-file", path, "--k", "9", "--format", "json").stdout)
    need(len(cpu) == len(picks), "cpu: %d blocks" % len(cpu))
    for dev in env.devices:
        got = json.loads(search(env, env.store, "--like-file", path, "--k", "9", "--format", "json",
                                "--device", dev).stdout)
        need(len(got) == len(picks), "%s: %d blocks" % (dev, len(got)))
        for b, c, i in zip(got, cpu, picks):
            need(b["label"] == env.ids[i], "%s: block order %s" % (dev, b["label"]))
            same(pairs(b["results"]), pairs(c["results"]), "%s batch %s vs cpu" % (dev, b["label"]))
            want = brute(env.spec, env.spec_meta, env.spec[i], 9, exclude={env.ids[i]})
            same(pairs(b["results"]), want, "%s batch %s vs numpy" % (dev, b["label"]))


@case("filters (--cone, --in, --where) on a device scan exactly the allowed rows")
def _(env):
    q_i = 2
    oid = env.ids[q_i]
    ra, dec = env.spec_meta[q_i][2], env.spec_meta[q_i][3]
    radius = 20.0
    allowed = [i for i, m in enumerate(env.spec_meta) if haversine_deg(ra, dec, m[2], m[3]) <= radius]
    need(1 < len(allowed) < len(env.ids), "the cone keeps some rows and drops some (%d)" % len(allowed))
    cone = ("--cone", "%r,%r,%rdeg" % (ra, dec, radius))
    want = brute(env.spec, env.spec_meta, env.spec[q_i], 40, allowed, {oid})
    cpu = search_json(env, env.store, "--like", oid, "--k", "40", *cone)
    for dev in env.devices:
        got = search_json(env, env.store, "--like", oid, "--k", "40", "--device", dev, *cone)
        need("filtered rows on %s" % dev in got["method"], "%s method: %s" % (dev, got["method"]))
        same(pairs(got["results"]), pairs(cpu["results"]), "%s --cone vs cpu" % dev)
        same(pairs(got["results"]), want, "%s --cone vs numpy" % dev)
        got = search_json(env, env.store, "--like", oid, "--k", "40", "--device", dev, "--in", "desi")
        same(pairs(got["results"]), brute(env.spec, env.spec_meta, env.spec[q_i], 40, None, {oid}), "%s --in" % dev)
        small = [i for i, m in enumerate(env.spec_meta) if haversine_deg(ra, dec, m[2], m[3]) <= 3.0]
        need(1 < len(small) < 40, "the small cone keeps fewer rows than k (%d)" % len(small))
        got = search_json(env, env.store, "--like", oid, "--k", "40", "--device", dev,
                          "--cone", "%r,%r,3deg" % (ra, dec))
        same(pairs(got["results"]), brute(env.spec, env.spec_meta, env.spec[q_i], 40, small, {oid}),
             "%s small --cone, k beyond its rows" % dev)
        cpu_w = search_json(env, env.store, "--like", oid, "--k", "40", "--where", "Z < 0.3")
        got_w = search_json(env, env.store, "--like", oid, "--k", "40", "--where", "Z < 0.3", "--device", dev)
        need(0 < len(cpu_w["results"]), "--where keeps some rows")
        same(pairs(got_w["results"]), pairs(cpu_w["results"]), "%s --where vs cpu" % dev)


@case("--vector with k beyond the space's rows returns every row, ranked as numpy")
def _(env):
    rng = np.random.default_rng(7)
    v = rng.normal(size=env.spec.shape[1])
    path = os.path.join(env.tmp, "q.npy")
    np.save(path, v.astype(np.float32))
    k = len(env.ids) + 25
    want = brute(env.spec, env.spec_meta, unit(v.astype(np.float32).astype(np.float64)), k)
    need(len(want) == len(env.ids), "numpy ranks every row")
    cpu = search_json(env, env.store, "--vector", path, "--space", "spectrum", "--k", str(k))
    for dev in env.devices:
        got = search_json(env, env.store, "--vector", path, "--space", "spectrum", "--k", str(k), "--device", dev)
        same(pairs(got["results"]), pairs(cpu["results"]), "%s k > rows vs cpu" % dev)
        same(pairs(got["results"]), want, "%s k > rows vs numpy" % dev, tol=2e-5)


def reindexed_copy(env, kind):
    """A copy of the store whose spectrum space has index `kind`."""
    store = os.path.join(env.tmp, "store-" + kind)
    shutil.copytree(env.store, store)
    run(env.index, "reindex", "--store", store, "--space", "spectrum", "--index", kind,
        "--recall-k", "10", "--recall-queries", "20")
    return store


@case("flat16 space: a device scans the same fp16 rows as the CPU; --exact scans fp32")
def _(env):
    store = reindexed_copy(env, "flat16")
    q_i = 11
    oid = env.ids[q_i]
    want = brute(env.spec, env.spec_meta, env.spec[q_i], 20, exclude={oid})
    # numpy over the widened halves: what both fp16 paths compute.
    with open(os.path.join(store, "CURRENT")) as f:
        gen = os.path.join(store, f.read().strip())
    halves = np.fromfile(os.path.join(gen, "spaces", "spectrum", "vectors.f16"), dtype=np.float16)
    wide = halves.astype(np.float32).reshape(env.spec.shape)
    want16 = brute(wide, env.spec_meta, env.spec[q_i], 20, exclude={oid})
    cpu = search_json(env, store, "--like", oid, "--k", "20")
    need(cpu["method"] == "exact fp16 scan", "cpu method: %s" % cpu["method"])
    for dev in env.devices:
        got = search_json(env, store, "--like", oid, "--k", "20", "--device", dev)
        need(got["method"] == "exact fp16 scan on %s (LibTorch)" % dev, "%s method: %s" % (dev, got["method"]))
        same(pairs(got["results"]), pairs(cpu["results"]), "%s fp16 vs cpu fp16" % dev)
        same(pairs(got["results"]), want16, "%s fp16 vs numpy over the halves" % dev)
        same(pairs(got["results"]), want, "%s fp16 vs numpy fp32" % dev, tol=2e-3)
        exact = search_json(env, store, "--like", oid, "--k", "20", "--device", dev, "--exact")
        need(exact["method"] == "exact fp32 scan on %s (LibTorch)" % dev, "%s --exact: %s" % (dev, exact["method"]))
        same(pairs(exact["results"]), want, "%s --exact vs numpy" % dev)


@case("HNSW space: --device scans exactly (as if --exact), equal to numpy")
def _(env):
    store = reindexed_copy(env, "hnsw")
    q_i = 8
    oid = env.ids[q_i]
    need("hnsw" in search_json(env, store, "--like", oid, "--k", "5")["method"], "the cpu query uses the hnsw index")
    want = brute(env.spec, env.spec_meta, env.spec[q_i], 30, exclude={oid})
    for dev in env.devices:
        got = search_json(env, store, "--like", oid, "--k", "30", "--device", dev)
        need(got["method"] == "exact fp32 scan on %s (LibTorch)" % dev, "%s method: %s" % (dev, got["method"]))
        same(pairs(got["results"]), want, "%s under hnsw vs numpy" % dev)


@case("hunt --outliers on a device ranks as on the CPU")
def _(env):
    base = ["hunt", "--store", env.store, "--outliers", "--space", "spectrum", "--neighbours", "3", "--k", "10",
            "--format", "json"]
    cpu = json.loads(run(env.search, *base).stdout)
    for dev in env.devices:
        got = json.loads(run(env.search, *base, "--device", dev).stdout)
        same(pairs(got["results"]), pairs(cpu["results"]), "%s outliers vs cpu" % dev)


@case("serve --device: every request's scan runs on the device, equal to the CPU's answer")
def _(env):
    import select
    import subprocess
    import urllib.request
    oid = env.ids[5]
    cpu = search_json(env, env.store, "--like", oid, "--k", "15")
    for dev in env.devices:
        proc = subprocess.Popen([env.search, "serve", "--store", env.store, "--port", "0", "--device", dev],
                                stderr=subprocess.PIPE, text=True)
        try:
            ready, _, _ = select.select([proc.stderr], [], [], 30)
            line = proc.stderr.readline() if ready else ""
            need("http://127.0.0.1:" in line, "serve start line: %r" % line)
            url = line.strip().rsplit(" ", 1)[1]
            with urllib.request.urlopen("%s/like?id=%s&k=15" % (url, oid), timeout=60) as r:
                got = json.loads(r.read())
            need(got["method"] == "exact fp32 scan on %s (LibTorch)" % dev, "serve method: %s" % got["method"])
            same(pairs(got["results"]), pairs(cpu["results"]), "serve %s vs cpu" % dev)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@case("--device cuda without a CUDA build, or an unknown device, is refused naming the flag")
def _(env):
    oid = env.ids[0]
    if not env.cuda:
        p = search(env, env.store, "--like", oid, "--device", "cuda", ok=False)
        need(p.returncode == 1, "exit code %d" % p.returncode)
        need("--device cuda" in p.stderr and "-DMMU_ENABLE_CUDA=ON" in p.stderr, "message: %s" % p.stderr)
        need(p.stdout == "", "nothing printed on stdout: %s" % p.stdout)
        p = run(env.search, "serve", "--store", env.store, "--port", "0", "--device", "cuda", ok=False)
        need(p.returncode == 1 and "-DMMU_ENABLE_CUDA=ON" in p.stderr, "serve --device cuda: %s" % p.stderr)
    p = search(env, env.store, "--like", oid, "--device", "gpu", ok=False)
    need(p.returncode == 1 and "--device must be cpu, torch-cpu or cuda" in p.stderr, "message: %s" % p.stderr)


if __name__ == "__main__":
    args, index, search_bin = binaries_samples_tmp(inputs=("--samples", "--cuda"))
    env = Env()
    env.index, env.search, env.samples, env.tmp = index, search_bin, args.samples, args.tmp
    env.cuda = args.cuda.upper() in ("ON", "1", "TRUE", "YES")
    sys.exit(run_cases(CASES, env, setup, only=os.environ.get("MMU_TEST_ONLY")))
