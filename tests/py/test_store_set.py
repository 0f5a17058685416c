"""`mmu-search --store A --store B ...` (and --stores FILE) against an
independent brute force over the stores' vectors concatenated in order (what a
store merged from them holds), and the sets it must refuse.
Run: test_store_set.py --bin BUILD --samples DIR --tmp DIR
"""
import json
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402
import store_set_fixtures as ssf  # noqa: E402

cases, case = case_list()


def store_flags(stores):
    return [a for s in stores for a in ("--store", s)]


def batch(env, stores_args, ids, *extra):
    path = os.path.join(env.tmp, "ids.txt")
    with open(path, "w") as f:
        f.write("\n".join(ids) + "\n")
    p = run(env.search, *stores_args, "--like-file", path, "--format", "json", *extra)
    return json.loads(p.stdout)


class Checker:
    """A check() for ssf.compare that fails the case at the end with every message."""

    def __init__(self):
        self.failed = []

    def __call__(self, cond, what):
        if not cond:
            self.failed.append(what)

    def done(self):
        need(not self.failed, "; ".join(self.failed[:5]) + (" (+%d more)" % (len(self.failed) - 5) if len(self.failed) > 5 else ""))


def setup(env):
    env.stores = ssf.twin_stores(env.index, env.samples, env.tmp, 4)
    for space in ("image", "spectrum"):
        shas = {ssf.fit_sha(s, space) for s in env.stores}
        need(len(shas) == 1, "the twin stores' %s fits differ: the fixture is broken" % space)
    env.spaces = {name: ssf.Space(env.stores, name) for name in ("image", "spectrum")}
    rng = random.Random(18)
    everything = [(name, oid) for name, sp in env.spaces.items() for oid in sp.ids]
    env.queries = rng.sample(everything, 200)
    env.manifest = os.path.join(env.tmp, "stores.txt")
    with open(env.manifest, "w") as f:
        f.write("# the twin stores, in order\n\n" + "\n".join(os.path.relpath(s, env.tmp) for s in env.stores) + "\n")


@case("--store x4: 200 --like queries equal the brute force over the merged vectors (ids, scores, order, ties)")
def _(env):
    got = batch(env, store_flags(env.stores), [oid for _, oid in env.queries], "--k", "50")
    need(len(got) == 200, "%d results for 200 queries" % len(got))
    chk = Checker()
    for (space, oid), r in zip(env.queries, got):
        need(not r.get("error"), "%s: %s" % (oid, r.get("error")))
        need(r["space"] == space, "%s searched in %s, expected %s" % (oid, r["space"], space))
        ssf.compare(chk, env.spaces[space].top_k(oid, 50), r["results"], oid, env.spaces[space])
    chk.done()
    # Twins tie exactly: the first neighbour of every query is its twin in the first other store.
    first = got[0]["results"][0]["object_id"]
    need(env.spaces[env.queries[0][0]].row_of[env.spaces[env.queries[0][0]].index[first]] ==
         env.spaces[env.queries[0][0]].row_of[env.spaces[env.queries[0][0]].index[env.queries[0][1]]],
         "the first neighbour %s of %s is not its twin" % (first, env.queries[0][1]))


@case("--stores FILE equals --store x4; a single --like equals its --like-file block")
def _(env):
    ids = [oid for _, oid in env.queries[:20]]
    a = batch(env, store_flags(env.stores), ids, "--k", "30")
    b = batch(env, ["--stores", env.manifest], ids, "--k", "30")
    need([r["results"] for r in a] == [r["results"] for r in b], "--stores and --store x4 differ")
    # Scores are canonical (one float per query and row, however scanned): one query gives its batch block's bits.
    for (space, oid), r in list(zip(env.queries, a))[:3]:
        one = json.loads(run(env.search, "--stores", env.manifest, "--like", oid, "--k", "30", "--format", "json").stdout)
        need(one["results"] == r["results"], "%s: --like differs from its --like-file block: %s vs %s" %
             (oid, one["results"][:3], r["results"][:3]))


@case("a set of one store (--stores) answers what the store answers")
def _(env):
    one = os.path.join(env.tmp, "one.txt")
    with open(one, "w") as f:
        f.write(env.stores[1] + "\n")
    ids = [oid for space, oid in env.queries if env.spaces[space].store_of[env.spaces[space].index[oid]] == 1][:40]
    need(len(ids) >= 10, "too few store-1 queries (%d)" % len(ids))
    a = batch(env, ["--store", env.stores[1]], ids, "--k", "20")
    b = batch(env, ["--stores", one], ids, "--k", "20")
    need([r["results"] for r in a] == [r["results"] for r in b], "the set of one store differs from the store")


@case("filters apply in each store: --cone and --dedup over the set equal the brute force")
def _(env):
    sp = env.spaces["image"]
    oid = sp.ids[3]
    ra, dec = sp.ra[3], sp.dec[3]
    allowed = [ssf_sep(ra, dec, r, d) <= 20.0 for r, d in zip(sp.ra, sp.dec)]
    got = json.loads(run(env.search, *store_flags(env.stores), "--like", oid, "--k", "10", "--cone",
                         "%r,%r,20deg" % (ra, dec), "--format", "json").stdout)["results"]
    chk = Checker()
    ssf.compare(chk, sp.top_k(oid, 10, allowed), got, "cone", sp)
    chk.done()
    need(got, "the cone kept nothing: the case tests nothing")
    # --dedup 1 arcsec: the twins sit on one position, so only the best copy of each survives, and the
    # query's own twins are dropped next to the query.
    got = json.loads(run(env.search, *store_flags(env.stores), "--like", oid, "--k", "8", "--dedup", "1",
                         "--format", "json").stdout)["results"]
    kept, seen = [], {(round(ra, 7), round(dec, 7))}
    for eid, esc in sp.top_k(oid, len(sp.ids)):
        i = sp.index[eid]
        key = (round(sp.ra[i], 7), round(sp.dec[i], 7))
        if key in seen:
            continue
        seen.add(key)
        kept.append((eid, esc))
    chk = Checker()
    ssf.compare(chk, kept[:8], got, "dedup", sp)
    chk.done()
    need(all(sp.store_of[sp.index[g["object_id"]]] == 0 for g in got), "dedup kept a later store's twin")


@case("--vector and --near over the set equal the brute force; --in and --where apply in each store")
def _(env):
    import numpy as np
    sp = env.spaces["spectrum"]
    i = len(sp.ids) - 5  # an object of the last store
    vec = os.path.join(env.tmp, "q.npy")
    np.save(vec, sp.vecs[i].astype(np.float32))
    got = json.loads(run(env.search, *store_flags(env.stores), "--vector", vec, "--space", "spectrum", "--k", "12",
                         "--format", "json").stdout)["results"]
    scores = sp.vecs @ (sp.vecs[i] / np.linalg.norm(sp.vecs[i]))
    want = [(sp.ids[j], float(scores[j])) for j in np.argsort(-scores, kind="stable")[:12]]
    chk = Checker()
    ssf.compare(chk, want, got, "vector", sp)
    chk.done()
    need(got[0]["object_id"] == sp.ids[sp.index[sp.ids[i]] % (len(sp.ids) // 4)],
         "the best match of a stored vector is its first-store twin, got %s" % got[0]["object_id"])
    # --near: the nearest object is in the first store (its twins share its position): searched from there.
    got = json.loads(run(env.search, *store_flags(env.stores), "--near", "%r,%r" % (sp.ra[i], sp.dec[i]), "--k", "5",
                         "--format", "json").stdout)
    need(got["query"]["object_id"] == sp.ids[i % (len(sp.ids) // 4)], "--near found %s" % got["query"]["object_id"])
    # --where on a DESI column (Z, read here from the files; its median as the cut) and --in.
    import glob
    import h5py
    z = {}
    for i_store in range(len(env.stores)):
        for path in glob.glob(os.path.join(env.tmp, "root%d" % i_store, "desi", "*", "healpix=*", "*.hdf5")):
            with h5py.File(path, "r") as f:
                for oid_raw, zv in zip(f["object_id"][:], f["Z"][:]):
                    z[str(int(oid_raw))] = float(zv)
    zs = sorted(z[x] for x in sp.ids if x in z)
    cut = zs[len(zs) // 2]
    allowed = [z.get(x, 9.0) < cut for x in sp.ids]
    need(0 < sum(allowed) < len(allowed), "Z < %r keeps %d of %d: the case tests nothing" % (cut, sum(allowed), len(allowed)))
    oid = sp.ids[2]
    got = json.loads(run(env.search, *store_flags(env.stores), "--like", oid, "--k", "15", "--in", "desi",
                         "--where", "Z < %r" % cut, "--format", "json").stdout)["results"]
    chk = Checker()
    ssf.compare(chk, sp.top_k(oid, 15, allowed), got, "where", sp)
    chk.done()


def ssf_sep(ra1, dec1, ra2, dec2):
    from harness import haversine_deg
    return haversine_deg(ra1, dec1, ra2, dec2)


@case("shards of one fit (mmu-index fit, build --fit --shard I/4): every object's --like over --store x4 equals the brute force")
def _(env):
    fit = os.path.join(env.tmp, "fit")
    run(env.index, "fit", env.samples, "--out", fit)
    env.shards = []
    for i in range(4):
        env.shards.append(os.path.join(env.tmp, "shard%d" % i))
        run(env.index, "build", env.samples, "--store", env.shards[-1], "--fit", fit, "--shard", "%d/4" % i, "--quiet")
    spaces = {name: ssf.Space(env.shards, name) for name in ("image", "spectrum")}
    for name, sp in spaces.items():
        need(len(set(sp.store_of)) > 1, "the %s vectors are all in one shard: the case tests nothing" % name)
    queries = [(n, oid) for n, sp in spaces.items() for oid in sp.ids]
    got = batch(env, store_flags(env.shards), [oid for _, oid in queries], "--k", "50")
    chk = Checker()
    for (space, oid), r in zip(queries, got):
        need(not r.get("error"), "%s: %s" % (oid, r.get("error")))
        ssf.compare(chk, spaces[space].top_k(oid, 50), r["results"], oid, spaces[space])
    chk.done()


def first_difference(a, b):
    """The first (query, rank, set's hit, merged store's hit) where two --like-file answers differ, or None."""
    for x, y in zip(a, b):
        if x.get("error") or y.get("error") or len(x["results"]) != len(y["results"]):
            return (x["query"], None, x.get("error") or len(x["results"]), y.get("error") or len(y["results"]))
        for g, h in zip(x["results"], y["results"]):
            if (g["object_id"], g["score"], g["rank"]) != (h["object_id"], h["score"], h["rank"]):
                return (x["query"], g["rank"], (g["object_id"], g["score"]), (h["object_id"], h["score"]))
    return None if len(a) == len(b) else ("count", None, len(a), len(b))


@case("--store x4 answers what the store merged from the shards answers (mmu-index merge): ids, order, bit-equal scores")
def _(env):
    need(getattr(env, "shards", None), "the shard case did not run")
    merged = os.path.join(env.tmp, "merged")
    run(env.index, "merge", *env.shards, "--store", merged)
    spaces = {name: ssf.Space(env.shards, name) for name in ("image", "spectrum")}
    ids = [oid for sp in spaces.values() for oid in sp.ids]
    a = batch(env, store_flags(env.shards), ids, "--k", "50")
    b = batch(env, ["--store", merged], ids, "--k", "50")
    need(len(a) == len(b) == len(ids), "%d and %d results for %d queries" % (len(a), len(b), len(ids)))
    # Exact scores are canonical, whatever a row's place in its store: the set's must equal the merged store's
    # exactly (the JSON's printed floats), and its order with them.
    diff = first_difference(a, b)
    need(diff is None, "the set and the merged store differ: query %s rank %s: %s vs %s" % diff if diff else "")
    # And both agree with the brute force in double (to rounding).
    chk = Checker()
    space_of = {oid: name for name, sp in spaces.items() for oid in sp.ids}
    for oid, y in zip(ids, b):
        ssf.compare(chk, spaces[space_of[oid]].top_k(oid, 50), y["results"], oid, spaces[space_of[oid]])
    chk.done()


@case("near twins: a store of copies one float ulp away joins the shards; the set ranks the near ties as the merged store, bit for bit")
def _(env):
    need(getattr(env, "shards", None), "the shard case did not run")
    fit = os.path.join(env.tmp, "fit")
    root = os.path.join(env.tmp, "near-root")
    ssf.twin_root(env.samples, root, 5, prefix="near")
    ssf.nudge_root(root, 5)
    near = os.path.join(env.tmp, "near-store")
    run(env.index, "build", root, "--store", near, "--fit", fit, "--quiet")
    stores = env.shards + [near]
    merged = os.path.join(env.tmp, "merged-near")
    run(env.index, "merge", *stores, "--store", merged)
    spaces = {name: ssf.Space(stores, name) for name in ("image", "spectrum")}
    ids = [oid for sp in spaces.values() for oid in sp.ids]
    a = batch(env, store_flags(stores), ids, "--k", "40")
    b = batch(env, ["--store", merged], ids, "--k", "40")
    need(len(a) == len(b) == len(ids), "%d and %d results for %d queries" % (len(a), len(b), len(ids)))
    # The data really holds near ties: an object and its nudged copy (in another store) as neighbours whose
    # scores are at most an ulp or two apart (a different order of summation could swap them), in most queries.
    twin_of = {}  # nudged copy -> original
    for sp in spaces.values():
        for oid, s in zip(sp.ids, sp.store_of):
            if s == len(env.shards):
                twin_of[oid] = oid[:-3] if oid.endswith("_s5") else str(int(oid) - 6 * 10**15)
    near_ties = 0
    for r in b:
        hits = r["results"]
        near_ties += any(twin_of.get(g["object_id"]) == h["object_id"] or twin_of.get(h["object_id"]) == g["object_id"]
                         for g, h in zip(hits, hits[1:]) if 0 < abs(g["score"] - h["score"]) <= 2.5e-7)
    need(near_ties >= len(ids) // 4, "only %d of %d queries have a near tie between twins: the case tests nothing" %
         (near_ties, len(ids)))
    diff = first_difference(a, b)
    need(diff is None, "the set and the merged store differ: query %s rank %s: %s vs %s" % diff if diff else "")

@case("refused, naming the store: a missing store, a store given twice, an overlapping copy")
def _(env):
    missing = os.path.join(env.tmp, "no-such-store")
    p = run(env.search, *store_flags(env.stores[:2] + [missing]), "--like", env.queries[0][1], ok=False)
    need(p.returncode == 1 and missing in p.stderr, "missing store: rc %d, %s" % (p.returncode, p.stderr))
    p = run(env.search, *store_flags([env.stores[0], env.stores[1], env.stores[0] + "/."]), "--like",
            env.queries[0][1], ok=False)
    need(p.returncode == 1 and "given twice" in p.stderr, "store twice: rc %d, %s" % (p.returncode, p.stderr))
    copy = os.path.join(env.tmp, "copy-of-store1")
    shutil.copytree(env.stores[1], copy, symlinks=True)
    p = run(env.search, *store_flags([env.stores[0], env.stores[1], copy]), "--like", env.queries[0][1], ok=False)
    need(p.returncode == 1 and "overlap" in p.stderr and env.stores[1] in p.stderr and copy in p.stderr,
         "overlapping stores: rc %d, %s" % (p.returncode, p.stderr))
    # The same objects under other file names: no file is shared, but a query id is in both stores.
    renamed = os.path.join(env.tmp, "renamed-root")
    ssf.twin_root(env.samples, renamed, 1, prefix="renamed")
    ssf.build(env.index, renamed, renamed + "-store")
    sp = env.spaces["image"]
    oid = next(x for x in sp.ids if sp.store_of[sp.index[x]] == 1)
    p = run(env.search, *store_flags([env.stores[0], env.stores[1], renamed + "-store"]), "--like", oid, ok=False)
    need(p.returncode == 1 and "overlap" in p.stderr and oid in p.stderr and env.stores[1] in p.stderr,
         "an id in two stores: rc %d, %s" % (p.returncode, p.stderr))
    p = run(env.search, *store_flags(env.stores[:2]), "hunt", "--k", "3", ok=False)
    need(p.returncode == 2 and "set" in p.stderr, "a subcommand with several stores: rc %d, %s" % (p.returncode, p.stderr))


@case("refused, naming the stores and the space: stores of different fits")
def _(env):
    # A store of one cell's files: its own PCA fit, unlike the twins'.
    root = os.path.join(env.tmp, "other-root")
    ssf.twin_root(env.samples, root, 9)
    cells = sorted(os.listdir(os.path.join(root, "desi", "edr_sv3")))
    for c in cells[1:]:
        shutil.rmtree(os.path.join(root, "desi", "edr_sv3", c))
    other = os.path.join(env.tmp, "other-store")
    ssf.build(env.index, root, other)
    p = run(env.search, *store_flags([env.stores[0], other]), "--like", env.queries[0][1], ok=False)
    need(p.returncode == 1, "different fits accepted: rc %d" % p.returncode)
    need("differs between stores" in p.stderr and env.stores[0] in p.stderr and other in p.stderr,
         "the refusal does not name both stores: %s" % p.stderr)
    need("space 'image'" in p.stderr or "space 'spectrum'" in p.stderr, "the refusal names no space: %s" % p.stderr)


@case("an id in none of the stores is named with the stores")
def _(env):
    p = run(env.search, *store_flags(env.stores), "--like", "no-such-object", ok=False)
    need(p.returncode == 1 and "no-such-object" in p.stderr and "none of the 4 stores" in p.stderr,
         "unknown id: rc %d, %s" % (p.returncode, p.stderr))


if __name__ == "__main__":
    args, index, search = binaries_samples_tmp()
    env = Env()
    env.index, env.search, env.samples, env.tmp = index, search, args.samples, args.tmp
    sys.exit(run_cases(cases, env, setup))
