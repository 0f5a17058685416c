"""`mmu-index merge` gives the merged spaces the sq8 copy by the build's rule
(at least --sq8-from-rows vectors; issue 19 point 3), and a one-shot
`mmu-search --like` over it (which reads the codes with pread, not through a
mapping) answers as the fp32 scan of the same merged vectors and as a numpy
brute force.
Run: test_cold.py --bin BUILD --samples DIR --tmp DIR
"""
import json
import os
import shutil
import sqlite3
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from space_reading import brute, generation, load_space  # noqa: E402
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402

CASES, case = case_list()
SPACE = "spectrum"
SHARDS = 2


def space_dir(store):
    return os.path.join(generation(store), "spaces", SPACE)


def kind_of(store):
    path = os.path.join(space_dir(store), "index.json")  # a flat space written by a build or merge has none
    return json.load(open(path))["kind"] if os.path.exists(path) else "flat"


def like(env, store, oid, *args):
    p = run(env.search, "--store", store, "--like", oid, "--space", SPACE, *args, "--format", "json")
    return json.loads(p.stdout), p.stderr


def setup(env):
    fit = os.path.join(env.tmp, "fit")
    run(env.index, "fit", env.samples, "--out", fit, "--sample-cells", "5", "--seed", "7", "--quiet")
    env.shards = []
    for i in range(SHARDS):
        s = os.path.join(env.tmp, "shard%d" % i)
        run(env.index, "build", env.samples, "--store", s, "--fit", fit, "--shard", "%d/%d" % (i, SHARDS), "--quiet")
        env.shards.append(s)
    env.flat = os.path.join(env.tmp, "merged-flat")
    run(env.index, "merge", *env.shards, "--store", env.flat, "--sq8-from-rows", "0", "--quiet")
    env.vecs, env.meta = load_space(env.flat, SPACE, np.float32)
    env.ids = [m[0] for m in env.meta]


@case("merge gives a space of at least --sq8-from-rows vectors the sq8 copy, smaller ones stay flat; answers as fp32")
def _(env):
    n = len(env.ids)
    need(kind_of(env.flat) == "flat", "--sq8-from-rows 0: %s" % kind_of(env.flat))
    at = os.path.join(env.tmp, "merged-at")
    out = run(env.index, "merge", *env.shards, "--store", at, "--sq8-from-rows", str(n)).stdout
    need(kind_of(at) == "sq8", "%d vectors, --sq8-from-rows %d: %s" % (n, n, kind_of(at)))
    need("reindexed %s: sq8" % SPACE in out, "the report does not say the copy was made: %s" % out)
    db = sqlite3.connect(os.path.join(generation(at), "catalog.sqlite"))
    sha = db.execute("SELECT sha256 FROM space_files WHERE space=? AND file='vectors.f32'", (SPACE,)).fetchone()[0]
    with open(os.path.join(space_dir(at), "vectors.sq8"), "rb") as f:
        need(f.read(104)[40:104].decode() == sha, "the merge's copy records another SHA-256 than the catalog's")
    for i in (0, n // 3, n - 1):
        for k in ("1", "10", str(n + 5)):
            got, err = like(env, at, env.ids[i], "--k", k)
            want, _ = like(env, env.flat, env.ids[i], "--k", k)
            need(got["method"].startswith("exact sq8 scan") and "warning" not in err, "%s: %s" % (got["method"], err))
            need(want["method"] == "exact fp32 scan", "flat method: %s" % want["method"])
            need(got["results"] == want["results"], "object %d k %s: the merge's sq8 != fp32" % (i, k))
            ref = brute(env.vecs, env.meta, env.vecs[i], int(k), exclude={env.ids[i]})
            need([r["object_id"] for r in got["results"]][:3] == [r[0] for r in ref][:3], "object %d: top 3 differ from numpy" % i)
            need(all(abs(r["score"] - s) < 1e-5 for r, (_, s) in zip(got["results"], ref)), "object %d: scores differ from numpy" % i)
    above = os.path.join(env.tmp, "merged-above")
    run(env.index, "merge", *env.shards, "--store", above, "--sq8-from-rows", str(n + 1), "--quiet")
    need(kind_of(above) == "flat", "%d vectors, --sq8-from-rows %d: %s" % (n, n + 1, kind_of(above)))
    need(not os.path.exists(os.path.join(space_dir(above), "vectors.sq8")), "a flat merged space has a vectors.sq8")


@case("a shard's index is reported lost by a merge only where the merged space does not get the sq8 copy")
def _(env):
    n = len(env.ids)
    indexed = os.path.join(env.tmp, "shard0-hnsw")
    shutil.copytree(env.shards[0], indexed)
    run(env.index, "reindex", "--store", indexed, "--space", SPACE, "--index", "hnsw", "--quiet")
    shards = [indexed] + env.shards[1:]
    lost = "searched exactly until `mmu-index reindex`"
    for rows, kind in ((n, "sq8"), (n + 1, "flat")):
        store = os.path.join(env.tmp, "merged-from-hnsw-%d" % rows)
        out = run(env.index, "merge", *shards, "--store", store, "--sq8-from-rows", str(rows)).stdout
        need(kind_of(store) == kind, "--sq8-from-rows %d: %s" % (rows, kind_of(store)))
        noted = [line for line in out.splitlines() if lost in line]
        if kind == "sq8":
            need(not noted, "the merged space got its sq8 copy, yet the report says: %s" % noted)
        else:
            need(len(noted) == 1 and indexed in noted[0] and "hnsw" in noted[0].lower(),
                 "one note naming the hnsw shard expected: %s" % out)


@case("merge --sq8-from-rows refuses a negative count, naming the flag")
def _(env):
    p = run(env.index, "merge", *env.shards, "--store", os.path.join(env.tmp, "neg"), "--sq8-from-rows", "-1", ok=False)
    need(p.returncode != 0 and "--sq8-from-rows" in p.stderr, "exit %d: %s" % (p.returncode, p.stderr))


if __name__ == "__main__":
    args, index, search_bin = binaries_samples_tmp()
    env = Env()
    env.index, env.search, env.samples, env.tmp = index, search_bin, args.samples, args.tmp
    sys.exit(run_cases(CASES, env, setup, only=os.environ.get("MMU_TEST_ONLY")))
