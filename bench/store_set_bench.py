"""What searching a set of stores costs against one store of the same objects,
and what mmu-search-mpi adds: --like-file queries over N twin stores
(tests/py/store_set_fixtures.py: copies of the samples, one fit) with
  one   : mmu-search --store U (U built from the N roots together: the same objects in one store)
  set   : mmu-search --store S0 ... --store S(N-1)
  mpi R : mpirun -n R mmu-search-mpi --store S0 ...
Each timed --runs times (whole commands, process start included); medians and
ratios to `one` are printed. Run:
  /usr/bin/python3 bench/store_set_bench.py --bin build --samples data/samples --tmp /work/tmp-multistore/bench
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import store_set_fixtures as ssf  # noqa: E402


def timed(cmd, runs):
    times = []
    for _ in range(runs):
        t = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.monotonic() - t)
        if p.returncode != 0:
            raise SystemExit("failed: %s\n%s" % (" ".join(cmd), p.stderr[-2000:]))
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--stores", type=int, default=4)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    index, search = os.path.join(a.bin, "mmu-index"), os.path.join(a.bin, "mmu-search")
    shutil.rmtree(a.tmp, ignore_errors=True)
    os.makedirs(a.tmp)
    stores = ssf.twin_stores(index, a.samples, a.tmp, a.stores)
    union = os.path.join(a.tmp, "union-root")
    for i in range(a.stores):
        shutil.copytree(os.path.join(a.tmp, "root%d" % i), union, dirs_exist_ok=True)
    one = os.path.join(a.tmp, "union-store")
    ssf.build(index, union, one)
    ids = ssf.Space(stores, "image").ids + ssf.Space(stores, "spectrum").ids
    n_vectors = len(ids)
    ids = (ids * (a.queries // len(ids) + 1))[:a.queries]
    id_file = os.path.join(a.tmp, "ids.txt")
    with open(id_file, "w") as f:
        f.write("\n".join(ids) + "\n")
    common = ["--like-file", id_file, "--k", str(a.k), "--format", "csv"]
    flags = [x for s in stores for x in ("--store", s)]
    rows = [("one store", [search, "--store", one] + common), ("set of %d" % a.stores, [search] + flags + common)]
    mpi = os.path.join(a.bin, "mmu-search-mpi")
    if shutil.which("mpirun") and os.path.exists(mpi):
        for r in (1, a.stores):
            rows.append(("mpi -n %d" % r, ["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", str(r), mpi] +
                         flags + common))
    print("load: %s" % open("/proc/loadavg").read().strip())
    print("OPENBLAS_CORETYPE=%s; %d queries, k=%d, %d vectors in the set" %
          (os.environ.get("OPENBLAS_CORETYPE", "(unset)"), a.queries, a.k, n_vectors))
    base = None
    for name, cmd in rows:
        med, times = timed(cmd, a.runs)
        base = base or med
        print("%-12s median %.3f s  (%s)  x%.2f of one store" % (name, med, ", ".join("%.3f" % t for t in times), med / base))
    shutil.rmtree(a.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
