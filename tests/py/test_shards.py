#!/usr/bin/env python3
"""Issue 18, sharded builds: `mmu-index fit` writes one baseline fit per space from a seeded sample of
HEALPix cells (the rule recomputed here), and `mmu-index build --fit F --shard I/N` stores exactly the
files of the cells c with c mod N == I, projected with that fit: the 4 shard stores hold every object
once, with vectors bit-equal to a single-process build with the same fit. Bad input fails by name."""
import hashlib
import json
import os
import shutil
import sqlite3
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402
from space_reading import generation  # noqa: E402

CASES, case = case_list()
SHARDS = 4
SAMPLE_CELLS = 5
SEED = 7
MASK = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def expected_sample(cells, count, seed):
    """The documented rule: the `count` cells with the smallest splitmix64(seed + splitmix64(cell))."""
    ranked = sorted(cells, key=lambda c: splitmix64((seed + splitmix64(c)) & MASK))
    return sorted(ranked[:count])


def read_store(store):
    """{space: {(survey, object_id): vector bytes}}, {space: sha256}, [file paths], [(survey, id)]."""
    gen = generation(store)
    db = sqlite3.connect(os.path.join(gen, "catalog.sqlite"))
    spaces, shas = {}, {}
    for name, dim, count, sha in db.execute("SELECT name, dim, count, sha256 FROM spaces"):
        vecs = np.fromfile(os.path.join(gen, "spaces", name, "vectors.f32"), dtype=np.float32).reshape(count, dim)
        keys = db.execute("SELECT o.survey, o.object_id FROM space_rows s JOIN objects o ON o.row = s.row "
                          "WHERE s.space=? ORDER BY s.vrow", (name,)).fetchall()
        spaces[name] = {k: vecs[i].tobytes() for i, k in enumerate(keys)}
        shas[name] = sha
    files = [r[0] for r in db.execute("SELECT path FROM files")]
    objects = db.execute("SELECT survey, object_id FROM objects").fetchall()
    db.close()
    return spaces, shas, files, objects


def cell_of(path):
    return int(os.path.basename(os.path.dirname(path)).split("=")[1])


def sample_files(env):
    out = []
    for dirpath, _, names in os.walk(env.samples):
        out += [os.path.join(dirpath, n) for n in names if n.endswith(".hdf5")]
    return sorted(out)


def setup(env):
    env.fit = os.path.join(env.tmp, "fit")
    run(env.index, "fit", env.samples, "--out", env.fit, "--sample-cells", SAMPLE_CELLS, "--seed", SEED, "--quiet")
    env.manifest = json.load(open(os.path.join(env.fit, "fit.json")))
    env.all = os.path.join(env.tmp, "all")
    run(env.index, "build", env.samples, "--store", env.all, "--fit", env.fit, "--quiet")
    env.shards = []
    for i in range(SHARDS):
        s = os.path.join(env.tmp, "shard%d" % i)
        run(env.index, "build", env.samples, "--store", s, "--fit", env.fit, "--shard", "%d/%d" % (i, SHARDS), "--quiet")
        env.shards.append(s)
    env.merged = os.path.join(env.tmp, "merged")
    run(env.index, "merge", *env.shards, "--store", env.merged, "--quiet")


@case("fit: the sampled cells follow the documented seeded rule, per space; fit.bin matches its SHA-256")
def _(env):
    files = sample_files(env)
    need(env.manifest["seed"] == SEED and env.manifest["sample_cells"] == SAMPLE_CELLS, "seed/sample not recorded")
    spaces = {s["name"]: s for s in env.manifest["spaces"]}
    need(len(spaces) >= 2, "expected an image and a spectrum space, got %s" % sorted(spaces))
    for name, s in spaces.items():
        survey_files = [f for f in files if os.path.abspath(f) in {os.path.abspath(p) for p in s["files"]}]
        need(survey_files, "space %s: no file recorded" % name)
        survey_dir = os.path.dirname(os.path.dirname(os.path.dirname(survey_files[0])))
        cells = {cell_of(f) for f in files if f.startswith(survey_dir + os.sep)}
        need(s["cells_available"] == len(cells), "space %s: %d cells available, counted %d" %
             (name, s["cells_available"], len(cells)))
        want = expected_sample(cells, SAMPLE_CELLS, SEED)
        need(s["cells"] == want, "space %s: sampled cells %s, the rule gives %s" % (name, s["cells"], want))
        need(sorted(cell_of(f) for f in s["files"]) == want, "space %s: files read %s" % (name, s["files"]))
        blob = open(os.path.join(env.fit, name, "fit.bin"), "rb").read()
        need(hashlib.sha256(blob).hexdigest() == s["sha256"], "space %s: fit.bin does not match its SHA-256" % name)


@case("fit: the same seed gives the same bytes; another seed another sample")
def _(env):
    again = os.path.join(env.tmp, "fit-again")
    run(env.index, "fit", env.samples, "--out", again, "--sample-cells", SAMPLE_CELLS, "--seed", SEED, "--quiet")
    for s in env.manifest["spaces"]:
        a = open(os.path.join(env.fit, s["name"], "fit.bin"), "rb").read()
        b = open(os.path.join(again, s["name"], "fit.bin"), "rb").read()
        need(a == b, "space %s: refit with the same seed gave other bytes" % s["name"])
    other = os.path.join(env.tmp, "fit-other")
    run(env.index, "fit", env.samples, "--out", other, "--sample-cells", SAMPLE_CELLS, "--seed", SEED + 1, "--quiet")
    m = json.load(open(os.path.join(other, "fit.json")))
    need(any(a["cells"] != b["cells"] for a, b in zip(env.manifest["spaces"], m["spaces"])),
         "seeds %d and %d sampled the same cells in every space" % (SEED, SEED + 1))


@case("build --fit: each space records the fit's SHA-256 and its fit.bin is the fit's")
def _(env):
    want = {s["name"]: s["sha256"] for s in env.manifest["spaces"]}
    for store in [env.all] + env.shards:
        _, shas, _, _ = read_store(store)
        need(shas == want, "%s: spaces made by %s, the fit has %s" % (store, shas, want))
        for name, sha in want.items():
            blob = open(os.path.join(generation(store), "spaces", name, "fit.bin"), "rb").read()
            need(hashlib.sha256(blob).hexdigest() == sha, "%s: space %s keeps another fit.bin" % (store, name))


@case("shards: shard I holds exactly the files of cells c mod 4 == I, every object once")
def _(env):
    all_spaces, _, all_files, all_objects = read_store(env.all)
    need(len(all_files) == len(sample_files(env)), "the single build did not read every file")
    seen = []
    for i, store in enumerate(env.shards):
        _, _, files, objects = read_store(store)
        need(files and all(cell_of(f) % SHARDS == i for f in files), "shard %d holds files of other cells" % i)
        need(len(files) == sum(1 for f in all_files if cell_of(f) % SHARDS == i), "shard %d misses files" % i)
        seen += objects
    need(len(seen) == len(set(seen)), "an object is in two shards")
    need(sorted(seen) == sorted(all_objects), "the shards' objects are not the single build's")


@case("shards: vectors bit-equal to the single-process build with the same fit")
def _(env):
    all_spaces, _, _, _ = read_store(env.all)
    merged = {}
    for store in env.shards:
        spaces, _, _, _ = read_store(store)
        for name, vecs in spaces.items():
            merged.setdefault(name, {}).update(vecs)
    need(sorted(merged) == sorted(all_spaces), "spaces differ: %s vs %s" % (sorted(merged), sorted(all_spaces)))
    for name in all_spaces:
        need(merged[name].keys() == all_spaces[name].keys(), "space %s: other objects" % name)
        diff = [k for k in all_spaces[name] if merged[name][k] != all_spaces[name][k]]
        need(not diff, "space %s: %d of %d vectors differ, e.g. %s" % (name, len(diff), len(all_spaces[name]), diff[:2]))


@case("--cells takes exactly the listed cells")
def _(env):
    store = os.path.join(env.tmp, "cells")
    run(env.index, "build", env.samples, "--store", store, "--fit", env.fit, "--cells", "11-14,1226", "--quiet")
    _, _, files, _ = read_store(store)
    want = sorted(f for f in sample_files(env) if cell_of(f) in (11, 12, 13, 14, 1226))
    need(sorted(os.path.abspath(f) for f in files) == [os.path.abspath(f) for f in want],
         "--cells 11-14,1226 stored %s" % sorted(files))


def catalog(store):
    """[(survey, object_id, ra, dec, healpix)] in row order."""
    db = sqlite3.connect(os.path.join(generation(store), "catalog.sqlite"))
    out = db.execute("SELECT survey, object_id, ra, dec, healpix FROM objects ORDER BY row").fetchall()
    db.close()
    return out


@case("merge: rows in shard order, the same ids and positions and bit-equal vectors as one build")
def _(env):
    want = []
    for store in env.shards:
        want += catalog(store)
    got = catalog(env.merged)
    need(got == want, "the merged catalogue is not the shards' catalogues in the order given")
    need(sorted(got) == sorted(catalog(env.all)), "the merged store's ids/positions differ from the single build's")
    merged_spaces, shas, files, _ = read_store(env.merged)
    all_spaces, all_shas, all_files, _ = read_store(env.all)
    need(shas == all_shas, "merged spaces made by %s, the single build's by %s" % (shas, all_shas))
    need(sorted(files) == sorted(all_files), "the merged files table differs from the single build's")
    for name in all_spaces:
        need(merged_spaces[name] == all_spaces[name], "space %s: merged vectors differ from the single build's" % name)
    db = sqlite3.connect(os.path.join(generation(env.merged), "catalog.sqlite"))
    merged_from = json.loads(db.execute("SELECT value FROM meta WHERE key='merged_from'").fetchone()[0])
    need([m["store"] for m in merged_from] == [os.path.realpath(s) for s in env.shards], "merged_from: %s" % merged_from)
    values = db.execute("SELECT count(*) FROM object_values").fetchone()[0]
    db.close()
    db = sqlite3.connect(os.path.join(generation(env.all), "catalog.sqlite"))
    need(values == db.execute("SELECT count(*) FROM object_values").fetchone()[0], "catalogue columns lost")
    db.close()


def answers(env, store, ids):
    """Per query: [(object_id, score)] of `--like ID --k 10 --format json`."""
    out = []
    for q in ids:
        j = json.loads(run(env.search, "--store", store, "--like", q, "--k", 10, "--format", "json").stdout)
        out.append(j)
    return out


@case("merge: the same --like answers as the single build for 100 queries")
def _(env):
    rows = catalog(env.all)
    ids = [r[1] for r in rows[:: max(1, len(rows) // 100)]][:100]
    need(len(ids) == min(100, len(rows)), "too few objects for the queries")
    a, b = answers(env, env.merged, ids), answers(env, env.all, ids)
    for q, x, y in zip(ids, a, b):
        need(strip_rows(x) == strip_rows(y), "--like %s: merged %s, single %s" % (q, strip_rows(x), strip_rows(y)))


def strip_rows(j):
    """A JSON answer without store rows (which differ by the order of the files), ties sorted by id."""
    if isinstance(j, dict):
        return {k: strip_rows(v) for k, v in j.items() if k not in ("row", "store", "took_ms", "seconds")}
    if isinstance(j, list):
        return [strip_rows(v) for v in j]
    return j


def refused(env, args, words):
    p = run(env.index, *args, ok=False)
    need(0 < p.returncode < 70, "%s: exit %d, expected a clean refusal:\n%s" % (args, p.returncode, p.stderr))
    for w in words:
        need(w in p.stderr, "%s: the error does not say %r:\n%s" % (args, w, p.stderr))
    return p


@case("bad input: a shard without --fit, a malformed shard, an empty shard, a damaged fit are refused by name")
def _(env):
    store = os.path.join(env.tmp, "bad")
    refused(env, ["build", env.samples, "--store", store, "--shard", "0/4", "--quiet"], ["--fit", "hdf5"])
    for bad in ("4/4", "1", "-1/4", "a/b", "0/0"):
        refused(env, ["build", env.samples, "--store", store, "--fit", env.fit, "--shard", bad, "--quiet"],
                ["--shard", bad])
    refused(env, ["build", env.samples, "--store", store, "--fit", env.fit, "--cells", "1-x", "--quiet"], ["--cells"])
    refused(env, ["build", env.samples, "--store", store, "--fit", env.fit, "--shard", "0/3000", "--quiet"],
            ["shard 0/3000", "nothing to build"])
    refused(env, ["build", env.samples, "--store", store, "--fit", os.path.join(env.tmp, "nofit"), "--quiet"],
            ["nofit", "fit.json"])
    damaged = os.path.join(env.tmp, "fit-damaged")
    run(env.index, "fit", env.samples, "--out", damaged, "--sample-cells", 2, "--quiet")
    name = json.load(open(os.path.join(damaged, "fit.json")))["spaces"][0]["name"]
    blob = os.path.join(damaged, name, "fit.bin")
    data = bytearray(open(blob, "rb").read())
    data[-1] ^= 1
    open(blob, "wb").write(bytes(data))
    refused(env, ["build", env.samples, "--store", store, "--fit", damaged, "--quiet"], [blob, "SHA-256"])
    need(not os.path.exists(os.path.join(store, "CURRENT")), "a refused build left a store")
    notfit = os.path.join(env.tmp, "notfit")
    os.makedirs(notfit)
    open(os.path.join(notfit, "keep.txt"), "w").write("mine")
    refused(env, ["fit", env.samples, "--out", notfit, "--quiet"], ["not a fit folder"])
    need(open(os.path.join(notfit, "keep.txt")).read() == "mine", "fit replaced a folder that was not a fit")


@case("merge refuses overlapping shards, a missing shard, shards of different fits; the target stays as it was")
def _(env):
    target = os.path.join(env.tmp, "merge-bad")
    run(env.index, "merge", env.shards[0], "--store", target, "--quiet")
    current = open(os.path.join(target, "CURRENT")).read()
    refused(env, ["merge", env.shards[0], env.shards[1], env.shards[0], "--store", target], [env.shards[0], "twice"])
    overlap = os.path.join(env.tmp, "overlap")
    run(env.index, "build", env.samples, "--store", overlap, "--fit", env.fit, "--cells", "12", "--quiet")
    holder = env.shards[12 % SHARDS]
    refused(env, ["merge", holder, overlap, "--store", target], [holder, overlap, "overlap"])
    copy = os.path.join(env.tmp, "copy", "desi", "edr_sv3", "healpix=12", "001-of-001.hdf5")
    os.makedirs(os.path.dirname(copy))
    shutil.copy(os.path.join(env.samples, "desi", "edr_sv3", "healpix=12", "001-of-001.hdf5"), copy)
    same_ids = os.path.join(env.tmp, "same-ids")
    run(env.index, "build", os.path.join(env.tmp, "copy"), "--store", same_ids, "--fit", env.fit, "--quiet")
    refused(env, ["merge", holder, same_ids, "--store", target], [holder, same_ids, "object '", "desi", "overlap"])
    missing = os.path.join(env.tmp, "no-such-shard")
    refused(env, ["merge", env.shards[0], missing, "--store", target], [missing])
    other_fit = os.path.join(env.tmp, "fit-other")
    if not os.path.exists(other_fit):
        run(env.index, "fit", env.samples, "--out", other_fit, "--seed", SEED + 1, "--sample-cells", SAMPLE_CELLS, "--quiet")
    other = os.path.join(env.tmp, "shard1-other-fit")
    run(env.index, "build", env.samples, "--store", other, "--fit", other_fit, "--shard", "1/%d" % SHARDS, "--quiet")
    refused(env, ["merge", env.shards[0], other, "--store", target], [env.shards[0], other, "different fits"])
    need(open(os.path.join(target, "CURRENT")).read() == current, "a refused merge changed the target's CURRENT")
    need(not [n for n in os.listdir(target) if n.endswith(".tmp")], "a refused merge left an unfinished generation")
    need(catalog(target) == catalog(env.shards[0]), "a refused merge changed the target")


def default_spaces(env, store):
    """`mmu-index default-space` of a store: {modality: (space, chosen)}."""
    out = {}
    for line in run(env.index, "default-space", "--store", store).stdout.splitlines():
        modality, rest = line.split(": ", 1)
        out[modality] = (rest.split(" (")[0], rest.endswith("(chosen)"))
    return out


@case("merge keeps a default space chosen in the shards; unchosen stays the rule's")
def _(env):
    plain = default_spaces(env, env.merged)
    need(plain and not any(c for _, c in plain.values()), "merge of unchosen shards says chosen: %s" % plain)
    image = [m for m in plain if m == "image"]
    need(image, "the sample store has no image space: %s" % plain)
    copies = []
    for i in (0, 1):
        c = os.path.join(env.tmp, "chosen-shard%d" % i)
        shutil.copytree(env.shards[i], c, symlinks=True)
        copies.append(c)
    # One shard chooses, the other leaves the rule: the choice is kept.
    run(env.index, "default-space", "--store", copies[0], "--space", plain["image"][0])
    target = os.path.join(env.tmp, "merged-chosen")
    run(env.index, "merge", *copies, "--store", target, "--quiet")
    got = default_spaces(env, target)
    need(got["image"] == (plain["image"][0], True), "merged default image space %s, the shard chose %s" %
         (got["image"], plain["image"][0]))
    need(all(not c for m, (_, c) in got.items() if m != "image"), "an unchosen modality became chosen: %s" % got)


def main():
    args, index, search = binaries_samples_tmp()
    env = type("Env", (), {})()
    env.index, env.search, env.samples, env.tmp = index, search, os.path.abspath(args.samples), args.tmp
    return run_cases(CASES, env, setup)


if __name__ == "__main__":
    sys.exit(main())
