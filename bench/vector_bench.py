"""Search at scale (issue 7): exact, batched, ANN and whole-process search over
synthetic vectors, against the memory-bandwidth floor, python3-faiss, numpy and
python3-hnswlib, on the same data in the same run.

For each --kinds (uniform: directions uniform on the sphere; clustered: gaussian
clusters of varied spread and size), on an --n x --dim store:
  1. mmu_bench_make_store makes the store (reused when it exists);
  2. mmu-index reindex --index ivf (reused when index.json already has it);
  3. mmu_bench_vectors: read bandwidth, exact one-query latency, exact batches,
     IVF nprobe sweep (recall@k against the exact answers, one-query latency,
     batched throughput);
  4. peers on np.memmap(vectors.f32): faiss IndexFlatIP one query and a batch,
     numpy brute force one query; their answers checked against ours;
  5. whole-process `mmu-search --like ID --k K` (fresh process each run, page
     cache warm), with the IVF index and with --exact;
then on an --hnsw-n store of the same kind (HNSW construction of 10^6 x 512 on
2 cores takes too long for one run; --hnsw-n = --n measures at full size):
  6. mmu-index reindex --index hnsw, mmu_bench_vectors with an efSearch sweep;
  7. hnswlib with the same M / efConstruction, the same efSearch sweep, recall
     against the same exact answers;
  8. whole-process `mmu-search --like` with the HNSW index.

Prints the machine (CPU, cores, RAM, OPENBLAS_CORETYPE, load), every figure and
ratio, and a verdict per goal; --json writes everything.

Run: /usr/bin/python3 bench/vector_bench.py --build build-vbench [--n 1000000] [--dim 512] [--hnsw-n 100000]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

GOAL_EXACT_OVER_FLOOR = 1.5
GOAL_RECALL = 0.95
GOAL_SPEEDUP = 20.0
GOAL_COLD_MS = 300.0
SPACE = "vec"


def log(msg):
    print(msg, flush=True)


def run(cmd, **kw):
    """Runs cmd, failing loudly with its stderr."""
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1e6, 1),
        "kernel": platform.release(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "(unset)"),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def load():
    return "%.2f %.2f %.2f" % os.getloadavg()


def wait_for_quiet(max_wait, threshold):
    """Waits (up to max_wait s) for the 1-minute load to drop below threshold:
    other work on the 2 cores would be timed as ours."""
    t0 = time.time()
    while os.getloadavg()[0] > threshold and time.time() - t0 < max_wait:
        time.sleep(5)
    return load()


def make_store(a, kind, n, work):
    path = os.path.join(work, f"{kind}-n{n}-d{a.dim}-s{a.seed}")
    if os.path.exists(os.path.join(path, "CURRENT")):
        log(f"  store {path}: reused")
        return path
    t = time.perf_counter()
    r = run([a.bin("mmu_bench_make_store"), "--out", path, "--n", str(n), "--dim", str(a.dim), "--kind", kind,
             "--seed", str(a.seed), "--space", SPACE])
    log("  " + r.stdout.strip().replace("\n", "\n  ") + f"\n  store {path}: made in {time.perf_counter() - t:.1f} s")
    return path


def space_dir(store):
    with open(os.path.join(store, "CURRENT")) as f:
        return os.path.join(store, f.read().strip(), "spaces", SPACE)


def reindex(a, store, kind_args):
    """mmu-index reindex unless index.json already records these parameters;
    returns index.json (with its build time and recall)."""
    want = dict(zip(("kind", "nlist", "M", "efConstruction"),
                    (kind_args["index"], kind_args.get("nlist"), kind_args.get("M"), kind_args.get("efConstruction"))))
    rec_path = os.path.join(space_dir(store), "index.json")
    if os.path.exists(rec_path):
        with open(rec_path) as f:
            rec = json.load(f)
        if all(v is None or rec.get(k) == v for k, v in want.items()):
            log(f"  index {rec['kind']}: reused (built {rec['built']} in {rec['build_s']:.1f} s)")
            return rec
    cmd = [a.bin("mmu-index"), "reindex", "--store", store, "--space", SPACE, "--index", kind_args["index"],
           "--recall-k", str(a.k), "--quiet"]
    for flag, key in (("--nlist", "nlist"), ("--nprobe", "nprobe"), ("--M", "M"),
                      ("--ef-construction", "efConstruction"), ("--ef-search", "efSearch")):
        if key in kind_args:
            cmd += [flag, str(kind_args[key])]
    log(f"  {' '.join(cmd[1:])}   (load {load()})")
    r = run(cmd)
    log("    " + r.stdout.strip().replace("\n", "\n    "))
    with open(rec_path) as f:
        return json.load(f)


def query_rows(n, count, seed):
    rng = np.random.default_rng(seed)
    return rng.choice(n, size=min(count, n), replace=False)


def bench_cpp(a, store, rows, sweep_flag, sweep, work, tag):
    rows_file = os.path.join(work, f"{tag}-rows.txt")
    truth_file = os.path.join(work, f"{tag}-truth.i64")
    np.savetxt(rows_file, rows, fmt="%d")
    cmd = [a.bin("mmu_bench_vectors"), "--store", store, "--space", SPACE, "--query-rows", rows_file, "--k", str(a.k),
           "--single", str(a.single), "--ann-queries", str(a.ann_queries), "--blocks", "256,1000",
           sweep_flag, ",".join(map(str, sweep)), "--truth-out", truth_file]
    log(f"  mmu_bench_vectors ... {sweep_flag} {','.join(map(str, sweep))}   (load {wait_for_quiet(a.max_wait, 2.5)})")
    r = run(cmd)
    log("    " + r.stderr.strip().replace("\n", "\n    "))
    out = json.loads(r.stdout)
    out["load"] = load()
    truth = np.fromfile(truth_file, dtype=np.int64).reshape(len(rows), a.k)
    return out, truth


def overlap(truth, got):
    """Mean fraction of each truth row's ids found in the same row of got."""
    return float(np.mean([len(set(t[t >= 0]) & set(g)) / max(1, (t >= 0).sum()) for t, g in zip(truth, got)]))


def timed_each(fn, items):
    ms = []
    out = []
    for x in items:
        t = time.perf_counter()
        out.append(fn(x))
        ms.append(1e3 * (time.perf_counter() - t))
    return statistics.median(ms), out


def peers_flat(a, vecs, rows, truth):
    """faiss IndexFlatIP (one query, a batch) and numpy brute force (one query)."""
    import faiss

    k = a.k
    q = np.ascontiguousarray(vecs[rows])
    res = {}
    t = time.perf_counter()
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(np.ascontiguousarray(vecs))
    res["faiss_add_s"] = time.perf_counter() - t
    nq1 = min(a.peer_single, len(rows))
    index.search(q[:1], k)
    med, got = timed_each(lambda i: index.search(q[i:i + 1], k)[1][0], range(nq1))
    res["faiss_one_ms"] = med
    res["faiss_one_agreement"] = overlap(truth[:nq1], got)
    t = time.perf_counter()
    _, ids = index.search(q, k)
    res["faiss_batch_qps"] = len(rows) / (time.perf_counter() - t)
    res["faiss_batch_agreement"] = overlap(truth, ids)
    res["faiss_threads"] = faiss.omp_get_max_threads()
    del index

    def numpy_top_k(i):
        s = vecs @ q[i]
        top = np.argpartition(-s, k)[:k]
        return top[np.argsort(-s[top], kind="stable")]

    numpy_top_k(0)
    med, got = timed_each(numpy_top_k, range(nq1))
    res["numpy_one_ms"] = med
    res["numpy_one_agreement"] = overlap(truth[:nq1], got)
    res["peer_queries"] = nq1
    res["load"] = load()
    return res


def peer_hnswlib(a, vecs, rows, truth):
    import hnswlib

    n, d = vecs.shape
    index = hnswlib.Index(space="ip", dim=d)
    index.init_index(max_elements=n, ef_construction=a.ef_construction, M=a.M, random_seed=a.seed)
    t = time.perf_counter()
    index.add_items(np.ascontiguousarray(vecs), np.arange(n), num_threads=os.cpu_count())
    build_s = time.perf_counter() - t
    q = np.ascontiguousarray(vecs[rows])
    nq = min(a.ann_queries, len(rows))
    sweep = []
    for ef in a.ef:
        index.set_ef(max(ef, a.k))
        index.knn_query(q[:1], k=a.k, num_threads=1)
        med, got = timed_each(lambda i: index.knn_query(q[i:i + 1], k=a.k, num_threads=1)[0][0], range(nq))
        t = time.perf_counter()
        index.knn_query(q[:nq], k=a.k, num_threads=os.cpu_count())
        qps = nq / (time.perf_counter() - t)
        sweep.append({"ef_search": ef, "recall": overlap(truth[:nq], got), "one_ms": med, "batch_qps": qps})
    return {"build_s": build_s, "sweep": sweep, "load": load()}


def cold_runs(a, store, rows, extra):
    """Median wall time of fresh `mmu-search --like` processes (page cache warm:
    one untimed run first), each for a different id."""
    times = []
    for i in range(a.cold_runs + 1):
        cmd = [a.bin("mmu-search"), "--store", store, "--like", f"obj{rows[i % len(rows)]}", "--k", str(a.k),
               "--format", "json"] + extra
        t = time.perf_counter()
        run(cmd)
        if i > 0:
            times.append(1e3 * (time.perf_counter() - t))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "runs": len(times),
            "args": " ".join(extra), "load": load()}


def best_at_recall(sweep, exact_ms, one_key):
    """The fastest setting with recall >= the goal, as (setting, ms, speedup), or None."""
    ok = [s for s in sweep if s["recall"] >= GOAL_RECALL]
    if not ok:
        return None
    s = min(ok, key=lambda s: s[one_key])
    return s, s[one_key], exact_ms / s[one_key]


def report_kind(a, kind, r):
    c, p = r["cpp"], r["peers"]
    exact = c["exact_one"]["median_ms"]
    log(f"\n== {kind}: {c['count']} x {c['dim']} fp32, k = {a.k} ==")
    log(f"read bandwidth: {c['bandwidth']['best_gbs']:.1f} GB/s with {c['threads']} threads "
        f"({c['bandwidth_1thread']['best_gbs']:.1f} GB/s with 1); floor = {c['bytes'] / 1e6:.0f} MB / bandwidth "
        f"= {c['floor_ms']:.1f} ms")
    log(f"exact, one query (warm, in process): median {exact:.1f} ms, p90 {c['exact_one']['p90_ms']:.1f} ms "
        f"= {exact / c['floor_ms']:.2f}x the floor")
    log(f"  python3-faiss IndexFlatIP one query {p['faiss_one_ms']:.1f} ms ({p['faiss_one_ms'] / exact:.1f}x ours); "
        f"numpy brute force {p['numpy_one_ms']:.1f} ms ({p['numpy_one_ms'] / exact:.2f}x ours); "
        f"answers agree with ours: faiss {p['faiss_one_agreement']:.4f}, numpy {p['numpy_one_agreement']:.4f}")
    for b in c["exact_batch"]:
        log(f"exact, {c['queries']} queries in blocks of {b['block']}: {b['qps']:.0f} queries/s "
            f"({b['qps'] / p['faiss_batch_qps']:.2f}x python3-faiss's {p['faiss_batch_qps']:.0f} queries/s, "
            f"agreement {p['faiss_batch_agreement']:.4f})")
    log(f"IVF ({c['index']}, built in {r['ivf_index']['build_s']:.0f} s), {c['ann_queries']} queries:")
    log("  nprobe  recall@%d  one query ms  speed-up vs exact  batch queries/s" % a.k)
    for s in c["ann"]:
        log(f"  {s['nprobe']:6d}  {s['recall']:9.4f}  {s['one']['median_ms']:12.2f}  "
            f"{exact / s['one']['median_ms']:17.1f}  {s['batch_qps']:15.0f}")
    h, hl = r["hnsw_cpp"], r["hnswlib"]
    hexact = h["exact_one"]["median_ms"]
    log(f"HNSW on {h['count']} x {h['dim']} ({h['index']}, built in {r['hnsw_index']['build_s']:.0f} s; "
        f"hnswlib built in {hl['build_s']:.0f} s); exact one query there: {hexact:.1f} ms:")
    log("  efSearch  mmu recall  mmu ms  speed-up  batch q/s | hnswlib recall  ms  batch q/s")
    for s, t in zip(h["ann"], hl["sweep"]):
        log(f"  {s['ef_search']:8d}  {s['recall']:10.4f}  {s['one']['median_ms']:6.2f}  "
            f"{hexact / s['one']['median_ms']:8.1f}  {s['batch_qps']:9.0f} | {t['recall']:14.4f}  "
            f"{t['one_ms']:5.2f}  {t['batch_qps']:9.0f}")
    for name, cold in r["cold"].items():
        log(f"whole process `mmu-search --like ID --k {a.k} {cold['args']}` ({name}): median {cold['median_ms']:.0f} ms "
            f"(min {cold['min_ms']:.0f}, max {cold['max_ms']:.0f}, {cold['runs']} runs)")

    goals = {}
    goals["exact_over_floor"] = {"value": exact / c["floor_ms"], "met": exact / c["floor_ms"] <= GOAL_EXACT_OVER_FLOOR}
    ivf = best_at_recall([{**s, "ms": s["one"]["median_ms"]} for s in c["ann"]], exact, "ms")
    hnsw = best_at_recall([{**s, "ms": s["one"]["median_ms"]} for s in h["ann"]], hexact, "ms")
    for name, b in (("ivf", ivf), ("hnsw", hnsw)):
        goals[f"{name}_recall95_speedup"] = {
            "value": None if b is None else b[2],
            "setting": None if b is None else {k: v for k, v in b[0].items() if k in ("nprobe", "ef_search")},
            "met": b is not None and b[2] >= GOAL_SPEEDUP}
    if hnsw is not None:  # HNSW's time grows ~log n, the exact scan's ~n: also against the full-size scan
        goals["hnsw_speedup_vs_full_exact"] = exact / hnsw[1]
    cold_default = r["cold"]["default"]["median_ms"]
    goals["cold_ms"] = {"value": cold_default, "met": cold_default <= GOAL_COLD_MS,
                        "exact_ms": r["cold"]["exact"]["median_ms"], "hnsw_ms": r["cold"]["hnsw"]["median_ms"]}
    log(f"goals ({kind}):")
    g = goals["exact_over_floor"]
    log(f"  exact warm <= {GOAL_EXACT_OVER_FLOOR}x floor: {g['value']:.2f}x -> {'met' if g['met'] else 'NOT met'}")
    for name in ("ivf", "hnsw"):
        g = goals[f"{name}_recall95_speedup"]
        if g["value"] is None:
            log(f"  {name}: recall@{a.k} >= {GOAL_RECALL} at >= {GOAL_SPEEDUP}x: no setting reached recall "
                f"{GOAL_RECALL} -> NOT met")
        else:
            log(f"  {name}: recall@{a.k} >= {GOAL_RECALL} at >= {GOAL_SPEEDUP}x: fastest such setting {g['setting']} is "
                f"{g['value']:.1f}x the exact scan -> {'met' if g['met'] else 'NOT met'}")
    g = goals["cold_ms"]
    log(f"  cold process <= {GOAL_COLD_MS:.0f} ms: {g['value']:.0f} ms with the IVF index, {g['exact_ms']:.0f} ms "
        f"with --exact, {g['hnsw_ms']:.0f} ms with HNSW (n={h['count']}) -> {'met' if g['met'] else 'NOT met'} "
        f"(IVF default)")
    return goals


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build-vbench")
    ap.add_argument("--work", help="default BUILD/vbench-work")
    ap.add_argument("--n", type=int, default=1000000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--hnsw-n", type=int, default=100000, help="store size for HNSW (default 100000)")
    ap.add_argument("--kinds", default="uniform,clustered")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--queries", type=int, default=1000, help="batch size (stored vectors as queries)")
    ap.add_argument("--single", type=int, default=50, help="one-query exact scans timed")
    ap.add_argument("--peer-single", type=int, default=20, help="one-query faiss/numpy scans timed")
    ap.add_argument("--ann-queries", type=int, default=100)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--nprobe", default="1,2,4,8,16,32,64,128")
    ap.add_argument("--M", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--ef", default="50,100,200,400")
    ap.add_argument("--cold-runs", type=int, default=10)
    ap.add_argument("--max-wait", type=float, default=30, help="s to wait for the load to drop before a timed part")
    ap.add_argument("--json", help="write all results here")
    a = ap.parse_args()
    a.nprobe = [int(x) for x in a.nprobe.split(",")]
    a.ef = [int(x) for x in a.ef.split(",")]
    a.hnsw_n = min(a.hnsw_n, a.n)
    build = os.path.abspath(a.build)
    a.bin = lambda name: os.path.join(build, name)
    work = os.path.abspath(a.work or os.path.join(build, "vbench-work"))
    os.makedirs(work, exist_ok=True)

    m = machine()
    m["load_at_start"] = load()
    log("machine: " + ", ".join(f"{k} {v}" for k, v in m.items()))
    log(f"command: /usr/bin/python3 {' '.join(sys.argv)}")
    results = {"machine": m, "args": {k: v for k, v in vars(a).items() if k != "bin"}, "kinds": {}}
    for kind in a.kinds.split(","):
        log(f"\n-- {kind} --")
        r = {}
        big = make_store(a, kind, a.n, work)
        small = make_store(a, kind, a.hnsw_n, work) if a.hnsw_n < a.n else big
        rows = query_rows(a.n, a.queries, a.seed)
        r["ivf_index"] = reindex(a, big, {"index": "ivf", "nlist": a.nlist, "nprobe": 16})
        r["cpp"], truth = bench_cpp(a, big, rows, "--nprobe", a.nprobe, work, f"{kind}-n{a.n}")
        vecs = np.memmap(os.path.join(space_dir(big), "vectors.f32"), dtype=np.float32, mode="r").reshape(-1, a.dim)
        log(f"  python peers (faiss, numpy)   (load {wait_for_quiet(a.max_wait, 2.5)})")
        r["peers"] = peers_flat(a, vecs, rows, truth)
        del vecs
        r["cold"] = {"default": cold_runs(a, big, rows, []), "exact": cold_runs(a, big, rows, ["--exact"])}

        r["hnsw_index"] = reindex(a, small, {"index": "hnsw", "M": a.M, "efConstruction": a.ef_construction,
                                             "efSearch": 64})
        hrows = query_rows(a.hnsw_n, a.queries, a.seed)
        r["hnsw_cpp"], htruth = bench_cpp(a, small, hrows, "--ef", a.ef, work, f"{kind}-n{a.hnsw_n}")
        hvecs = np.memmap(os.path.join(space_dir(small), "vectors.f32"), dtype=np.float32, mode="r").reshape(-1, a.dim)
        log(f"  hnswlib M={a.M} efConstruction={a.ef_construction}   (load {wait_for_quiet(a.max_wait, 2.5)})")
        r["hnswlib"] = peer_hnswlib(a, hvecs, hrows, htruth)
        del hvecs
        r["cold"]["hnsw"] = cold_runs(a, small, hrows, [])
        r["goals"] = report_kind(a, kind, r)
        results["kinds"][kind] = r
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1)
    log(f"\nload at end: {load()}")


if __name__ == "__main__":
    main()
