"""`mpirun -n 4 mmu-search-mpi` over 4 stores against one process
(`mmu-search --store x4`, itself checked against a brute force by
test_store_set.py) for 200 queries, exact and IVF, and a rank that dies or
hangs mid-query. Skipped (exit 77, reason printed) where mpirun or
mmu-search-mpi is missing.
Run: test_mpi.py --bin BUILD --samples DIR --tmp DIR
"""
import json
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402
import store_set_fixtures as ssf  # noqa: E402

cases, case = case_list()
MPIRUN = ["mpirun", "--oversubscribe", "--allow-run-as-root"]


def store_flags(stores):
    return [a for s in stores for a in ("--store", s)]


def mpi(env, n, *args, timeout=120):
    start = time.monotonic()
    p = subprocess.run(MPIRUN + ["-n", str(n), env.mpi_bin, *args], capture_output=True, text=True, timeout=timeout)
    p.seconds = time.monotonic() - start
    return p


def results(stdout):
    return [(r["label"], r.get("error"), r["results"]) for r in json.loads(stdout)]


def setup(env):
    env.stores = ssf.twin_stores(env.index, env.samples, env.tmp, 4)
    rng = random.Random(1818)
    spaces = {name: ssf.Space(env.stores, name) for name in ("image", "spectrum")}
    ids = rng.sample([oid for sp in spaces.values() for oid in sp.ids], 200)
    env.ids = os.path.join(env.tmp, "ids.txt")
    with open(env.ids, "w") as f:
        f.write("\n".join(ids) + "\n")


def same_as_one_process(env, n, label, *extra):
    args = [*store_flags(env.stores), "--like-file", env.ids, "--k", "50", "--format", "json", *extra]
    one = run(env.search, *args)
    p = mpi(env, n, *args)
    need(p.returncode == 0, "%s: mpirun -n %d failed (%d): %s" % (label, n, p.returncode, p.stderr[-2000:]))
    want, got = results(one.stdout), results(p.stdout)
    need(len(want) == 200 and all(not e for _, e, _ in want), "%s: the one-process answer is incomplete" % label)
    need(got == want, "%s: mpirun -n %d differs from one process (first difference at query %d)" %
         (label, n, next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))))
    return json.loads(p.stdout)


@case("exact: mpirun -n 4 over 4 stores equals one process for 200 queries (ids, scores, order)")
def _(env):
    r = same_as_one_process(env, 4, "exact")
    need("exact" in r[0]["method"], "method %r is not exact" % r[0]["method"])


@case("exact: mpirun -n 3 (two stores on rank 0) equals one process")
def _(env):
    same_as_one_process(env, 3, "exact, 3 ranks")


@case("shards of one fit (mmu-index fit, build --fit --shard I/4): mpirun -n 4 equals one process, exact and IVF, and the merged store bit for bit (exact)")
def _(env):
    fit = os.path.join(env.tmp, "fit")
    run(env.index, "fit", env.samples, "--out", fit)
    shards = [os.path.join(env.tmp, "shard%d" % i) for i in range(4)]
    for i, shard in enumerate(shards):
        run(env.index, "build", env.samples, "--store", shard, "--fit", fit, "--shard", "%d/4" % i, "--quiet")
    ids = ssf.Space(shards, "image").ids + ssf.Space(shards, "spectrum").ids
    id_file = os.path.join(env.tmp, "shard-ids.txt")
    with open(id_file, "w") as f:
        f.write("\n".join(ids) + "\n")
    args = [*store_flags(shards), "--like-file", id_file, "--k", "30", "--format", "json"]
    # The store merged from the shards: exact scores are canonical (the same float for a row wherever it sits),
    # so the ranks' answers equal its answers exactly, scores (the JSON's printed floats) and ties included.
    merged = os.path.join(env.tmp, "shards-merged")
    run(env.index, "merge", *shards, "--store", merged)
    for label in ("exact", "ivf"):
        if label == "ivf":
            for shard in shards:
                run(env.index, "reindex", "--store", shard, "--space", "image", "--index", "ivf", "--recall-queries", "5")
        want = results(run(env.search, *args).stdout)
        p = mpi(env, 4, *args)
        need(p.returncode == 0, "%s: mpirun failed (%d): %s" % (label, p.returncode, p.stderr[-2000:]))
        need(results(p.stdout) == want, "%s: mpirun -n 4 over the shards differs from one process" % label)
        if label == "exact":  # (IVF answers are FAISS's per-shard lists: equal between the set and MPI only)
            whole = results(run(env.search, "--store", merged, "--like-file", id_file, "--k", "30", "--format",
                                "json").stdout)
            diff = next((i for i, (a, b) in enumerate(zip(results(p.stdout), whole)) if a[1:] != b[1:]), None)
            need(len(whole) == len(want) and diff is None, "exact: mpirun -n 4 differs from the merged store at query %s: "
                 "%s vs %s" % (diff, results(p.stdout)[diff][2][:3] if diff is not None else "",
                                whole[diff][2][:3] if diff is not None else ""))
        methods = {r["method"] for r in json.loads(p.stdout) if r.get("space") == "image"}
        need(any(("ivf" in m.lower()) == (label == "ivf") for m in methods), "%s: image searched by %s" % (label, methods))
        need(len(want) == len(ids) and all(not e for _, e, _ in want), "%s: the one-process answer is incomplete" % label)


@case("a rank that dies mid-query: non-zero exit, no hang, the rank named")
def _(env):
    oid = open(env.ids).readline().strip()
    p = mpi(env, 4, *store_flags(env.stores), "--like", oid, "--test-die-rank", "2", timeout=60)
    need(p.returncode != 0, "the job succeeded although rank 2 died")
    need(p.seconds < 30, "the job took %.1f s to end" % p.seconds)
    out = p.stdout + p.stderr
    need("rank 2" in out, "rank 2 is not named: %s" % out[-1500:])


@case("a rank that hangs mid-query: rank 0 gives up after --rank-timeout naming it, and the job ends")
def _(env):
    oid = open(env.ids).readline().strip()
    p = mpi(env, 4, *store_flags(env.stores), "--like", oid, "--test-hang-rank", "3", "--rank-timeout", "2", timeout=60)
    need(p.returncode != 0, "the job succeeded although rank 3 hung")
    need(p.seconds < 30, "the job took %.1f s to end" % p.seconds)
    need("rank 3 (stores 3) did not answer within 2 s" in p.stderr, "rank 3 is not named: %s" % p.stderr[-1500:])


@case("bad input: a missing store and stores of different fits are refused by name, every rank ends")
def _(env):
    missing = os.path.join(env.tmp, "no-such-store")
    oid = open(env.ids).readline().strip()
    p = mpi(env, 4, *store_flags(env.stores[:3] + [missing]), "--like", oid, timeout=60)
    need(p.returncode != 0 and missing in p.stderr, "missing store: rc %d, %s" % (p.returncode, p.stderr[-1500:]))
    root = os.path.join(env.tmp, "other-root")
    ssf.twin_root(env.samples, root, 7)
    for c in sorted(os.listdir(os.path.join(root, "desi", "edr_sv3")))[1:]:
        shutil.rmtree(os.path.join(root, "desi", "edr_sv3", c))
    other = os.path.join(env.tmp, "other-store")
    ssf.build(env.index, root, other)
    p = mpi(env, 2, *store_flags([env.stores[0], other]), "--like", oid, timeout=60)
    need(p.returncode != 0 and "differs between stores" in p.stderr and other in p.stderr,
         "different fits: rc %d, %s" % (p.returncode, p.stderr[-1500:]))


def mpi_env_or_skip():
    """The harness's Env with index, search, samples, tmp and mpi_bin set; exits 77 (skipped) where MPI cannot
    run here. Shared by the MPI tests."""
    args, index, search = binaries_samples_tmp()
    mpi_bin = os.path.join(args.bin, "mmu-search-mpi")
    if shutil.which("mpirun") is None:
        print("SKIP: mpirun is not installed (Debian openmpi-bin, scripts/install-deps.sh)")
        sys.exit(77)
    if not os.path.exists(mpi_bin):
        print("SKIP: %s was not built (CMake found no MPI: libopenmpi-dev)" % mpi_bin)
        sys.exit(77)
    probe = subprocess.run(MPIRUN + ["-n", "2", "true"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        print("SKIP: mpirun cannot start 2 processes here: %s" % (probe.stderr.strip()[-500:] or probe.returncode))
        sys.exit(77)
    env = Env()
    env.index, env.search, env.samples, env.tmp, env.mpi_bin = index, search, args.samples, args.tmp, mpi_bin
    return env


def run_mpi_cases(cases, setup, stop=lambda env: None):
    """mpi_env_or_skip, then the cases; stop(env) ends what they left running, after a failure too. Shared by the
    MPI tests' mains."""
    env = mpi_env_or_skip()
    try:
        return run_cases(cases, env, setup)
    finally:
        stop(env)


if __name__ == "__main__":
    sys.exit(run_mpi_cases(cases, setup))
