"""End-to-end checks of the search features of issue 7 against independent
numpy computations over the store's own vectors and catalog: several --like,
--unlike, --vector, --near, batch --like-file, filters (--in, --cells, --cone)
equal to brute force restricted to the same rows, --dedup, index kinds
(flat16, ivf, hnsw) and --exact, hunts and outliers.
Run: test_search.py --bin BUILD --samples DIR --tmp DIR [--only NAME]
"""
import csv
import json
import math
import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from space_reading import brute, load_space  # noqa: E402
from harness import Env, binaries_samples_tmp, case_list, haversine_deg, need, run, run_cases, unit  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "..", "tools")
CASES, case = case_list()





def search(env, *args, ok=True):
    return run(env.search, "--store", env.store, *args, ok=ok)


def search_json(env, *args):
    return json.loads(search(env, *args, "--format", "json").stdout)


def same_results(got, want, label, tol=1e-5):
    need(len(got) == len(want), "%s: %d results, brute force has %d" % (label, len(got), len(want)))
    for rank, (g, (wid, wsc)) in enumerate(zip(got, want), start=1):
        need(abs(g["score"] - wsc) <= tol, "%s: rank %d score %.7f, brute force %.7f" % (label, rank, g["score"], wsc))
        near_tie = any(abs(wsc - w[1]) < 1e-5 for j, w in enumerate(want) if j != rank - 1)
        need(g["object_id"] == wid or near_tie, "%s: rank %d is %s, brute force %s" % (label, rank, g["object_id"], wid))


def setup(env):
    env.store = os.path.join(env.tmp, "store")
    run(env.index, "build", env.samples, "--store", env.store, "--quiet")
    env.spec, env.spec_meta = load_space(env.store, "spectrum")
    env.img, env.img_meta = load_space(env.store, "image")
    env.ids = [m[0] for m in env.spec_meta]


@case("--like A --like B averages the two vectors; neither is returned")
def _(env):
    a, b = 3, 17
    q = unit(env.spec[a] + env.spec[b])
    got = search_json(env, "--like", env.ids[a], "--like", env.ids[b], "--k", "10")
    same_results(got["results"], brute(env.spec, env.spec_meta, q, 10, exclude={env.ids[a], env.ids[b]}), "two positives")
    need(len(got["positives"]) == 2, "json lists both positives")


@case("--unlike subtracts half the negatives' mean")
def _(env):
    a, c = 5, 40
    q = unit(env.spec[a] - 0.5 * env.spec[c])
    got = search_json(env, "--like", env.ids[a], "--unlike", env.ids[c], "--k", "8")
    same_results(got["results"], brute(env.spec, env.spec_meta, q, 8, exclude={env.ids[a], env.ids[c]}), "unlike")


@case("--vector q.npy searches the space of its dimension with the normalised vector")
def _(env):
    rng = np.random.default_rng(1)
    v = rng.normal(size=env.spec.shape[1])
    path = os.path.join(env.tmp, "q.npy")
    np.save(path, v.astype(np.float64))
    got = search_json(env, "--vector", path, "--space", "spectrum", "--k", "12")
    same_results(got["results"], brute(env.spec, env.spec_meta, unit(v), 12), "vector")
    bad = os.path.join(env.tmp, "bad.npy")
    np.save(bad, np.ones(3, dtype=np.float32))
    p = search(env, "--vector", bad, "--space", "spectrum", ok=False)
    need(p.returncode == 1 and "dimension" in p.stderr, "a vector of the wrong size is refused: %s" % p.stderr)


@case("--near RA,DEC uses the nearest catalogued object within --radius")
def _(env):
    oid, _, ra, dec, _ = env.spec_meta[9]
    got = search_json(env, "--near", "%.7f,%.7f" % (ra, dec + 0.4 / 3600), "--radius", "2arcsec", "--k", "5")
    need(got["query"]["object_id"] == oid, "near found %s, expected %s" % (got["query"]["object_id"], oid))
    need(abs(got["near_sep_arcsec"] - 0.4) < 0.01, "separation %s" % got["near_sep_arcsec"])
    same_results(got["results"], brute(env.spec, env.spec_meta, env.spec[9], 5, exclude={oid}), "near")
    p = search(env, "--near", "%.7f,%.7f" % (ra, dec + 0.3), "--radius", "1arcsec", ok=False)
    need(p.returncode == 1 and "--radius" in p.stderr, "nothing within the radius names --radius: %s" % p.stderr)


@case("--like-file runs one batched query per id, equal to single queries; a bad id fails alone")
def _(env):
    ids = env.ids[:12]
    path = os.path.join(env.tmp, "ids.txt")
    with open(path, "w") as f:
        f.write("# a comment\n" + "\n".join(ids[:6]) + "\nno-such-object\n" + "\n".join(ids[6:]) + "\n")
    p = search(env, "--like-file", path, "--k", "7", "--format", "json", ok=False)
    need(p.returncode == 1, "a failed query makes the exit code 1")
    blocks = json.loads(p.stdout)
    need(len(blocks) == 13, "13 blocks, got %d" % len(blocks))
    need("error" in blocks[6] and "no-such-object" in blocks[6]["error"], "the bad id's block holds its error")
    for b in blocks[:6] + blocks[7:]:
        single = search_json(env, "--like", b["label"], "--k", "7")
        need([r["object_id"] for r in b["results"]] == [r["object_id"] for r in single["results"]],
             "batch block of %s differs from the single query" % b["label"])
    rows = list(csv.DictReader(search(env, "--like-file", path, "--k", "2", "--format", "csv", ok=False).stdout.splitlines()))
    need(len(rows) == 24 and rows[0]["query"] == ids[0], "csv: 2 rows per good query with a query column")


@case("--in, --cells and --cone return exactly brute force over the rows they allow")
def _(env):
    q_i = 2
    q = env.spec[q_i]
    oid = env.ids[q_i]
    cells = sorted({m[4] for m in env.spec_meta})[:3]
    allowed = [i for i, m in enumerate(env.spec_meta) if m[4] in cells]
    got = search_json(env, "--like", oid, "--k", "50", "--cells", ",".join(map(str, cells)))
    same_results(got["results"], brute(env.spec, env.spec_meta, q, 50, allowed, {oid}), "--cells")
    ra, dec = env.spec_meta[q_i][2], env.spec_meta[q_i][3]
    for radius_deg in (3.0, 20.0):
        allowed = [i for i, m in enumerate(env.spec_meta) if haversine_deg(ra, dec, m[2], m[3]) <= radius_deg]
        got = search_json(env, "--like", oid, "--k", "50", "--cone", "%r,%r,%rdeg" % (ra, dec, radius_deg))
        same_results(got["results"], brute(env.spec, env.spec_meta, q, 50, allowed, {oid}), "--cone %g deg" % radius_deg)
    got = search_json(env, "--like", oid, "--k", "50", "--in", "desi")
    same_results(got["results"], brute(env.spec, env.spec_meta, q, 50, None, {oid}), "--in desi")
    p = search(env, "--like", oid, "--cone", "10,100,1deg", ok=False)
    need(p.returncode == 1 and "--cone" in p.stderr, "a bad cone names --cone: %s" % p.stderr)
    p = search(env, "--like", oid, "--cells", "99999", ok=False)
    need(p.returncode == 1 and "--cells" in p.stderr, "a bad cell names --cells: %s" % p.stderr)


@case("--where filters inside the search: equal to brute force over the rows whose file values pass")
def _(env):
    import glob
    import h5py
    z = {}
    for path in glob.glob(os.path.join(env.samples, "desi", "**", "*.hdf5"), recursive=True):
        with h5py.File(path, "r") as f:
            for oid, zz, st in zip(f["object_id"][:], f["Z"][:], f["SPECTYPE"][:]):
                z[str(oid)] = (float(zz), st.decode().strip())
    q_i = 4
    oid = env.ids[q_i]
    allowed = [i for i, m in enumerate(env.spec_meta) if z[m[0]][0] < 0.25 and z[m[0]][1] == "GALAXY"]
    need(0 < len(allowed) < len(env.ids) - 1, "the filter must keep some rows and drop some")
    got = search_json(env, "--like", oid, "--k", "60", "--where", "Z < 0.25 and SPECTYPE = 'GALAXY'")
    same_results(got["results"], brute(env.spec, env.spec_meta, env.spec[q_i], 60, allowed, {oid}), "--where")
    p = search(env, "--like", oid, "--where", "Z < 0.2; DROP TABLE objects", ok=False)
    need(p.returncode == 1 and "column" in p.stderr, "an injection attempt is refused: %s" % p.stderr)
    need(search_json(env, "--like", oid, "--k", "3")["results"], "the store still answers after it")


@case("--dedup drops results closer on the sky than the radius to a better one")
def _(env):
    oid = env.ids[0]
    got = search_json(env, "--like", oid, "--k", "10", "--dedup", "36000")
    pts = [(env.spec_meta[0][2], env.spec_meta[0][3])] + [(r["ra"], r["dec"]) for r in got["results"]]
    for i in range(len(pts)):
        for j in range(i + 1, len(pts)):
            need(haversine_deg(*pts[i], *pts[j]) * 3600 >= 36000, "two kept results within 10 deg")
    need(len(got["results"]) >= 2, "some results survive")


@case("reindex: flat16 stays within fp16 rounding, ivf/hnsw report recall, --exact stays exact")
def _(env):
    q_i = 7
    oid = env.ids[q_i]
    want = brute(env.spec, env.spec_meta, env.spec[q_i], 20, exclude={oid})
    for kind in ("flat16", "ivf", "hnsw"):
        p = run(env.index, "reindex", "--store", env.store, "--space", "spectrum", "--index", kind,
                "--recall-k", "10", "--recall-queries", "40")
        need("recall@10" in p.stdout, "reindex prints recall: %s" % p.stdout)
        rec = json.load(open(os.path.join(env.store, open(os.path.join(env.store, "CURRENT")).read().strip(),
                                          "spaces", "spectrum", "index.json")))
        need(rec["kind"] == kind and 0.9 <= rec["recall"] <= 1.0, "index.json records %s" % rec)
        lst = search(env, "--list-spaces").stdout
        need(kind in lst, "--list-spaces shows %s" % kind)
        got = search_json(env, "--like", oid, "--k", "20")
        need(kind in got["method"] or (kind == "flat16" and "fp16" in got["method"]), "method %s" % got["method"])
        if kind == "flat16":
            same_results(got["results"], want, "flat16", tol=2e-3)
        exact = search_json(env, "--like", oid, "--k", "20", "--exact")
        same_results(exact["results"], want, "--exact under %s" % kind)
    run(env.index, "reindex", "--store", env.store, "--space", "spectrum", "--index", "flat")
    same_results(search_json(env, "--like", oid, "--k", "20")["results"], want, "back to flat")


@case("hunt --outliers equals a numpy all-pairs k-th neighbour distance")
def _(env):
    n = 5
    sims = env.img @ env.img.T
    np.fill_diagonal(sims, -np.inf)
    kth = -np.sort(-sims, axis=1)[:, n - 1]
    iso = 1 - kth
    order = np.argsort(-iso, kind="stable")[:8]
    got = json.loads(run(env.search, "hunt", "--store", env.store, "--outliers", "--space", "image",
                         "--neighbours", str(n), "--k", "8", "--format", "json").stdout)
    need([r["object_id"] for r in got["results"]] == [env.img_meta[i][0] for i in order],
         "outlier order differs from numpy")
    need(all(abs(r["score"] - iso[i]) < 1e-5 for r, i in zip(got["results"], order)), "outlier scores differ")


@case("hunt: positives of a rare class pull that class far above its base rate")
def _(env):
    demo = os.path.join(env.tmp, "hunt-data")
    run("/usr/bin/python3", os.path.join(TOOLS, "make_samples.py"), "--out", demo, "--n", "1500", "--seed", "11")
    store = os.path.join(env.tmp, "hunt-store")
    run(env.index, "build", demo, "--store", store, "--quiet")
    truth = list(csv.DictReader(open(os.path.join(demo, "truth.csv"))))
    lines = []
    # Lenses are ~1% (half of them are the positives), mergers ~13% (5 positives).
    for survey, space in (("legacysurvey", "image"), ("desi", "spectrum")):
        for cls, min_lift in (("lens", 10), ("merger", 2)):
            ids = [t["object_id"] for t in truth if t["survey"] == survey and t["class"] == cls]
            n_survey = sum(1 for t in truth if t["survey"] == survey)
            random.Random(3).shuffle(ids)
            n_pos = max(2, len(ids) // 2) if cls == "lens" else 5
            pos, rest = ids[:n_pos], set(ids[n_pos:])
            path = os.path.join(env.tmp, "pos-%s-%s.txt" % (space, cls))
            open(path, "w").write("\n".join(pos) + "\n")
            base = len(rest) / (n_survey - len(pos))
            for method in ("classifier", "mean"):
                got = json.loads(run(env.search, "hunt", "--store", store, "--positives", path, "--space", space,
                                     "--method", method, "--k", "20", "--format", "json").stdout)["results"]
                need(not any(r["object_id"] in pos for r in got), "a positive came back")
                rel = [1 if r["object_id"] in rest else 0 for r in got]
                p20 = sum(rel) / 20
                dcg = sum(x / math.log2(i + 2) for i, x in enumerate(rel[:10]))
                idcg = sum(1 / math.log2(i + 2) for i in range(min(10, len(rest))))
                lines.append("%s %s %s: precision@20 %.2f (base rate %.3f, %.0fx), nDCG@10 %.2f"
                             % (space, cls, method, p20, base, p20 / base, dcg / idcg))
                if method == "classifier":
                    need(p20 >= min_lift * base, "%s %s: classifier precision@20 %.2f below %dx the base rate %.3f"
                         % (space, cls, p20, min_lift, base))
    print("   " + "\n   ".join(lines))


@case("hunt without positives, or with an unknown method, is refused naming the flag")
def _(env):
    p = run(env.search, "hunt", "--store", env.store, ok=False)
    need(p.returncode == 1 and "--positives" in p.stderr, p.stderr)
    path = os.path.join(env.tmp, "one.txt")
    open(path, "w").write(env.ids[0] + "\n")
    p = run(env.search, "hunt", "--store", env.store, "--positives", path, "--method", "magic", ok=False)
    need(p.returncode == 1 and "--method" in p.stderr, p.stderr)


def space_by_id(store, name):
    vecs, meta = load_space(store, name)
    return {m[0]: vecs[i] for i, m in enumerate(meta)}


@case("incremental build: unchanged files carried bit for bit, changed and new files read, removed dropped, index rebuilt")
def _(env):
    import shutil
    data, store, snap = (os.path.join(env.tmp, "inc-" + x) for x in ("data", "store", "before"))
    shutil.copytree(env.samples, data)
    run(env.index, "build", data, "--store", store, "--quiet")
    run(env.index, "reindex", "--store", store, "--space", "image", "--index", "hnsw")
    shutil.copytree(store, snap)
    before = {sp: space_by_id(snap, sp) for sp in ("image", "spectrum")}
    # Nothing changed: every space is kept as it was.
    p = run(env.index, "build", data, "--store", store)
    need("0 new or changed files read" in p.stdout and "space image: unchanged" in p.stdout, p.stdout)
    # One image file removed, one spectrum file touched (same bytes, new mtime), new image files added.
    removed = sorted(glob_files(data, "legacysurvey"))[0]
    touched = sorted(glob_files(data, "desi"))[0]
    import h5py
    with h5py.File(removed, "r") as f:
        gone = {x.decode() if isinstance(x, bytes) else str(x) for x in f["object_id"][:]}
    with h5py.File(touched, "r") as f:
        retouched = {str(x) for x in f["object_id"][:]}
    os.remove(removed)
    os.utime(touched)
    extra = os.path.join(env.tmp, "inc-extra")
    run("/usr/bin/python3", os.path.join(TOOLS, "make_samples.py"), "--out", extra, "--n", "40", "--seed", "99")
    for cell in glob_cells(os.path.join(extra, "legacysurvey")):
        shutil.copytree(cell, os.path.join(data, "legacysurvey", "extra", os.path.basename(cell)))
    p = run(env.index, "build", data, "--store", store)
    need("removed: '%s'" % os.path.abspath(removed) in p.stdout, "the removed file is reported: %s" % p.stdout)
    need("index rebuilt for space image: hnsw" in p.stdout, "the hnsw index is rebuilt: %s" % p.stdout)
    after = {sp: space_by_id(store, sp) for sp in ("image", "spectrum")}
    need(not (gone & set(after["image"])), "objects of the removed file are gone")
    new_ids = set(after["image"]) - set(before["image"])
    need(len(new_ids) > 0 and set(before["image"]) - gone <= set(after["image"]), "new objects added, old kept")
    for sp in ("image", "spectrum"):
        for oid, v in before[sp].items():
            if oid in gone:
                continue
            if oid in retouched:  # re-read and projected with the same fit
                need(np.allclose(after[sp][oid], v, atol=1e-6), "%s %s: re-read vector differs" % (sp, oid))
            else:
                need(np.array_equal(after[sp][oid], v), "%s %s: carried vector changed" % (sp, oid))
    rec = json.load(open(os.path.join(store, open(os.path.join(store, "CURRENT")).read().strip(), "spaces", "image",
                                      "index.json")))
    need(rec["kind"] == "hnsw", "index.json after the incremental build: %s" % rec)
    # --refit reads everything and equals a build from scratch of the same files.
    p = run(env.index, "build", data, "--store", store, "--refit")
    need("carried over" not in p.stdout, "--refit reuses nothing: %s" % p.stdout)
    fresh = os.path.join(env.tmp, "inc-fresh")
    run(env.index, "build", data, "--store", fresh, "--quiet")
    for sp in ("image", "spectrum"):
        a, b = space_by_id(store, sp), space_by_id(fresh, sp)
        need(a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-6) for k in a), "%s: --refit != scratch" % sp)


def glob_files(root, dataset):
    import glob
    return glob.glob(os.path.join(root, dataset, "**", "*.hdf5"), recursive=True)


def glob_cells(root):
    import glob
    return glob.glob(os.path.join(root, "*", "healpix=*"))


if __name__ == "__main__":
    args, index, search_bin = binaries_samples_tmp()
    env = Env()
    env.index, env.search, env.samples, env.tmp = index, search_bin, args.samples, args.tmp
    sys.exit(run_cases(CASES, env, setup, only=os.environ.get("MMU_TEST_ONLY")))
