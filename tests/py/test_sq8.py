"""End-to-end checks of the sq8 index (issue 19 point 2): `mmu-index reindex
--index sq8` writes vectors.sq8, and `mmu-search --like` over it answers exactly
what the fp32 scan answers (same ids, same printed scores, same order) and what
a numpy brute force finds; filters and k beyond the rows included. An
incremental build rebuilds the copy over the new vectors (it records the
catalog's SHA-256 of vectors.f32); a stale or damaged copy is set aside with
a warning naming it, and the answer is the fp32 scan's.
Run: test_sq8.py --bin BUILD --samples DIR --tmp DIR
"""
import json
import os
import shutil
import sqlite3
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from space_reading import brute, load_space  # noqa: E402
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402

CASES, case = case_list()
SPACE = "spectrum"


def gen_dir(store):
    with open(os.path.join(store, "CURRENT")) as f:
        return os.path.join(store, f.read().strip())


def space_dir(store):
    return os.path.join(gen_dir(store), "spaces", SPACE)


def like(env, store, oid, *args):
    p = run(env.search, "--store", store, "--like", oid, "--space", SPACE, *args, "--format", "json")
    return json.loads(p.stdout), p.stderr


def reindex(env, store, kind):
    run(env.index, "reindex", "--store", store, "--space", SPACE, "--index", kind, "--quiet")


def recorded_sha(store):
    """The catalog's SHA-256 of the space's vectors.f32."""
    db = sqlite3.connect(os.path.join(gen_dir(store), "catalog.sqlite"))
    return db.execute("SELECT sha256 FROM space_files WHERE space=? AND file='vectors.f32'", (SPACE,)).fetchone()[0]


def sq8_sha(store):
    with open(os.path.join(space_dir(store), "vectors.sq8"), "rb") as f:
        head = f.read(104)
    need(head[:8] == b"MMUSQ8v1", "vectors.sq8 magic: %r" % head[:8])
    return head[40:104].decode()


def setup(env):
    env.flat = os.path.join(env.tmp, "flat")
    run(env.index, "build", env.samples, "--store", env.flat, "--quiet")
    env.sq8 = os.path.join(env.tmp, "sq8")
    shutil.copytree(env.flat, env.sq8)
    reindex(env, env.sq8, "sq8")
    env.vecs, env.meta = load_space(env.flat, SPACE, np.float32)
    env.ids = [m[0] for m in env.meta]


@case("reindex --index sq8 records the catalog's vectors.f32 SHA-256; --like answers as the fp32 scan, bit for bit")
def _(env):
    rec = json.load(open(os.path.join(space_dir(env.sq8), "index.json")))
    need(rec["kind"] == "sq8" and rec["file"] == "vectors.sq8", "index.json: %s" % rec)
    need(rec["recall"] == 1.0, "recall of an exact index: %s" % rec["recall"])
    need(sq8_sha(env.sq8) == recorded_sha(env.sq8), "the copy records another SHA-256")
    n = len(env.ids)
    for i in (0, 7, n - 1):
        for k in ("1", "10", str(n + 5)):
            got, err = like(env, env.sq8, env.ids[i], "--k", k)
            want, _ = like(env, env.flat, env.ids[i], "--k", k)
            need(got["method"].startswith("exact sq8 scan"), "method: %s" % got["method"])
            need(want["method"] == "exact fp32 scan", "flat method: %s" % want["method"])
            need(got["results"] == want["results"], "object %d k %s: sq8 %s != fp32 %s" % (i, k, got["results"], want["results"]))
            need("warning" not in err, "stderr: %s" % err)
            # And an independent computation: numpy in double, up to fp32 rounding.
            ref = brute(env.vecs, env.meta, env.vecs[i], int(k), exclude={env.ids[i]})
            need([r["object_id"] for r in got["results"]][:3] == [r[0] for r in ref][:3], "object %d: top 3 differ from numpy" % i)
            need(all(abs(r["score"] - s) < 1e-5 for r, (_, s) in zip(got["results"], ref)), "object %d: scores differ from numpy" % i)


@case("filters (--in, --cone) scan the allowed rows of the sq8 copy and answer as the fp32 scan")
def _(env):
    ra, dec = env.meta[3][2], env.meta[3][3]
    for flags in (["--cone", "%f,%f,3deg" % (ra, dec)], ["--in", env.meta[0][1]]):
        for i in (3, 11):
            got, _ = like(env, env.sq8, env.ids[i], "--k", "20", *flags)
            want, _ = like(env, env.flat, env.ids[i], "--k", "20", *flags)
            need("filtered" in got["method"], "method: %s" % got["method"])
            need(got["results"] == want["results"], "%s object %d: sq8 != fp32" % (flags, i))


@case("an incremental build with new rows rebuilds the sq8 copy over the new vectors")
def _(env):
    part = os.path.join(env.tmp, "part")
    shutil.copytree(env.samples, part)
    desi = os.path.join(part, "desi", "edr_sv3")
    shutil.rmtree(os.path.join(desi, sorted(os.listdir(desi))[0]))
    store = os.path.join(env.tmp, "incremental")
    run(env.index, "build", part, "--store", store, "--quiet")
    reindex(env, store, "sq8")
    old_sha = sq8_sha(store)
    p = run(env.index, "build", env.samples, "--store", store)
    need("index rebuilt for space %s" % SPACE in p.stdout, "build report: %s" % p.stdout)
    rec = json.load(open(os.path.join(space_dir(store), "index.json")))
    need(rec["kind"] == "sq8", "index.json after the build: %s" % rec)
    need(sq8_sha(store) == recorded_sha(store) != old_sha, "the copy does not record the new vectors.f32")
    flat = os.path.join(env.tmp, "incremental-flat")
    shutil.copytree(store, flat)
    reindex(env, flat, "flat")
    for oid in env.ids[:5]:
        got, err = like(env, store, oid, "--k", "15")
        want, _ = like(env, flat, oid, "--k", "15")
        need(got["method"].startswith("exact sq8") and "warning" not in err, "%s: %s" % (got["method"], err))
        need(got["results"] == want["results"], "%s: sq8 != fp32 after the build" % oid)


@case("a build gives a space of at least --sq8-from-rows vectors the sq8 copy, smaller ones stay flat; answers as fp32")
def _(env):
    n = len(env.ids)
    at = os.path.join(env.tmp, "from-rows-at")
    run(env.index, "build", env.samples, "--store", at, "--quiet", "--sq8-from-rows", str(n))
    rec = json.load(open(os.path.join(space_dir(at), "index.json")))
    need(rec["kind"] == "sq8", "%d vectors, --sq8-from-rows %d: index.json %s" % (n, n, rec))
    need(sq8_sha(at) == recorded_sha(at), "the build's copy records another SHA-256")
    for i in (0, n // 2, n - 1):
        got, err = like(env, at, env.ids[i], "--k", "12")
        want, _ = like(env, env.flat, env.ids[i], "--k", "12")
        need(got["method"].startswith("exact sq8 scan") and "warning" not in err, "%s: %s" % (got["method"], err))
        need(got["results"] == want["results"], "object %d: the build's sq8 != fp32" % i)
    above = os.path.join(env.tmp, "from-rows-above")
    run(env.index, "build", env.samples, "--store", above, "--quiet", "--sq8-from-rows", str(n + 1))
    rec_path = os.path.join(space_dir(above), "index.json")  # a build's flat space has none
    rec = json.load(open(rec_path)) if os.path.exists(rec_path) else {"kind": "flat"}
    need(rec["kind"] == "flat", "%d vectors, --sq8-from-rows %d: index.json %s" % (n, n + 1, rec))
    need(not os.path.exists(os.path.join(space_dir(above), "vectors.sq8")), "a flat space has a vectors.sq8")


@case("a stale or damaged sq8 copy is set aside with a warning naming it; the answer is the fp32 scan's")
def _(env):
    store = os.path.join(env.tmp, "stale")
    shutil.copytree(env.sq8, store)
    path = os.path.join(space_dir(store), "vectors.sq8")
    os.chmod(path, 0o644)
    data = bytearray(open(path, "rb").read())
    data[40:104] = b"0" * 64  # another vectors.f32's SHA-256
    stale = os.path.join(env.tmp, "stale.sq8")
    open(stale, "wb").write(bytes(data))
    os.replace(stale, path)
    want, _ = like(env, env.flat, env.ids[2], "--k", "10")
    got, err = like(env, store, env.ids[2], "--k", "10")
    need("warning" in err and path in err and "stale" in err, "stderr: %s" % err)
    need(got["method"] == "exact fp32 scan", "method: %s" % got["method"])
    need(got["results"] == want["results"], "stale copy: answer differs from the fp32 scan")
    open(stale, "wb").write(bytes(data[:-1]))
    os.replace(stale, path)
    got, err = like(env, store, env.ids[2], "--k", "10")
    need("warning" in err and path in err and "damaged" in err, "stderr: %s" % err)
    need(got["results"] == want["results"], "damaged copy: answer differs from the fp32 scan")


if __name__ == "__main__":
    args, index, search_bin = binaries_samples_tmp()
    env = Env()
    env.index, env.search, env.samples, env.tmp = index, search_bin, args.samples, args.tmp
    sys.exit(run_cases(CASES, env, setup, only=os.environ.get("MMU_TEST_ONLY")))
