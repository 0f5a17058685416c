"""Cold-process `mmu-search --like ID --k 50` (issue 19 point 3): fresh processes,
page cache warm, against the stores given, with process start measured in the
same run (`mmu-search --version`-like no-op: `--help`).

  python3 bench/cold_like.py --bin build --store DIR [--store DIR2 ...] [--runs 15] [--k 50]

Each run picks a seeded object id obj<i> (stores made by mmu_bench_make_store)
and times the whole process (fork to exit). Per store: median / min wall ms,
median CPU ms of the child (user + sys), and its method. The stores are
queried in turn within each run, so load changes hit them alike.
"""
import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import time


def timed(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = (time.perf_counter() - t0) * 1e3
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1e3
    if p.returncode != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(cmd), p.stderr))
    return wall, cpu, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--store", action="append", required=True)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--n", type=int, default=1000000, help="objects in the stores (ids obj0..obj<n-1>)")
    a = ap.parse_args()
    search = os.path.join(a.bin, "mmu-search")
    rng = random.Random(1)
    rows = {"start (--help)": []}
    rows.update({s: [] for s in a.store})
    method = {}
    timed([search, "--store", a.store[0], "--like", "obj0", "--k", str(a.k)])  # page cache warm-up
    for s in a.store:
        _, _, out = timed([search, "--store", s, "--like", "obj0", "--k", str(a.k), "--format", "json"])
        method[s] = json.loads(out)["method"]
    for _ in range(a.runs):
        oid = "obj%d" % rng.randrange(a.n)
        w, c, _ = timed([search, "--help"])
        rows["start (--help)"].append((w, c))
        for s in a.store:
            w, c, _ = timed([search, "--store", s, "--like", oid, "--k", str(a.k)])
            rows[s].append((w, c))
    print("load average before/after: %s" % (os.getloadavg(),))
    for name, v in rows.items():
        walls = [x[0] for x in v]
        cpus = [x[1] for x in v]
        print("%-40s wall median %7.1f ms  min %7.1f ms   CPU median %7.1f ms   %s" % (
            name, statistics.median(walls), min(walls), statistics.median(cpus), method.get(name, "")))


if __name__ == "__main__":
    main()
