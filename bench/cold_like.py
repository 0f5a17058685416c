"""Cold-process `mmu-search --like ID --k 50` (issue 19 point 3): fresh processes,
page cache warm, against the stores given, with process start measured in the
same run (`mmu-search --version`-like no-op: `--help`).

  python3 bench/cold_like.py --bin build [--bin OLD/mmu-search ...] --store DIR [--store DIR2 ...]
                             [--runs 15] [--k 50] [--cache-state found|large|split]

Each run picks a seeded object id obj<i> (stores made by mmu_bench_make_store)
and times the whole process (fork to exit). Per binary and store: median / min
wall ms, median CPU ms of the child (user + sys), and its method. The
binaries and stores are queried in turn within each run, so load changes hit
them alike.

--cache-state puts the files a --like reads (catalog.sqlite, each space's
vectors.*) into one page-cache state first, per file, without touching the
rest of the machine's cache:
  large: dropped (fsync + POSIX_FADV_DONTNEED), then read back in 1 MB reads,
         which readahead fills with large folios (the state right after a build);
  split: dropped, then read back with POSIX_FADV_RANDOM in 4 KB reads: 4 KB
         folios, the state this VM's DAMON pageout scheme leaves behind;
  found: as they are (default).
FileHugePages of /proc/meminfo is printed before and after.
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


def file_huge_pages_kb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("FileHugePages:"):
                return int(line.split()[1])
    return -1


def read_files(store):
    """The files a --like of `store` reads: its live generation's catalog and vectors."""
    with open(os.path.join(store, "CURRENT")) as f:
        gen = os.path.join(store, f.read().strip())
    out = [os.path.join(gen, "catalog.sqlite")]
    spaces = os.path.join(gen, "spaces")
    for space in sorted(os.listdir(spaces)):
        d = os.path.join(spaces, space)
        out += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.startswith("vectors.")]
    return out


def set_cache_state(path, state):
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        os.fsync(fd)  # DONTNEED drops clean pages only
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if state == "split":
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: one 4 KB folio per read
            step = 4096
        else:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            step = 1 << 20
        for off in range(0, size, step):
            os.pread(fd, step, off)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_NORMAL)
    finally:
        os.close(fd)


def search_binary(b):
    return os.path.join(b, "mmu-search") if os.path.isdir(b) else b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", required=True,
                    help="a build folder holding mmu-search, or an mmu-search binary (repeatable)")
    ap.add_argument("--store", action="append", required=True)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--n", type=int, default=1000000, help="objects in the stores (ids obj0..obj<n-1>)")
    ap.add_argument("--cache-state", choices=["found", "large", "split"], default="found")
    a = ap.parse_args()
    bins = [search_binary(b) for b in a.bin]
    rng = random.Random(1)
    print("FileHugePages before: %d kB" % file_huge_pages_kb())
    if a.cache_state != "found":
        t0 = time.perf_counter()
        files = sorted({p for s in a.store for p in read_files(s)})
        for p in files:
            set_cache_state(p, a.cache_state)
        print("cache state %s set for %d files in %.1f s; FileHugePages now %d kB" % (
            a.cache_state, len(files), time.perf_counter() - t0, file_huge_pages_kb()))
    else:
        # Not in a known state: one query per store only warms what is missing.
        for s in a.store:
            timed([bins[0], "--store", s, "--like", "obj0", "--k", str(a.k)])
    rows = {"start (--help)": []}
    method = {}
    for b in bins:
        for s in a.store:
            rows[(b, s)] = []
            _, _, out = timed([b, "--store", s, "--like", "obj0", "--k", str(a.k), "--format", "json"])
            method[(b, s)] = json.loads(out)["method"]
    load_before = os.getloadavg()
    for _ in range(a.runs):
        oid = "obj%d" % rng.randrange(a.n)
        w, c, _ = timed([bins[0], "--help"])
        rows["start (--help)"].append((w, c))
        for b in bins:
            for s in a.store:
                w, c, _ = timed([b, "--store", s, "--like", oid, "--k", str(a.k)])
                rows[(b, s)].append((w, c))
    print("load average before/after: %s / %s; FileHugePages after: %d kB; OPENBLAS_CORETYPE=%s" % (
        load_before, os.getloadavg(), file_huge_pages_kb(), os.environ.get("OPENBLAS_CORETYPE", "(unset)")))
    for name, v in rows.items():
        walls = [x[0] for x in v]
        cpus = [x[1] for x in v]
        label = name if isinstance(name, str) else "%s  %s" % name
        print("%-60s wall median %7.1f ms  min %7.1f ms   CPU median %7.1f ms   %s" % (
            label, statistics.median(walls), min(walls), statistics.median(cpus), method.get(name, "")))


if __name__ == "__main__":
    main()
