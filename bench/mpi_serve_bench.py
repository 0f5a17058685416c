"""What the MPI search service adds per request: GET /like (k = 10) answered by
  serve : mmu-search serve --store M (M: mmu-index merge of the N stores, the same objects in one store)
  mpi R : mpirun -n R mmu-search-mpi --store S0 ... --serve
over N twin stores (tests/py/store_set_fixtures.py: copies of the samples, one
fit), with 1 and 4 clients at once; requests/s and median latency, --runs
times each, medians and ratios to `serve` printed. Run:
  /usr/bin/python3 bench/mpi_serve_bench.py --bin build --samples data/samples --tmp /work/tmp-mpiserve/bench
"""
import argparse
import concurrent.futures
import os
import re
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import store_set_fixtures as ssf  # noqa: E402


def start(cmd):
    """Starts a server; (process, port, pid to SIGTERM) from its start lines."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    out, deadline = b"", time.monotonic() + 60
    mpi = cmd[0] == "mpirun"  # rank 0's pid is on its second line
    while not re.search(rb"http://[^:]+:(\d+)", out) or (mpi and not re.search(rb"rank 0 is pid \d+ ", out)):
        if time.monotonic() > deadline:
            os.killpg(p.pid, signal.SIGKILL)
            raise SystemExit("no start line from %s: %r" % (" ".join(cmd), out))
        select.select([p.stderr], [], [], 1)
        out += os.read(p.stderr.fileno(), 4096)
    port = int(re.search(rb"http://[^:]+:(\d+)", out).group(1))
    pid = re.search(rb"rank 0 is pid (\d+)", out)
    return p, port, int(pid.group(1)) if pid else p.pid


def requests(port, ids, clients):
    """(requests/s, median ms) of GET /like for every id, `clients` at once."""
    def one(oid):
        t = time.perf_counter()
        with urllib.request.urlopen("http://127.0.0.1:%d/like?id=%s&k=10" % (port, oid)) as r:
            r.read()
        return time.perf_counter() - t
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        lat = list(pool.map(one, ids))
    return len(ids) / (time.perf_counter() - t), statistics.median(lat) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--stores", type=int, default=4)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    index = os.path.join(a.bin, "mmu-index")
    shutil.rmtree(a.tmp, ignore_errors=True)
    os.makedirs(a.tmp)
    stores = ssf.twin_stores(index, a.samples, a.tmp, a.stores)
    merged = os.path.join(a.tmp, "merged")
    subprocess.run([index, "merge", *stores, "--store", merged], check=True, capture_output=True)
    db = sqlite3.connect(os.path.join(ssf.generation(merged), "catalog.sqlite"))
    ids = [r[0] for r in db.execute("SELECT object_id FROM objects ORDER BY row")]
    servers = [("serve", [os.path.join(a.bin, "mmu-search"), "serve", "--store", merged, "--port", "0"]),
               ("mpi %d" % a.ranks, ["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", str(a.ranks),
                                     os.path.join(a.bin, "mmu-search-mpi"), *[x for s in stores for x in ("--store", s)],
                                     "--serve", "--port", "0"])]
    results = {}
    for name, cmd in servers:
        p, port, stop_pid = start(cmd)
        try:
            requests(port, ids[:50], 1)  # warm: catalogs, searchers
            for clients in (1, 4):
                runs = [requests(port, ids, clients) for _ in range(a.runs)]
                results[name, clients] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        finally:
            os.kill(stop_pid, signal.SIGTERM)
            p.wait(60)
    print("%d GET /like (k = 10) over %d objects, %d runs; medians" % (len(ids), len(ids), a.runs))
    for clients in (1, 4):
        base = results["serve", clients]
        for name, _ in servers:
            rps, ms = results[name, clients]
            print("%-8s clients %d: %7.0f requests/s (%.2f of serve), median %.2f ms (%.2f of serve)" %
                  (name, clients, rps, rps / base[0], ms, ms / base[1]))


if __name__ == "__main__":
    main()
