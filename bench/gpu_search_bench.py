"""GPU search (issue 7): exact search with `--device cuda` (LibTorch matrix
product + topk, plugin/torch_search.cpp) against the own CPU scan, on the same
synthetic --n x --dim store, in one command.

Needs a build configured with -DMMU_ENABLE_CUDA=ON against a CUDA-enabled
LibTorch (see docs/BENCHMARKS.md, "GPU search"); --device torch-cpu runs the
same code on LibTorch's CPU device (a check of the script, not a timing that
means anything). Steps:
  1. mmu_bench_make_store makes the store (reused when present; the same
     folder names as bench/vector_bench.py, so its stores are reused too);
  2. mmu_bench_device: warm in-process timings, CPU scan and device, one query
     and batches (--blocks), the first device call (upload of the vectors), and
     the agreement of the two answers (fraction of the CPU's top-k rows, largest
     score difference); with --fp16 also on the flat16 copy (reindexed here);
  3. whole process: fresh `mmu-search --like obj<i> --k K` runs with --exact
     (CPU) and with --device DEVICE (includes loading LibTorch, starting CUDA
     and uploading the vectors: the price of one query from a shell).

Run: /usr/bin/python3 bench/gpu_search_bench.py --build build-cuda [--n 1000000] [--dim 512]
         [--device cuda] [--fp16] [--json FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SPACE = "vec"


def log(msg):
    print(msg, flush=True)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r


def gpu_name():
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip() or "(nvidia-smi printed nothing)"
    except (OSError, subprocess.TimeoutExpired):
        return "(no nvidia-smi)"


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def make_store(a, path):
    if os.path.exists(os.path.join(path, "CURRENT")):
        log(f"store {path}: reused")
        return
    t = time.perf_counter()
    r = run([a.bin("mmu_bench_make_store"), "--out", path, "--n", str(a.n), "--dim", str(a.dim), "--kind", a.kind,
             "--seed", str(a.seed), "--space", SPACE])
    log(r.stdout.strip() + f"\nstore {path}: made in {time.perf_counter() - t:.1f} s")


def whole_process(a, store, extra):
    """Median wall time of fresh mmu-search --like processes (one untimed run first)."""
    times = []
    for i in range(a.runs + 1):
        oid = f"obj{(i * 7919) % a.n}"
        t = time.perf_counter()
        run([a.bin("mmu-search"), "--store", store, "--like", oid, "--k", str(a.k), "--format", "json"] + extra)
        if i > 0:
            times.append(1e3 * (time.perf_counter() - t))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "args": " ".join(extra)}


def device_bench(a, store, fp16):
    cmd = [a.bin("mmu_bench_device"), "--store", store, "--space", SPACE, "--device", a.device, "--k", str(a.k),
           "--queries", str(a.queries), "--single", str(a.single), "--blocks", a.blocks] + (["--fp16"] if fp16 else [])
    r = run(cmd)
    log(r.stderr.rstrip())
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="a build with -DMMU_ENABLE_CUDA=ON")
    ap.add_argument("--work", help="default BUILD/vbench-work (shared with vector_bench.py)")
    ap.add_argument("--n", type=int, default=1000000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--kind", default="uniform", help="uniform or clustered (mmu_bench_make_store --kind)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cuda", help="cuda, or torch-cpu to check the script without a GPU")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=50)
    ap.add_argument("--blocks", default="1,256,1000")
    ap.add_argument("--runs", type=int, default=5, help="whole-process runs per setting")
    ap.add_argument("--fp16", action="store_true", help="also time the flat16 copy (mmu-index reindex --index flat16)")
    ap.add_argument("--json", help="write all results here")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    a.bin = lambda name: os.path.join(build, name)
    work = os.path.abspath(a.work or os.path.join(build, "vbench-work"))
    os.makedirs(work, exist_ok=True)

    results = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "gpu": gpu_name(),
                           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
               "args": {k: v for k, v in vars(a).items() if k != "bin"}}
    log("machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items()))
    log(f"command: /usr/bin/python3 {' '.join(sys.argv)}")
    store = os.path.join(work, f"{a.kind}-n{a.n}-d{a.dim}-s{a.seed}")
    make_store(a, store)

    log("\n-- warm, in process: fp32 --")
    results["fp32"] = device_bench(a, store, False)
    if a.fp16:
        # A copy of the store, so the shared one keeps its index.
        store16 = store + "-flat16"
        if not os.path.exists(os.path.join(store16, "CURRENT")):
            run(["cp", "-al", store, store16])  # hard links: the reindex writes new files only
            run([a.bin("mmu-index"), "reindex", "--store", store16, "--space", SPACE, "--index", "flat16",
                 "--recall-k", str(a.k), "--quiet"])
        log("\n-- warm, in process: fp16 (flat16) --")
        results["fp16"] = device_bench(a, store16, True)

    log("\n-- whole process: mmu-search --like (page cache warm) --")
    results["process"] = [whole_process(a, store, ["--exact"]), whole_process(a, store, ["--device", a.device])]
    for p in results["process"]:
        log(f"  {p['args']:<18} median {p['median_ms']:.0f} ms (min {p['min_ms']:.0f}, max {p['max_ms']:.0f})")

    r = results["fp32"]
    one_x = r["cpu_one"]["median_ms"] / max(r["device_one"]["median_ms"], 1e-9)
    log(f"\nsummary ({a.device} vs cpu, {r['count']} x {r['dim']}, k={a.k}): one query "
        f"{r['device_one']['median_ms']:.2f} vs {r['cpu_one']['median_ms']:.2f} ms ({one_x:.1f}x); "
        + "; ".join(f"batches of {d['block']}: {d['qps']:.0f} vs {c['qps']:.0f} q/s"
                    for d, c in zip(r["device_batch"], r["cpu_batch"]))
        + f"; agreement {r['agreement']:.6f}, max score difference {r['max_score_diff']:.1e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
        log(f"wrote {a.json}")


if __name__ == "__main__":
    main()
