"""End to end on a real one-node Slurm cluster: the job files of scripts/slurm/ build a sharded store.

A cluster of our own (slurm_cluster.py: munged, slurmctld, slurmd in a temporary folder) runs the
real job files, their parameters given through the environment sbatch exports to the job and their
resources overridden on the sbatch command line (this node has 2 CPUs, 4 GB declared):
  sbatch --wait fit.sbatch                      the sampled baseline fit of the sample tree
  sbatch --wait --array=0-3 build-array.sbatch  four shard stores with that fit
  sbatch --wait merge.sbatch                    one store from the four
  sbatch --wait mpi-search.sbatch               alongside the merge: the MPI search over the four shards (ranks
                                                started by mpirun), and one with a shard missing
  sbatch mpi-search.sbatch, MMU_SERVE_PORT set  the service (ranks started by srun --mpi=pmix), asked, scancel'd
Then, against a single-process `mmu-index build --fit` of the same tree with the same fit:
the same spaces, ids, surveys and positions; bit-equal vectors (vectors.f32 read with numpy);
the same `mmu-search --like ID --k 10 --format json` answers (ids, surveys, scores, order) for 100
queries. Then run-all.sh with a fit that must fail: the build array and the merge are cancelled
(afterok, --kill-on-invalid-dep), its wait ends non-zero, and no store is made. The MPI job's results
equal `mmu-search --stores` over the same shards (100 queries: ids, scores, order), its output names each
rank's node and shards, and a missing shard fails the job with its own error naming the shard, leaving no
results file. The service's GET /like equals `mmu-search --stores --like` and it stops on scancel (where
mmu-search-mpi has --serve; else srun starts a second batch job).
When Slurm cannot start here, the test prints why, runs the same job files with bash (as Slurm
would, one process per array task) and the same comparisons, and exits 77: ctest says SKIPPED.
Run: test_slurm.py --bin BUILD --samples data/samples --tmp DIR
"""
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402
from slurm_cluster import SlurmCluster, SlurmUnavailable  # noqa: E402
from space_reading import brute, load_space  # noqa: E402

CASES, case = case_list()
JOBS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "slurm")
SHARDS = 4
QUERIES = 100
# Against numpy's float64 brute force: our scores are float32 (the canonical sum rounded once).
# Between our own stores and paths scores are canonical (a row's float does not depend on where it
# sits), so those comparisons are exact (tol=0).
SCORE_TOL = 1e-6
# What each job may take on the test node (the job files ask for a real cluster's sizes).
SMALL = ("--cpus-per-task=1", "--mem=256M", "--time=5")
# The MPI job on the test node: 2 ranks (tasks) on the one node, each holding two of the four shards. The node
# has 2 CPUs, and Slurm refuses --ntasks-per-node above a node's CPUs even with --overcommit (checked: "Requested
# node configuration is not available"); the job file's --ntasks-per-node=1 (one rank per node on a real cluster)
# can only be overridden by another --ntasks-per-node. --overcommit allots the job one CPU and --oversubscribe lets
# it share that CPU (the test partition allows it), so the MPI jobs run beside the merge instead of queueing.
MPI_RANKS = 2
MPI_SHAPE = ("--nodes=1", "--ntasks-per-node=%d" % MPI_RANKS, "--overcommit", "--oversubscribe")
MPI_K = 50
SERVE_QUERIES = 10


def job_file(name):
    return os.path.abspath(os.path.join(JOBS, name))


def params(env, work, store):
    """The job files' parameters, as the environment sbatch exports to every job."""
    return {"MMU_BIN": os.path.abspath(env.bin), "MMU_DATA": os.path.abspath(env.samples), "MMU_WORK": work,
            "MMU_SHARDS": str(SHARDS), "MMU_FIT_SAMPLE": "8", "MMU_SEED": "7", "MMU_STORE": store}


def job_log(pattern_dir):
    """Every job output file of a folder, for a failure message."""
    out = []
    for name in sorted(os.listdir(pattern_dir)):
        with open(os.path.join(pattern_dir, name), errors="replace") as f:
            out.append("--- %s\n%s" % (name, f.read().strip()))
    return "\n".join(out)


def sbatch_timed(env, cluster, extra, name, *args, label=None):
    """sbatch --wait ARGS of a job file, its time noted; the finished sbatch (its stdout holds the job id)."""
    t = time.monotonic()
    # Run in the logs folder: the jobs write their output there under the job files' own names.
    p = cluster.sbatch("--wait", *SMALL, *args, job_file(name), env_extra=extra, cwd=env.logs, timeout=90)
    env.timings.append("%s %.1f s" % (label or name, time.monotonic() - t))
    p.job = p.stdout.strip().split(";")[0]
    return p


def sbatch_wait(env, cluster, extra, name, array=None):
    """sbatch --wait of a job file; fails the case naming the job, with its output, unless it succeeded."""
    p = sbatch_timed(env, cluster, extra, name, *(["--array=" + array] if array else []))
    need(p.returncode == 0, "sbatch --wait %s: exit %d: %s\n%s" % (name, p.returncode, p.stderr.strip(), job_log(env.logs)))
    return p


def run_jobs_slurm(env, cluster):
    extra = params(env, env.work, env.merged)
    # sbatch --wait also returns 0 for a job cancelled before it ran: each step's own output is its proof.
    sbatch_wait(env, cluster, extra, "fit.sbatch")
    need(os.path.isdir(os.path.join(env.work, "fit")), "the fit job left no fit folder\n" + job_log(env.logs))
    sbatch_wait(env, cluster, extra, "build-array.sbatch", array="0-%d" % (SHARDS - 1))
    write_mpi_queries(env)
    # The MPI jobs need only the shards: they run beside the merge (MPI_SHAPE).
    with ThreadPoolExecutor(len(env.mpi_runs) + 2) as pool:
        mpi_jobs = {label: pool.submit(sbatch_timed, env, cluster, dict(extra, **job_extra), "mpi-search.sbatch",
                                       *MPI_SHAPE, label="mpi-search.sbatch (%s)" % label)
                    for label, job_extra in env.mpi_runs.items()}
        served = pool.submit(serve_job, env, cluster, extra) if env.serve_missing is None else None
        p = sbatch_wait(env, cluster, extra, "merge.sbatch")
    env.mpi_jobs = {label: f.result() for label, f in mpi_jobs.items()}
    env.served = served.result() if served else None
    done = os.path.join(env.work, "merge-%s.done" % p.job)
    need(os.path.exists(done), "the merge job left no %s\n%s" % (done, job_log(env.logs)))
    env.failing_chain = run_all_failing(env, cluster)


def plan_mpi_runs(env, cluster):
    """The MPI jobs to run, {label: their own parameters}: over the four shards with each launcher that can
    run here, and one with a fifth shard missing. None where mpirun or mmu-search-mpi is missing (the reason
    in env.mpi_missing)."""
    env.mpi_runs, env.mpi_missing, env.served = {}, None, None
    env.serve_missing = "needs Slurm (scancel ends the service)" if cluster is None else None
    mpi_bin = os.path.join(env.bin, "mmu-search-mpi")
    if shutil.which("mpirun") is None or not os.path.exists(mpi_bin):
        env.mpi_missing = "no mpirun (Debian openmpi-bin)" if shutil.which("mpirun") is None else "no " + mpi_bin
        env.serve_missing = env.mpi_missing
        print("MPI jobs not run: %s" % env.mpi_missing)
        return
    root = "--allow-run-as-root" if os.geteuid() == 0 else ""  # Open MPI's mpirun refuses root without it
    # As py.mpi: where mpirun cannot start processes at all (outside Slurm too), the MPI jobs are not run.
    probe = subprocess.run(["mpirun", *root.split(), "--oversubscribe", "-n", "2", "true"], capture_output=True,
                           text=True, timeout=60)
    if probe.returncode != 0:
        env.mpi_missing = env.serve_missing = "mpirun cannot start 2 processes here: %s" % (
            probe.stderr.strip()[-300:] or probe.returncode)
        print("MPI jobs not run: %s" % env.mpi_missing)
        return
    if env.serve_missing is None and "--serve" not in run(mpi_bin, "--help").stdout:
        env.serve_missing = "this mmu-search-mpi has no --serve"
    env.mpi_queries = os.path.join(env.tmp, "mpi-queries.txt")
    base = {"MMU_QUERIES": env.mpi_queries, "MMU_K": str(MPI_K), "MMU_MPIRUN": "mpirun", "MMU_MPIRUN_ARGS": root}
    env.mpi_runs["mpirun"] = dict(base, MMU_RESULTS=os.path.join(env.tmp, "mpi-results-mpirun.json"))
    env.serve_launch = ("mpirun", root)
    if cluster is not None:
        # Slurm starting the ranks itself, the usual way on clusters, where its PMIx plug-in is built: it starts
        # the service (one MPI job fewer on the 2 cores), or a batch job where there is no --serve.
        p = subprocess.run(["srun", "--mpi=list"], env=cluster.env, capture_output=True, text=True, timeout=30)
        if "pmix" not in p.stdout + p.stderr:
            print("srun --mpi=pmix not run: this Slurm has no PMIx plug-in: %s" % (p.stdout + p.stderr).strip())
        elif env.serve_missing is None:
            env.serve_launch = ("srun", "--mpi=pmix")
        else:
            env.mpi_runs["srun --mpi=pmix"] = dict(base, MMU_MPIRUN="srun", MMU_MPIRUN_ARGS="--mpi=pmix",
                                                   MMU_RESULTS=os.path.join(env.tmp, "mpi-results-srun.json"))
    # An earlier run's results there: a failed job must not leave them looking like its own.
    stale = os.path.join(env.tmp, "mpi-results-missing.json")
    with open(stale, "w") as f:
        f.write("[]\n")
    env.mpi_runs["missing shard"] = dict(base, MMU_SHARDS=str(SHARDS + 1), MMU_RESULTS=stale)


def shard_objects(env):
    """(object_id, survey) of every object in the shard stores, read from their files."""
    objs = set()
    for i in range(SHARDS):
        shard = os.path.join(env.work, "shard-%d" % i)
        for sp in spaces(shard):
            objs.update((m[0], m[1]) for m in load_space(shard, sp)[1])
    return sorted(objs)


def write_mpi_queries(env):
    """QUERIES object ids of the shards for the MPI job (an id in two surveys left out: it would need --survey)."""
    if not env.mpi_runs:
        return
    objs = shard_objects(env)
    surveys_of = Counter(oid for oid, _ in objs)
    once = [oid for oid, _ in objs if surveys_of[oid] == 1]
    need(len(once) >= QUERIES, "only %d objects for %d MPI queries" % (len(once), QUERIES))
    env.mpi_ids = [once[i] for i in np.random.default_rng(6).choice(len(once), QUERIES, replace=False)]
    with open(env.mpi_queries, "w") as f:
        f.write("".join(i + "\n" for i in env.mpi_ids))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url):
    """(status, parsed JSON) of a GET; (None, why) when nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError as e:
        return None, str(e)


def serve_job(env, cluster, extra):
    """mpi-search.sbatch in serve mode (sbatch without --wait): waits for the service's start line in the job's
    output, asks GET /health and GET /like for SERVE_QUERIES ids, then scancel and waits for the port to close.
    Returns what the serve case checks."""
    t = time.monotonic()
    r = {"port": free_port(), "ids": env.mpi_ids[:SERVE_QUERIES]}
    job_extra = dict(env.mpi_runs["mpirun"], MMU_SERVE_PORT=str(r["port"]), MMU_SERVE_HOST="127.0.0.1",
                     MMU_MPIRUN=env.serve_launch[0], MMU_MPIRUN_ARGS=env.serve_launch[1])
    p = cluster.sbatch(*SMALL, *MPI_SHAPE, job_file("mpi-search.sbatch"), env_extra=dict(extra, **job_extra),
                       cwd=env.logs, timeout=30)
    need(p.returncode == 0, "sbatch mpi-search.sbatch (serve): exit %d: %s" % (p.returncode, p.stderr.strip()))
    r["job"] = p.stdout.strip().split(";")[0]
    r["out_path"] = os.path.join(env.logs, "mmu-search-mpi-%s.out" % r["job"])

    def output():
        try:
            with open(r["out_path"], errors="replace") as f:
                return f.read()
        except OSError:
            return ""
    try:
        end = time.monotonic() + 60
        while "serving " not in output() and "error" not in output() and time.monotonic() < end:
            time.sleep(0.1)
        base = "http://127.0.0.1:%d" % r["port"]
        r["health"] = http_get(base + "/health")
        r["replies"] = [http_get(base + "/like?" + urllib.parse.urlencode({"id": oid, "k": 10})) for oid in r["ids"]]
    finally:
        subprocess.run(["scancel", r["job"]], env=cluster.env, capture_output=True, timeout=30)
    stopped = time.monotonic()
    while http_get("http://127.0.0.1:%d/health" % r["port"])[0] is not None and time.monotonic() - stopped < 30:
        time.sleep(0.2)
    r["stop_s"] = time.monotonic() - stopped
    r["out"] = output()
    env.timings.append("mpi-search.sbatch (serve by %s, until scancel) %.1f s" % (" ".join(env.serve_launch),
                                                                                time.monotonic() - t))
    return r


def run_all_failing(env, cluster):
    """run-all.sh with MMU_WAIT=1 whose fit fails (no data): (the finished run-all.sh, its jobs' output folder)."""
    work = os.path.join(env.tmp, "work-bad")
    extra = dict(params(env, work, os.path.join(env.tmp, "never")), MMU_DATA=os.path.join(env.tmp, "no-such-data"),
                 MMU_WAIT="1")
    logs = os.path.join(env.tmp, "logs-bad")
    os.makedirs(logs)
    t = time.monotonic()
    p = subprocess.run([job_file("run-all.sh"), *SMALL], env=dict(cluster.env, **extra), cwd=logs,
                       capture_output=True, text=True, timeout=90)
    env.timings.append("run-all.sh (failing fit) %.1f s" % (time.monotonic() - t))
    return p, logs


def run_jobs_bash(env):
    """The same job files run by bash, as Slurm would run them (one process per array task; mpirun is told
    the number of ranks, which no allocation gives it here)."""
    extra = params(env, env.work, env.merged)
    for name, tasks in (("fit.sbatch", [None]), ("build-array.sbatch", range(SHARDS)), ("merge.sbatch", [None])):
        for task in tasks:
            e = dict(os.environ, **extra)
            if task is not None:
                e["SLURM_ARRAY_TASK_ID"] = str(task)
            out = os.path.join(env.logs, "%s-%s.out" % (name, task))
            with open(out, "w") as f:
                p = subprocess.run(["bash", job_file(name)], env=e, stdout=f, stderr=subprocess.STDOUT, timeout=120)
            need(p.returncode == 0, "bash %s (task %s): exit %d\n%s" % (name, task, p.returncode, job_log(env.logs)))
        if name == "build-array.sbatch":
            write_mpi_queries(env)
    env.mpi_jobs = {}
    for label, job_extra in env.mpi_runs.items():
        if job_extra["MMU_MPIRUN"] != "mpirun":
            continue  # srun needs an allocation
        e = dict(os.environ, **extra)
        e.update(job_extra)
        e["MMU_MPIRUN_ARGS"] += " -n %d" % MPI_RANKS
        with open(os.path.join(env.logs, "mpi-search.sbatch-%s.out" % label.replace(" ", "_")), "w") as f:
            p = subprocess.run(["bash", job_file("mpi-search.sbatch")], env=e, stdout=f, stderr=subprocess.STDOUT,
                               timeout=120)
        p.out = f.name
        env.mpi_jobs[label] = p
    env.failing_chain = None


def spaces(store):
    with open(os.path.join(store, "CURRENT")) as f:
        db = sqlite3.connect(os.path.join(store, f.read().strip(), "catalog.sqlite"))
    return sorted(r[0] for r in db.execute("SELECT name FROM spaces"))


def setup(env):
    env.timings = []
    env.work = os.path.join(env.tmp, "work")
    env.merged = os.path.join(env.tmp, "merged")
    env.single = os.path.join(env.tmp, "single")
    env.logs = os.path.join(env.tmp, "logs")
    os.makedirs(env.logs)
    t = time.monotonic()
    try:
        with SlurmCluster() as cluster:
            env.timings.append("cluster up %.1f s" % (time.monotonic() - t))
            env.skipped = None
            plan_mpi_runs(env, cluster)
            run_jobs_slurm(env, cluster)
    except SlurmUnavailable as e:
        env.skipped = str(e)
        print("SKIPPED (Slurm): Slurm cannot start here: %s" % e)
        print("running the same job files with bash instead, to check them and the shard/merge path")
        plan_mpi_runs(env, None)
        run_jobs_bash(env)
    run(env.index, "build", env.samples, "--store", env.single, "--fit", os.path.join(env.work, "fit"), "--quiet")
    env.spaces = spaces(env.single)
    need(env.spaces, "the single-process build made no space")
    print("timings: " + ", ".join(env.timings))


@case("every shard store was built by its own array task")
def shards_made(env):
    for i in range(SHARDS):
        need(os.path.exists(os.path.join(env.work, "shard-%d" % i, "CURRENT")), "no shard store %d" % i)
    lines = job_log(env.logs)
    for i in range(SHARDS):
        need("build: shard %d/%d" % (i, SHARDS) in lines, "no job output line of shard %d:\n%s" % (i, lines))


@case("merged store: the same spaces, ids, surveys and positions as the single-process build")
def same_objects(env):
    need(spaces(env.merged) == env.spaces, "spaces: merged %s, single %s" % (spaces(env.merged), env.spaces))
    for sp in env.spaces:
        _, meta_m = load_space(env.merged, sp)
        _, meta_s = load_space(env.single, sp)
        need(len(meta_m) == len(meta_s), "space %s: %d rows merged, %d single" % (sp, len(meta_m), len(meta_s)))
        pos_m = {(m[0], m[1]): (m[2], m[3], m[4]) for m in meta_m}
        pos_s = {(m[0], m[1]): (m[2], m[3], m[4]) for m in meta_s}
        need(len(pos_m) == len(meta_m), "space %s: an object twice in the merged store" % sp)
        need(pos_m == pos_s, "space %s: objects or positions differ: %s" % (
            sp, sorted(set(pos_m.items()) ^ set(pos_s.items()))[:5]))


@case("merged store: bit-equal vectors (vectors.f32)")
def same_vectors(env):
    for sp in env.spaces:
        vm, meta_m = load_space(env.merged, sp, np.float32)
        vs, meta_s = load_space(env.single, sp, np.float32)
        need(vm.shape == vs.shape, "space %s: shapes %s merged, %s single" % (sp, vm.shape, vs.shape))
        by_id = {(m[0], m[1]): i for i, m in enumerate(meta_s)}
        order = np.array([by_id[(m[0], m[1])] for m in meta_m])
        same = vm.view(np.uint32) == vs[order].view(np.uint32)
        need(same.all(), "space %s: %d of %d vectors differ in some bit" % (sp, int((~same.all(axis=1)).sum()), len(vm)))
        need(np.isfinite(vm).all() and np.abs(np.linalg.norm(vm, axis=1) - 1).max() < 1e-5,
             "space %s: vectors not finite unit vectors" % sp)


def answers(r):
    return r["space"], [(x["object_id"], x["survey"], x["score"]) for x in r["results"]]


def like(env, store, oid, survey):
    p = run(env.search, "--store", store, "--like", oid, "--survey", survey, "--k", "10", "--format", "json")
    return answers(json.loads(p.stdout))


def like_batch(env, store, ids, survey):
    """--like for every id of one survey in one process (--like-file: one result block per id)."""
    path = os.path.join(env.tmp, "ids-%s.txt" % survey)
    with open(path, "w") as f:
        f.write("".join(i + "\n" for i in ids))
    p = run(env.search, "--store", store, "--like-file", path, "--survey", survey, "--k", "10", "--format", "json")
    blocks = json.loads(p.stdout)
    need(len(blocks) == len(ids), "--like-file of %d %s ids gave %d blocks" % (len(ids), survey, len(blocks)))
    return {b["query"]["object_id"]: answers(b) for b in blocks}


def same_ranking(a, b, what, tol=SCORE_TOL):
    """a and b (space, [(id, survey, score)]) name the same neighbours in the same order, scores within tol."""
    need(a[0] == b[0] and [x[:2] for x in a[1]] == [x[:2] for x in b[1]], "%s: %s against %s" % (what, a, b))
    worst = max((abs(x[2] - y[2]) for x, y in zip(a[1], b[1])), default=0.0)
    need(worst <= tol, "%s: scores differ by %.3g: %s against %s" % (what, worst, a, b))
    return worst


@case("merged store: the same --like --k 10 answers as the single-process build, 100 queries")
def same_answers(env):
    spaces = {sp: load_space(env.single, sp) for sp in env.spaces}
    objs = sorted({(m[0], m[1]) for _, meta in spaces.values() for m in meta})
    need(len(objs) >= QUERIES, "only %d objects for %d queries" % (len(objs), QUERIES))
    pick = [objs[i] for i in np.random.default_rng(18).choice(len(objs), QUERIES, replace=False)]
    # 100 answers per store in one process per survey (a process per query costs ~15 ms idle, 10x that
    # on a loaded machine), and 10 of them again as single `--like` processes on each store.
    merged, single = {}, {}
    for survey in sorted({sv for _, sv in pick}):
        ids = [oid for oid, sv in pick if sv == survey]
        merged.update({(k, survey): v for k, v in like_batch(env, env.merged, ids, survey).items()})
        single.update({(k, survey): v for k, v in like_batch(env, env.single, ids, survey).items()})
    need(len(merged) == QUERIES and len(single) == QUERIES, "%d, %d answers for %d queries" % (
        len(merged), len(single), QUERIES))
    worst = 0.0
    for oid, survey in pick:
        q = (oid, survey)
        need(len(merged[q][1]) == 10, "--like %s: %d results, not 10" % (oid, len(merged[q][1])))
        worst = max(worst, same_ranking(merged[q], single[q], "--like-file %s, merged against single" % oid, tol=0))
        # Independently: the top 10 of a float64 brute force over the (bit-equal) stored vectors.
        vecs, meta = spaces[merged[q][0]]
        row = next(i for i, m in enumerate(meta) if (m[0], m[1]) == q)
        expect = brute(vecs, meta, vecs[row], 10, exclude=(oid,))
        surveys = {m[0]: m[1] for m in meta}
        same_ranking(merged[q], (merged[q][0], [(i, surveys[i], sc) for i, sc in expect]),
                     "--like-file %s on the merged store, against numpy" % oid)
    for oid, survey in pick[:10]:
        a, b = like(env, env.merged, oid, survey), like(env, env.single, oid, survey)
        worst = max(worst, same_ranking(a, b, "--like %s, merged against single" % oid, tol=0))
        same_ranking(a, merged[(oid, survey)], "--like %s against its --like-file block" % oid, tol=0)
    print("     largest score difference, merged against single store: %.3g" % worst)


@case("job files: an array task outside 0..N-1, a missing shard store, a missing queries file or results folder "
      "stop with an error naming them")
def job_file_refusals(env):
    base = dict(os.environ, **params(env, env.work, os.path.join(env.tmp, "never")))
    p = subprocess.run(["bash", job_file("build-array.sbatch")], env=dict(base, SLURM_ARRAY_TASK_ID="4"),
                       capture_output=True, text=True, timeout=30)
    need(p.returncode != 0 and "array task 4 is outside 0..3" in p.stderr,
         "task 4 of 4 shards: exit %d, %s" % (p.returncode, p.stderr.strip()))
    p = subprocess.run(["bash", job_file("merge.sbatch")], env=dict(base, MMU_SHARDS="5"),
                       capture_output=True, text=True, timeout=30)
    need(p.returncode != 0 and "shard 4 of 5 is missing" in p.stderr and "shard-4" in p.stderr,
         "merge of 5 shards where 4 exist: exit %d, %s" % (p.returncode, p.stderr.strip()))
    need(not os.path.exists(os.path.join(env.tmp, "never")), "a store was made from missing shards")
    # The MPI job checks its queries file and results folder before starting any rank.
    queries = os.path.join(env.tmp, "queries-ok.txt")
    with open(queries, "w") as f:
        f.write("some-id\n")
    base = dict(base, MMU_QUERIES=queries, MMU_RESULTS=os.path.join(env.tmp, "r.json"))
    for key, value, words in (("MMU_QUERIES", os.path.join(env.tmp, "no-queries.txt"), "cannot read the queries file"),
                              ("MMU_RESULTS", os.path.join(env.tmp, "no-dir", "r.json"), "no folder")):
        p = subprocess.run(["bash", job_file("mpi-search.sbatch")], env=dict(base, **{key: value}), capture_output=True,
                           text=True, timeout=30)
        need(p.returncode != 0 and words in p.stderr and value.split("/r.json")[0] in p.stderr and key in p.stderr
             and "rank 0" not in p.stdout, "mpi-search.sbatch with a bad %s: exit %d, %s%s" % (
                 key, p.returncode, p.stdout, p.stderr))


@case("run-all.sh: a failed fit cancels the build array and the merge, and its wait ends non-zero")
def failing_chain(env):
    if env.failing_chain is None:
        print("     (not run: needs Slurm)")
        return
    p, logs = env.failing_chain
    need(p.returncode != 0, "run-all.sh with a failing fit exited 0:\n%s%s" % (p.stdout, p.stderr))
    need("submitted: fit" in p.stdout, "run-all.sh did not report its jobs:\n%s%s" % (p.stdout, p.stderr))
    need("did not run to the end" in p.stderr, "run-all.sh did not say the merge never ran:\n%s" % p.stderr)
    need(not os.path.exists(os.path.join(env.tmp, "never")), "a store was made after a failed fit")
    need(not any(n.startswith("mmu-build") or n.startswith("mmu-merge") for n in os.listdir(logs)),
         "the build or the merge ran after a failed fit: %s" % os.listdir(logs))
    fit_out = job_log(logs)
    need("no-such-data" in fit_out, "the fit's output does not name the missing data:\n%s" % fit_out)


def mpi_output(env, p):
    """The output file of an MPI job (sbatch's, or bash's in the fallback)."""
    path = getattr(p, "out", None) or os.path.join(env.logs, "mmu-search-mpi-%s.out" % p.job)
    with open(path, errors="replace") as f:
        return f.read()


def mpi_good_runs(env):
    """{label: finished job} of the MPI jobs over the four shards, each required to have succeeded."""
    good = {label: p for label, p in env.mpi_jobs.items() if label != "missing shard"}
    for label, p in good.items():
        need(p.returncode == 0, "mpi-search.sbatch (%s): exit %d: %s\n%s" % (
            label, p.returncode, (p.stderr or "").strip(), mpi_output(env, p)))
    return good


def shard_manifest(env):
    """A manifest of the four shard stores, written here (not the job's own), in shard order."""
    manifest = os.path.join(env.tmp, "shards-by-hand.txt")
    with open(manifest, "w") as f:
        f.write("".join(os.path.join(env.work, "shard-%d\n" % i) for i in range(SHARDS)))
    return manifest


def blocks(text):
    """Each query's (label, error, query, space, results) of a --format json answer: everything but the method
    line, compared exactly (scores too), as tests/py/test_mpi.py compares mmu-search-mpi with mmu-search."""
    return [(b["label"], b.get("error"), b.get("query"), b.get("space"), b["results"]) for b in json.loads(text)]


@case("mpi-search.sbatch: its results equal mmu-search --stores over the same shards (100 queries: ids, scores, order)")
def mpi_same_answers(env):
    if not env.mpi_runs:
        print("     (not run: %s)" % env.mpi_missing)
        return
    manifest = shard_manifest(env)
    one = blocks(run(env.search, "--stores", manifest, "--like-file", env.mpi_queries, "--k", MPI_K,
                     "--format", "json").stdout)
    need([b[0] for b in one] == env.mpi_ids and not any(b[1] for b in one),
         "mmu-search --stores did not answer each of the %d queries in order" % QUERIES)
    need(all(len(b[4]) == MPI_K for b in one), "mmu-search --stores: fewer than %d neighbours for a query" % MPI_K)
    for label in mpi_good_runs(env):
        with open(env.mpi_runs[label]["MMU_RESULTS"]) as f:
            got = blocks(f.read())
        need(len(got) == len(one), "%s: %d answers for %d queries" % (label, len(got), len(one)))
        for i, (a, b) in enumerate(zip(got, one)):
            need(a == b, "%s: query %d (%s) differs from mmu-search --stores:\n%s\nagainst\n%s" % (label, i, b[0], a, b))
    print("     equal for: %s" % ", ".join(mpi_good_runs(env)))


@case("mpi-search.sbatch: its output names each rank's node, its cores and the shards it holds")
def mpi_placement(env):
    if not env.mpi_runs:
        print("     (not run: %s)" % env.mpi_missing)
        return
    host = socket.gethostname().split(".")[0]
    # Each rank may use every core the job's processes may use (the test node's jobs are not confined): mpirun
    # would bind each of 2 ranks to one core without the job file's --bind-to none.
    cores = len(os.sched_getaffinity(0))
    for label, p in mpi_good_runs(env).items():
        out = mpi_output(env, p)
        need("mpi search: %d ranks on " % MPI_RANKS in out, "%s: the output does not give %d ranks:\n%s" % (
            label, MPI_RANKS, out))
        for r in range(MPI_RANKS):
            held = " ".join("shard-%d" % i for i in range(SHARDS) if i % MPI_RANKS == r)
            line = "rank %d on %s (%d cores): %s" % (r, host, cores, held)
            need(line in out, "%s: no line '%s' in its output:\n%s" % (label, line, out))


@case("mpi-search.sbatch: a missing shard fails the job with its error naming the shard, and no results are left")
def mpi_missing_shard(env):
    if not env.mpi_runs:
        print("     (not run: %s)" % env.mpi_missing)
        return
    p = env.mpi_jobs["missing shard"]
    out = mpi_output(env, p)
    # sbatch --wait gives the job's exit code; the job's own message is the proof of why it failed.
    need(p.returncode != 0, "the job with shard %d missing exited 0:\n%s" % (SHARDS, out))
    missing = os.path.join(env.work, "shard-%d" % SHARDS)
    need("error: shard %d of %d is missing: no store at %s" % (SHARDS, SHARDS + 1, missing) in out,
         "the job's output does not name the missing shard %s:\n%s" % (missing, out))
    need("rank 0 on" not in out, "ranks were started before the shards were checked:\n%s" % out)
    results = env.mpi_runs["missing shard"]["MMU_RESULTS"]
    need(not os.path.exists(results) and not os.path.exists(results + ".part"),
         "the failed job left %s (an earlier run's results) in place" % results)


@case("mpi-search.sbatch serve mode: GET /like equals mmu-search --stores --like; the output names the node and "
      "port; scancel stops it")
def mpi_serve(env):
    if env.served is None:
        print("     (not run: %s)" % (env.serve_missing or "no service"))
        return
    r = env.served
    host = socket.gethostname().split(".")[0]
    line = "serve: on %s port %d" % (host, r["port"])
    need(line in r["out"], "the job's output does not say '%s':\n%s" % (line, r["out"]))
    need("serving %d stores over %d ranks on http://127.0.0.1:%d" % (SHARDS, MPI_RANKS, r["port"]) in r["out"],
         "no start line of the service in the job's output:\n%s" % r["out"])
    status, health = r["health"]
    need(status == 200 and health.get("ranks") == MPI_RANKS and health.get("stores") == SHARDS,
         "GET /health: %s %s\n%s" % (status, health, r["out"]))
    manifest = shard_manifest(env)
    for oid, (status, got) in zip(r["ids"], r["replies"]):
        want = json.loads(run(env.search, "--stores", manifest, "--like", oid, "--k", 10, "--format", "json").stdout)
        need(status == 200 and got == want, "GET /like?id=%s&k=10: %s %s\nagainst mmu-search --stores: %s" % (
            oid, status, got, want))
    need(r["stop_s"] < 20, "the service still answered %.0f s after scancel" % r["stop_s"])
    print("     %d GET /like equal, ranks started by %s; closed %.1f s after scancel" % (
        len(r["ids"]), " ".join(env.serve_launch), r["stop_s"]))


def main():
    a, index, search = binaries_samples_tmp()
    env = Env()
    env.bin, env.index, env.search, env.samples, env.tmp = a.bin, index, search, a.samples, a.tmp
    code = run_cases(CASES, env, setup)
    if code == 0 and getattr(env, "skipped", None):
        print("SKIPPED: Slurm could not start (%s); the job files passed when run by bash" % env.skipped.splitlines()[0])
        return 77
    return code


if __name__ == "__main__":
    sys.exit(main())
