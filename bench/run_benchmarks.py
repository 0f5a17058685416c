#!/usr/bin/python3
"""mmu-search benchmarks: ingest speed, --like latency and neighbour quality of
the baseline, each against a plain h5py/numpy peer measured in the same run.

    /usr/bin/python3 bench/run_benchmarks.py --build build [--n 3000] [--seed 11] [--work DIR]
                                             [--repeat 5] [--like-runs 20] [--queries 300] [--contention] [--json FILE]

(`make bench` runs it with --build build.) Steps:

  0. machine: CPU model, cores, load average, OPENBLAS_CORETYPE, BLAS in use, date, git commit
  1. data: tools/make_samples.py --n N --seed S into WORK/data-nN-sS (reused when present)
  2. ingest: `mmu-index build` of the image survey folder alone, then of the spectrum
     folder alone (wall time, CPU time, peak RSS; objects/s), against bench/peer_baseline.py
     on the same folder; --repeat times, interleaved; best and median; one more run of
     each with one thread. Also the C++ stage split (mmu_bench_stages) and a check: the
     peer's features through the store's fit.bin give the store's vectors, and the store's
     (randomised) PCA is compared with the peer's exact one.
  3. --like latency on a store of both folders: warm in-process (mmu_bench_like) and whole
     process (`mmu-search --like ID --k 50 --format csv`, median of --like-runs), against
     bench/peer_like.py (numpy brute force) warm and as a whole process.
  4. quality: same-class precision@10 per space over every object (brute force over the
     store's vectors.f32, which mmu-search searches; a sample is cross-checked against
     `mmu-search --format json`), next to a random ranking (expected and measured), per class.
  +  --contention: image ingest and warm --like again while a busy loop of ours holds one core.

Uses only Debian's /usr/bin/python3 with numpy (and sqlite3). The machine is
shared: wall times vary with other load, so every timing is repeated, and the
share of the CPUs other processes used during each run is printed next to it.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"
IMAGE_SURVEY, SPEC_SURVEY = "legacysurvey", "desi"
K_LIKE, K_QUALITY = 50, 10


# --------------------------------------------------------------------------- helpers

def log(msg=""):
    print(msg, flush=True)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


class Child:
    """Runs one command and reports wall time, CPU time and peak RSS via os.wait4."""

    def __init__(self, cmd, env=None):
        self.cmd = cmd
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            busy0 = busy_seconds()
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
            _, status, ru = os.wait4(p.pid, 0)
            self.wall = time.perf_counter() - t0
            busy1 = busy_seconds()
            p.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            self.out = out.read().decode()
            self.err = err.read().decode()
        self.cpu = ru.ru_utime + ru.ru_stime
        self.rss_mib = ru.ru_maxrss / 1024.0
        # Share of the machine other processes used while this one ran (0 = it had the box to itself).
        ncpu = os.cpu_count() or 1
        self.others = max(0.0, (busy1 - busy0) - self.cpu) / max(1e-9, self.wall * ncpu)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{self.err}")


def busy_seconds():
    """CPU-seconds all CPUs have spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def cpu_busy(seconds=0.5):
    """Fraction of all CPU time spent busy over `seconds` (we are idle meanwhile: it is other load)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]  # idle + iowait
        return sum(v), idle
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


BUSY_LOG = []
MAX_WAIT = 15.0


def wait_quiet(max_wait, threshold=0.25):
    """Waits (up to max_wait s) until other processes use < threshold of the CPUs; returns that fraction."""
    deadline = time.monotonic() + max_wait
    while True:
        b = cpu_busy()
        if b < threshold or time.monotonic() >= deadline:
            BUSY_LOG.append(b)
            return b
        time.sleep(1.0)


def median(xs):
    return float(np.median(np.asarray(xs, dtype=float))) if len(xs) else float("nan")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def blas_in_use():
    try:
        return os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    except OSError:
        return "?"


def git_commit():
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (+ uncommitted changes)" if dirty else "")
    except OSError:
        return "?"


def generation(store):
    with open(os.path.join(store, "CURRENT")) as f:
        return os.path.join(store, f.read().strip())


def load_space(store, space):
    """(vectors n x d, [(object_id, survey)] by vector row) from a store, as mmu-search sees it."""
    gen = generation(store)
    db = sqlite3.connect(f"file:{os.path.join(gen, 'catalog.sqlite')}?mode=ro", uri=True)
    dim, count = db.execute("SELECT dim, count FROM spaces WHERE name = ?", (space,)).fetchone()
    v = np.fromfile(os.path.join(gen, "spaces", space, "vectors.f32"), dtype=np.float32).reshape(count, dim)
    objs = [None] * count
    for vrow, oid, survey in db.execute(
            "SELECT s.vrow, o.object_id, o.survey FROM space_rows s JOIN objects o ON o.row = s.row WHERE s.space = ?",
            (space,)):
        objs[vrow] = (oid, survey)
    db.close()
    assert all(o is not None for o in objs), f"space {space}: vector rows without catalog rows"
    return v, objs


def knn_all(v, k):
    """Top-k neighbour rows (self excluded) of every row of unit vectors v, best first."""
    s = v @ v.T
    np.fill_diagonal(s, -np.inf)
    idx = np.argpartition(-s, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def fmt_rate(x):
    return f"{x:,.0f}"


# --------------------------------------------------------------------------- steps

def machine_info():
    return {
        "cpu_model": cpu_model(),
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "(unset)"),
        "blas": blas_in_use(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git_commit(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "loadavg_start": loadavg(),
    }


def make_data(work, n, seed):
    data = os.path.join(work, f"data-n{n}-s{seed}")
    if os.path.exists(os.path.join(data, "truth.csv")):
        return data, None
    tmp = data + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([PY, os.path.join(REPO, "tools", "make_samples.py"), "--out", tmp, "--n", str(n),
                    "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
    secs = time.perf_counter() - t0
    os.rename(tmp, data)
    return data, secs


def warm_page_cache(root):
    nbytes = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                while True:
                    b = fh.read(1 << 22)
                    if not b:
                        break
                    nbytes += len(b)
    return nbytes


def bench_ingest(build, data, work, repeat):
    res = {}
    for space, survey in (("image", IMAGE_SURVEY), ("spectrum", SPEC_SURVEY)):
        root = os.path.join(data, survey)
        nbytes = warm_page_cache(root)
        store = os.path.join(work, f"store-{space}")
        peer_out = os.path.join(work, f"peer-{space}")
        ours, peer = [], []
        peer_phases = None
        for r in range(repeat):
            # Alternate which goes first so slow drift in background load hits both.
            order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
            for who in order:
                wait_quiet(MAX_WAIT)
                if who == "ours":
                    shutil.rmtree(store, ignore_errors=True)
                    c = Child([os.path.join(build, "mmu-index"), "build", root, "--store", store, "--quiet"])
                    ours.append(c)
                else:
                    shutil.rmtree(peer_out, ignore_errors=True)
                    c = Child([PY, os.path.join(REPO, "bench", "peer_baseline.py"), root, "--out", peer_out])
                    peer.append(c)
                    if c.wall <= min(x.wall for x in peer):  # phases of the fastest (least disturbed) run
                        peer_phases = json.loads(c.out.strip().splitlines()[-1])
        # One more run of each with one thread (OpenMP and OpenBLAS): per-core speed, and
        # a figure that does not depend on the second core being free.
        env1 = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        shutil.rmtree(store, ignore_errors=True)
        wait_quiet(MAX_WAIT)
        ours1 = Child([os.path.join(build, "mmu-index"), "build", root, "--store", store, "--quiet"], env=env1)
        shutil.rmtree(peer_out, ignore_errors=True)
        wait_quiet(MAX_WAIT)
        peer1 = Child([PY, os.path.join(REPO, "bench", "peer_baseline.py"), root, "--out", peer_out], env=env1)
        n_obj = peer_phases["counts"][space]
        stages = None
        stages_bin = os.path.join(build, "mmu_bench_stages")
        if os.path.exists(stages_bin):
            runs = []
            for _ in range(3):  # best of 3: the split is for reading, not for the headline
                wait_quiet(MAX_WAIT)
                runs.append(json.loads(Child([stages_bin, root]).out)["spaces"][space])
            stages = {key: min(r[key] for r in runs) for key in runs[0]}
        res[space] = {
            "objects": n_obj, "input_mib": nbytes / 2**20,
            "ours_wall": [c.wall for c in ours], "ours_cpu": [c.cpu for c in ours],
            "ours_others": [c.others for c in ours], "peer_others": [c.others for c in peer],
            "ours_1thread_others": ours1.others, "peer_1thread_others": peer1.others,
            "ours_rss_mib": max(c.rss_mib for c in ours),
            "peer_wall": [c.wall for c in peer], "peer_cpu": [c.cpu for c in peer],
            "peer_rss_mib": max(c.rss_mib for c in peer),
            "peer_phases_s": peer_phases["seconds"], "ours_stages_s": stages,
            "ours_wall_1thread": ours1.wall, "peer_wall_1thread": peer1.wall,
            "check": compare_peer_vectors(store, root, work, space),
            "loadavg_after": loadavg(),
        }
        best_o, best_p = min(res[space]["ours_wall"]), min(res[space]["peer_wall"])
        res[space]["ours_obj_s_best"] = n_obj / best_o
        res[space]["peer_obj_s_best"] = n_obj / best_p
        res[space]["ours_obj_s_median"] = n_obj / median(res[space]["ours_wall"])
        res[space]["peer_obj_s_median"] = n_obj / median(res[space]["peer_wall"])
        res[space]["ratio_best"] = best_p / best_o
        res[space]["ratio_median"] = median(res[space]["peer_wall"]) / median(res[space]["ours_wall"])
    return res


def read_fit(store, space):
    """The store's PCA fit (fit.bin: "MMUPCA01", int64 in, int64 out, mean, components, variances)."""
    with open(os.path.join(generation(store), "spaces", space, "fit.bin"), "rb") as f:
        raw = f.read()
    assert raw[:8] == b"MMUPCA01", "unknown fit.bin format"
    d_in, d_out = np.frombuffer(raw[8:24], dtype=np.int64)
    fl = np.frombuffer(raw[24:], dtype=np.float32)
    mean = fl[:d_in]
    comps = fl[d_in:d_in + d_out * d_in].reshape(d_out, d_in)
    return mean, comps


def compare_peer_vectors(store, root, work, space):
    """Checks the peer against the store, from one extra (untimed) peer run that keeps its features:
    features: peer features projected with the store's own fit.bin give the store's vectors
              (max |diff|; ~1e-5 means the feature transforms are the same);
    pca:      the store's components (randomised subspace iteration) vs the peer's exact eigh:
              mean squared cosine of the principal angles between the two 64-d subspaces, and
              top-10 neighbour overlap of the two sets of vectors."""
    peer_out = os.path.join(work, f"peer-{space}-check")
    shutil.rmtree(peer_out, ignore_errors=True)
    Child([PY, os.path.join(REPO, "bench", "peer_baseline.py"), root, "--out", peer_out, "--save-features"])
    v, objs = load_space(store, space)
    where = {o: i for i, o in enumerate(objs)}
    ids = np.load(os.path.join(peer_out, f"{space}_ids.npy"))
    surveys = np.load(os.path.join(peer_out, f"{space}_surveys.npy"))
    ours = v[np.array([where[(str(i), str(s))] for i, s in zip(ids, surveys)])]
    feats = np.load(os.path.join(peer_out, f"{space}_features.npy"))
    mean, comps = read_fit(store, space)
    y = (feats - mean) @ comps.T
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    exact = np.load(os.path.join(peer_out, f"{space}_components.npy"))
    cos2 = float((np.linalg.svd(comps.astype(np.float64) @ exact.T.astype(np.float64), compute_uv=False) ** 2).mean())
    pv = np.load(os.path.join(peer_out, f"{space}_vectors.npy"))
    nn_o, nn_p = knn_all(ours, K_QUALITY), knn_all(pv, K_QUALITY)
    overlap = np.mean([len(set(a) & set(b)) / K_QUALITY for a, b in zip(nn_o, nn_p)])
    shutil.rmtree(peer_out, ignore_errors=True)
    return {"features_max_abs_diff": float(np.abs(y - ours).max()), "subspace_mean_cos2": cos2,
            "top10_overlap_vs_exact_pca": float(overlap)}


def pick_queries(store, space, count, seed):
    _, objs = load_space(store, space)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(objs), size=min(count, len(objs)), replace=False)
    return [objs[i] for i in idx]


def bench_like(build, data, work, queries, like_runs, repeat, seed):
    store = os.path.join(work, "store-all")
    shutil.rmtree(store, ignore_errors=True)
    Child([os.path.join(build, "mmu-index"), "build", data, "--store", store, "--quiet"])
    warm_page_cache(store)
    res = {"store": store}
    for space in ("image", "spectrum"):
        qs = pick_queries(store, space, queries, seed)
        ids_file = os.path.join(work, f"like-ids-{space}.txt")
        with open(ids_file, "w") as f:
            f.writelines(f"{oid},{survey}\n" for oid, survey in qs)
        ours_rounds, peer_rounds = [], []
        ours_others, peer_others = [], []
        for _ in range(repeat):
            wait_quiet(MAX_WAIT)
            c = Child([os.path.join(build, "mmu_bench_like"), "--store", store, "--ids", ids_file, "--k", str(K_LIKE),
                       "--json"])
            ours_rounds.append(json.loads(c.out))
            ours_others.append(c.others)
            wait_quiet(MAX_WAIT)
            c = Child([PY, os.path.join(REPO, "bench", "peer_like.py"), "--store", store, "--bench-ids", ids_file,
                       "--k", str(K_LIKE)])
            peer_rounds.append(json.loads(c.out))
            peer_others.append(c.others)
        wait_quiet(MAX_WAIT)
        env1 = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        ours1 = json.loads(Child([os.path.join(build, "mmu_bench_like"), "--store", store, "--ids", ids_file,
                                  "--k", str(K_LIKE), "--json"], env=env1).out)
        # The round with the lowest median is the one least disturbed by other load.
        ours = min(ours_rounds, key=lambda r: r["like"]["median_ms"])
        peer = min(peer_rounds, key=lambda r: r["like"]["median_ms"])

        # Whole process, one query each, interleaved; the first of each is an untimed warm-up.
        ours_wall, peer_wall, others = [], [], []
        proc_qs = qs[: like_runs + 1]
        wait_quiet(MAX_WAIT)
        for i, (oid, survey) in enumerate(proc_qs):
            a = Child([os.path.join(build, "mmu-search"), "--store", store, "--like", oid, "--survey", survey,
                       "--k", str(K_LIKE), "--format", "csv"])
            b = Child([PY, os.path.join(REPO, "bench", "peer_like.py"), "--store", store, "--like", oid,
                       "--survey", survey, "--k", str(K_LIKE)])
            if i == 0:
                # Same neighbours from both (ids column), as a sanity check of the peer.
                ids_a = [l.split(",")[1] for l in a.out.strip().splitlines()[1:]]
                ids_b = [l.split(",")[1] for l in b.out.strip().splitlines()[1:]]
                same = len(set(ids_a) & set(ids_b))
                continue
            ours_wall.append(a.wall * 1e3)
            peer_wall.append(b.wall * 1e3)
            others.extend([a.others, b.others])
        res[space] = {
            "queries": len(qs), "count": ours["components"][[c["space"] for c in ours["components"]].index(space)]["count"],
            "ours_warm": ours["like"], "ours_warm_round_medians": [r["like"]["median_ms"] for r in ours_rounds],
            "ours_store_calls": ours["store_calls"], "ours_warm_1thread": ours1["like"],
            "ours_faiss": next(c for c in ours["components"] if c["space"] == space),
            "peer_warm": peer["like"], "peer_warm_round_medians": [r["like"]["median_ms"] for r in peer_rounds],
            "peer_load_ms": peer["load_ms"],
            "ours_process_ms": {"median": median(ours_wall), "min": min(ours_wall), "max": max(ours_wall),
                                "n": len(ours_wall)},
            "peer_process_ms": {"median": median(peer_wall), "min": min(peer_wall), "max": max(peer_wall),
                                "n": len(peer_wall)},
            "neighbours_agree": f"{same}/{K_LIKE}", "process_others_median": median(others),
            "ours_rounds_others": ours_others, "peer_rounds_others": peer_others,
            "loadavg_after": loadavg(),
        }
        r = res[space]
        r["warm_ratio"] = r["peer_warm"]["median_ms"] / r["ours_warm"]["median_ms"]
        r["process_ratio"] = r["peer_process_ms"]["median"] / r["ours_process_ms"]["median"]
    return res


def bench_quality(build, data, work, seed, check_ids=10):
    store = os.path.join(work, "store-all")
    truth = {}
    with open(os.path.join(data, "truth.csv")) as f:
        for row in csv.DictReader(f):
            truth[(row["object_id"], row["survey"])] = row["class"]
    rng = np.random.default_rng(seed)
    res = {}
    for space in ("image", "spectrum"):
        v, objs = load_space(store, space)
        labels = np.array([truth[o] for o in objs])
        n = len(labels)
        nn = knn_all(v, K_QUALITY)
        same = (labels[nn] == labels[:, None]).mean(axis=1)  # per query precision@10
        counts = Counter(labels.tolist())
        frac = {c: counts[c] / n for c in counts}
        # Random ranking: expected precision for a query of class c is (n_c - 1) / (n - 1).
        expected = np.array([(counts[c] - 1) / (n - 1) for c in labels])
        # Measured: 10 random others per query, 20 times.
        shuffled = []
        for _ in range(20):
            r = rng.random((n, n))
            np.fill_diagonal(r, np.inf)
            pick = np.argpartition(r, K_QUALITY, axis=1)[:, :K_QUALITY]
            shuffled.append((labels[pick] == labels[:, None]).mean(axis=1))
        shuffled = np.mean(shuffled, axis=0)
        per_class = {}
        for c in sorted(counts, key=lambda c: -counts[c]):
            m = labels == c
            per_class[c] = {"n": int(m.sum()), "p_at_10": float(same[m].mean()),
                            "random_expected": float((counts[c] - 1) / (n - 1)),
                            "random_measured": float(shuffled[m].mean())}
        # Cross-check: mmu-search's own top-10 for a few objects equals the brute force here.
        agree, checked = 0, 0
        for i in rng.choice(n, size=min(check_ids, n), replace=False):
            oid, survey = objs[i]
            out = Child([os.path.join(build, "mmu-search"), "--store", store, "--like", oid, "--survey", survey,
                         "--k", str(K_QUALITY), "--format", "json"]).out
            got = [(r["object_id"], r["survey"]) for r in json.loads(out)["results"]]
            agree += got == [objs[j] for j in nn[i]]
            checked += 1
        res[space] = {
            "objects": n, "p_at_10": float(same.mean()),
            "random_sum_sq": float(sum(p * p for p in frac.values())),
            "random_expected": float(expected.mean()), "random_measured": float(shuffled.mean()),
            "per_class": per_class, "mmu_search_agrees": f"{agree}/{checked}",
        }
    return res


def bench_contention(build, data, work, runs=2):
    """Same ingest and warm --like with one busy-looping process of ours holding one of the cores
    (what a compile or another user's job does on a shared box), default threads vs one thread."""
    hog = subprocess.Popen([PY, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        env1 = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        res = {}
        root = os.path.join(data, IMAGE_SURVEY)
        store = os.path.join(work, "store-contention")
        for label, env in (("default", None), ("1 thread", env1)):
            walls = []
            for _ in range(runs):
                shutil.rmtree(store, ignore_errors=True)
                walls.append(Child([os.path.join(build, "mmu-index"), "build", root, "--store", store, "--quiet"],
                                   env=env).wall)
            stages = json.loads(Child([os.path.join(build, "mmu_bench_stages"), root], env=env).out)["spaces"]["image"] \
                if os.path.exists(os.path.join(build, "mmu_bench_stages")) else None
            peer = Child([PY, os.path.join(REPO, "bench", "peer_baseline.py"), root, "--out",
                          os.path.join(work, "peer-contention")], env=env)
            like = json.loads(Child([os.path.join(build, "mmu_bench_like"), "--store", os.path.join(work, "store-all"),
                                     "--ids", os.path.join(work, "like-ids-spectrum.txt"), "--json"], env=env).out)
            res[label] = {"ingest_image_wall": walls, "fit_pca_s": stages["fit_pca_s"] if stages else None,
                          "peer_image_wall": peer.wall, "like_warm": like["like"]}
        return res
    finally:
        hog.kill()
        hog.wait()


# --------------------------------------------------------------------------- report

def report(m, args, data, gen_s, ing, like, qual, cont=None):
    log("=" * 78)
    log("mmu-search benchmarks")
    log("=" * 78)
    log(f"machine   {m['cpu_model']}, {m['cores_usable']} usable cores ({m['cores_online']} online), "
        f"{m['memory_gib']} GiB RAM, kernel {m['kernel']}")
    log(f"          OPENBLAS_CORETYPE={m['openblas_coretype']}  OMP_NUM_THREADS={m['omp_num_threads']}  "
        f"BLAS={m['blas']}")
    log(f"          python {m['python']}, numpy {m['numpy']}; {m['date']}; git {m['git']}")
    log(f"          load average at start {m['loadavg_start']} (1/5/15 min; other work on the machine inflates "
        f"wall times)")
    log(f"data      {data}  (--n {args.n} --seed {args.seed}"
        + (f", generated in {gen_s:.1f} s" if gen_s else ", reused") + ")")
    log()
    log("1. ingest: `mmu-index build <one survey folder>` vs bench/peer_baseline.py (h5py + numpy), "
        f"page cache warm, {args.repeat} runs each; obj/s of the best run (and the median); "
        f"ratio = ours obj/s / peer obj/s")
    log(f"   {'space':9} {'objects':>7} {'input':>8} | {'ours obj/s':>10} {'(median)':>9} {'cpu s':>6} {'RSS':>6} | "
        f"{'peer obj/s':>10} {'(median)':>9} {'cpu s':>6} {'RSS':>6} | {'ratio':>5} {'(med)':>5}")
    for space, r in ing.items():
        log(f"   {space:9} {r['objects']:>7} {r['input_mib']:>6.0f}Mi | {fmt_rate(r['ours_obj_s_best']):>10} "
            f"{fmt_rate(r['ours_obj_s_median']):>9} {min(r['ours_cpu']):>6.2f} {r['ours_rss_mib']:>4.0f}Mi | "
            f"{fmt_rate(r['peer_obj_s_best']):>10} {fmt_rate(r['peer_obj_s_median']):>9} {min(r['peer_cpu']):>6.2f} "
            f"{r['peer_rss_mib']:>4.0f}Mi | {r['ratio_best']:>4.1f}x {r['ratio_median']:>4.1f}x")
    for space, r in ing.items():
        log(f"   {space:9} one thread (OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1), 1 run: ours "
            f"{fmt_rate(r['objects'] / r['ours_wall_1thread'])} obj/s, peer {fmt_rate(r['objects'] / r['peer_wall_1thread'])}"
            f" obj/s, ratio {r['peer_wall_1thread'] / r['ours_wall_1thread']:.1f}x")
    for space, r in ing.items():
        log(f"   {space}: wall s (share of the CPUs other processes used meanwhile) ours "
            f"{', '.join(f'{x:.2f} ({o:.0%})' for x, o in zip(r['ours_wall'], r['ours_others']))}; peer "
            f"{', '.join(f'{x:.2f} ({o:.0%})' for x, o in zip(r['peer_wall'], r['peer_others']))}; one thread: ours "
            f"{r['ours_wall_1thread']:.2f} ({r['ours_1thread_others']:.0%}), peer {r['peer_wall_1thread']:.2f} "
            f"({r['peer_1thread_others']:.0%})")
        st = r["ours_stages_s"]
        if st:
            log(f"     ours, stages alone (mmu_bench_stages, best of 3 each): read {st['read_s']:.2f} s, features "
                f"{st['features_s']:.2f} s, fit_pca {st['fit_pca_s']:.2f} s, gappy fill {st['gappy_fill_s']:.2f} s, "
                f"project {st['project_pca_s']:.3f} s")
        ph = r["peer_phases_s"]
        log(f"     peer, in process (its fastest run): read {ph['read']:.2f} s, features {ph['features']:.2f} s, pca {ph['pca']:.2f} s, "
            f"save {ph['write']:.3f} s (of {ph['total_in_process']:.2f} s; the rest is interpreter + imports)")
        c = r["check"]
        log(f"     check: peer features through the store's fit.bin = store vectors to max |diff| "
            f"{c['features_max_abs_diff']:.1e}; store PCA (randomised) vs exact eigh: subspace mean cos^2 "
            f"{c['subspace_mean_cos2']:.4f}, top-10 neighbour overlap {c['top10_overlap_vs_exact_pca']:.3f}")
    log()
    log(f"2. --like, k={K_LIKE}, store of both surveys: warm in-process (mmu_bench_like vs peer_like.py "
        f"--bench-ids) and whole process (mmu-search ... --format csv vs peer_like.py --like); "
        f"speed = peer ms / ours ms (> 1: ours faster)")
    log(f"   {'space':9} {'vectors':>7} | {'ours warm med/p90 ms':>21} | {'peer warm med/p90 ms':>21} | "
        f"{'speed':>6} | {'ours proc ms':>12} | {'peer proc ms':>12} | {'speed':>5}")
    for space, r in like.items():
        if space == "store":
            continue
        log(f"   {space:9} {r['count']:>7} | {r['ours_warm']['median_ms']:>10.3f} / {r['ours_warm']['p90_ms']:<8.3f} | "
            f"{r['peer_warm']['median_ms']:>10.3f} / {r['peer_warm']['p90_ms']:<8.3f} | {r['warm_ratio']:>5.2f}x | "
            f"{r['ours_process_ms']['median']:>12.1f} | {r['peer_process_ms']['median']:>12.1f} | "
            f"{r['process_ratio']:>4.1f}x")
    for space, r in like.items():
        if space == "store":
            continue
        sc, fa = r["ours_store_calls"], r["ours_faiss"]
        log(f"   {space}: warm over {r['queries']} ids, best of {args.repeat} rounds (round medians ours "
            f"{', '.join(f'{x:.3f} ({o:.0%})' for x, o in zip(r['ours_warm_round_medians'], r['ours_rounds_others']))}, "
            f"peer {', '.join(f'{x:.3f} ({o:.0%})' for x, o in zip(r['peer_warm_round_medians'], r['peer_rounds_others']))}"
            f" ms, (share of CPUs other processes used)); whole process (others {r['process_others_median']:.0%}) median of "
            f"{r['ours_process_ms']['n']} (ours {r['ours_process_ms']['min']:.1f}-{r['ours_process_ms']['max']:.1f}, "
            f"peer {r['peer_process_ms']['min']:.1f}-{r['peer_process_ms']['max']:.1f} ms)")
        log(f"     ours with OMP_NUM_THREADS=1: median {r['ours_warm_1thread']['median_ms']:.3f} ms, "
            f"p90 {r['ours_warm_1thread']['p90_ms']:.3f} ms")
        log(f"     ours, parts alone (median ms): find_by_id {sc['find_by_id']['median_ms']:.3f}, spaces_of_row "
            f"{sc['spaces_of_row']['median_ms']:.3f}, vector_of {sc['vector_of']['median_ms']:.3f}, "
            f"rows(k) {sc['rows_k']['median_ms']:.3f}, faiss::read_index {fa['read_index']['median_ms']:.3f}, "
            f"search of a loaded index {fa['search_loaded']['median_ms']:.3f}")
        log(f"     peer one-time load (vectors + catalog into numpy) {r['peer_load_ms']:.1f} ms; "
            f"first whole-process query: {r['neighbours_agree']} neighbours the same as mmu-search's; "
            f"load after {r['loadavg_after']}")
    log()
    log(f"3. quality: same-class precision@{K_QUALITY} of the baseline over every object of each space "
        "(brute force on the store's vectors)")
    log(f"   {'space':9} {'objects':>7} | {'p@10':>6} | {'random: sum p_c^2':>17} {'expected':>8} {'shuffled':>8} | "
        f"{'lift':>5} | mmu-search top-10 == brute force")
    for space, r in qual.items():
        log(f"   {space:9} {r['objects']:>7} | {r['p_at_10']:>6.3f} | {r['random_sum_sq']:>17.3f} "
            f"{r['random_expected']:>8.3f} {r['random_measured']:>8.3f} | {r['p_at_10'] / r['random_expected']:>4.1f}x "
            f"| {r['mmu_search_agrees']}")
    for space, r in qual.items():
        log(f"   {space} per class (n, p@10, random):  " + ";  ".join(
            f"{c} {v['n']}, {v['p_at_10']:.3f}, {v['random_expected']:.3f}" for c, v in r["per_class"].items()))
    if cont:
        log()
        log("4. contention (--contention): one busy-looping process holds one of the cores; image ingest and warm "
            "--like (spectrum ids)")
        for label, r in cont.items():
            log(f"   {label:9} mmu-index build image: {', '.join(f'{x:.2f}' for x in r['ingest_image_wall'])} s "
                f"(fit_pca alone {r['fit_pca_s']:.2f} s); peer {r['peer_image_wall']:.2f} s; warm --like median "
                f"{r['like_warm']['median_ms']:.3f} ms, p90 {r['like_warm']['p90_ms']:.3f} ms")
    log()
    b = np.array(BUSY_LOG) * 100
    log(f"other load: CPU busy in the 0.5 s before each of {len(b)} timed runs: median {np.median(b):.0f}%, "
        f"max {b.max():.0f}% (> 25% after waiting --max-wait {args.max_wait:g} s: {(b > 25).sum()} runs); "
        f"load average at end {loadavg()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="build folder holding mmu-index, mmu-search, mmu_bench_like")
    ap.add_argument("--n", type=int, default=3000, help="galaxies to simulate (default 3000)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--work", help="work folder (default BUILD/bench-work)")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each ingest / warm-latency measurement")
    ap.add_argument("--like-runs", type=int, default=20, help="whole-process --like runs per space and tool")
    ap.add_argument("--queries", type=int, default=300, help="ids per space for warm --like latency")
    ap.add_argument("--max-wait", type=float, default=15.0,
                    help="before each timed run, wait up to this many seconds for other processes to use < 25%% "
                         "of the CPUs (0: do not wait)")
    ap.add_argument("--contention", action="store_true",
                    help="also time image ingest and warm --like while a busy loop holds one core (shared-box case)")
    ap.add_argument("--json", help="also write all results to this JSON file (default WORK/results.json)")
    args = ap.parse_args()

    global MAX_WAIT
    MAX_WAIT = args.max_wait
    build = os.path.abspath(args.build)
    for b in ("mmu-index", "mmu-search", "mmu_bench_like"):
        if not os.access(os.path.join(build, b), os.X_OK):
            sys.exit(f"error: {os.path.join(build, b)} is missing: build first (make build, or cmake --build {build})")
    work = os.path.abspath(args.work or os.path.join(build, "bench-work"))
    os.makedirs(work, exist_ok=True)

    m = machine_info()
    log(f"OPENBLAS_CORETYPE={m['openblas_coretype']}  cpu={m['cpu_model']}  cores={m['cores_usable']}  "
        f"load={m['loadavg_start']}  {m['date']}")
    log(f"[1/4] data: --n {args.n} --seed {args.seed} in {work}")
    data, gen_s = make_data(work, args.n, args.seed)
    log("[2/4] ingest")
    ing = bench_ingest(build, data, work, args.repeat)
    log("[3/4] --like latency")
    like = bench_like(build, data, work, args.queries, args.like_runs, args.repeat, args.seed)
    log("[4/4] quality")
    qual = bench_quality(build, data, work, args.seed)
    cont = None
    if args.contention:
        log("[+] contention")
        cont = bench_contention(build, data, work)
    log()
    report(m, args, data, gen_s, ing, like, qual, cont)
    out = args.json or os.path.join(work, "results.json")
    with open(out, "w") as f:
        json.dump({"machine": m, "args": vars(args), "data": data, "generate_s": gen_s, "ingest": ing,
                   "like": like, "quality": qual, "contention": cont, "loadavg_end": loadavg(), "busy_before_runs": BUSY_LOG}, f, indent=1)
    log(f"results: {out}")


if __name__ == "__main__":
    main()
