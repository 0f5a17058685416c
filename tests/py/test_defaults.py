#!/usr/bin/python3
"""End-to-end checks of the defaults a user gets without flags (issue 15, points 5-7):

  probe:  the task is inferred from the labels (0/1 flag and string classes:
          classification; real values: regression), the output says which and why,
          and --task still overrides;
  xmatch: a catalog matched with itself never pairs an object with itself;
          --all and nearest mode against a numpy haversine brute force over a
          fixture with planted duplicates, from files and from store surveys;
  default space: with a baseline and a model space of one modality, --like
          without --space searches the recorded default (the new model space),
          says so, and equals a numpy brute force over that space's vectors;
          `mmu-index default-space` changes it, rebuilds keep the choice,
          --space overrides, a store without the record falls back to the rule.

Usage: test_defaults.py --bin BUILD --tmp DIR
"""
import csv
import io
import json
import os
import sqlite3
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmu_fixtures as mf  # noqa: E402
import model_fixtures as mfx  # noqa: E402
import package_model  # noqa: E402  (tools/, on the path through mmu_fixtures)
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402
from space_reading import brute, load_space  # noqa: E402

cases, case = case_list()
N_PER_CELL = 12  # two cells: enough for a 2-fold probe grouped by cell


def spectra(seed, box, cell, id_base):
    d = mf.spectrum_datasets(N_PER_CELL, seed=seed, box=box, cell=cell, length=400,
                             ids=mf.spectrum_ids(N_PER_CELL, base=id_base))
    ra, dec = d["ra"], d["dec"]
    # Planted duplicates: 1 and 2 within 0.5" of 0 (1 nearer), 5 at 0.8" of 4.
    for k, (src, dra, ddec) in {1: (0, 0.3, 0.0), 2: (0, 0.0, -0.45), 5: (4, 0.5, 0.6)}.items():
        ra[k] = ra[src] + dra / 3600 / np.cos(np.radians(dec[src]))
        dec[k] = dec[src] + ddec / 3600
    rng = np.random.default_rng(seed)
    flag = np.arange(N_PER_CELL) % 2
    d["flag"] = flag.astype(np.int64)
    d["kind"] = np.array([b"spiral" if f else b"elliptical" for f in flag], dtype="S16")
    d["mass"] = rng.normal(10.0, 0.5, N_PER_CELL)
    # Labels the embeddings carry: a class in the continuum slope, a mass in the level.
    d["spectrum_flux"] += (flag[:, None] * 2.0 + d["mass"][:, None]).astype(np.float32)
    return d


def setup(env):
    a, env.index, env.search = binaries_samples_tmp(inputs=())
    env.tmp = a.tmp
    env.root = os.path.join(a.tmp, "mmu")
    survey = mf.SPECTRUM_SURVEY
    files = [mf.write_mmu_file(mf.mmu_path(env.root, survey, mf.CELL), spectra(2, mf.CELL_BOX, mf.CELL, 39627000000000000)),
             mf.write_mmu_file(mf.mmu_path(env.root, survey, mf.OTHER_CELL),
                               spectra(3, mf.OTHER_CELL_BOX, mf.OTHER_CELL, 39628000000000000))]
    env.ids, env.ra, env.dec = [], [], []
    import h5py
    for path in files:
        with h5py.File(path, "r") as f:
            env.ids += [str(int(v)) for v in f["object_id"][:]]
            env.ra += list(f["ra"][:])
            env.dec += list(f["dec"][:])
    env.ra, env.dec = np.radians(env.ra), np.radians(env.dec)
    env.store = os.path.join(a.tmp, "store")
    run(env.index, "build", env.root, "--store", env.store, "--quiet")


def brute_force_self(env, radius, all_pairs):
    """Every (left, right, sep) within radius of a different object, numpy haversine."""
    ra, dec = env.ra, env.dec
    h = np.sin((dec[None, :] - dec[:, None]) / 2) ** 2 + \
        np.cos(dec[:, None]) * np.cos(dec[None, :]) * np.sin((ra[None, :] - ra[:, None]) / 2) ** 2
    sep = np.degrees(2 * np.arcsin(np.sqrt(np.minimum(1, h)))) * 3600
    np.fill_diagonal(sep, np.inf)
    want = []
    for i in range(len(ra)):
        js = [j for j in np.argsort(sep[i], kind="stable") if sep[i, j] <= radius]
        want += [(env.ids[i], env.ids[j], sep[i, j]) for j in (js if all_pairs else js[:1])]
    return want


@case("xmatch of a catalog with itself skips self-pairs (files and store, --all and nearest)")
def _(env):
    folder = os.path.join(env.root, mf.SPECTRUM_SURVEY[0])
    for radius in (0.5, 1.0, 3600.0):
        for extra in ([], ["--all"]):
            want = brute_force_self(env, radius, bool(extra))
            need(len(want) > 0, "the fixture plants duplicates within %g arcsec" % radius)
            for left, right in ((folder, folder), ("desi", "desi"), (env.store, env.store)):
                p = run(env.index, "xmatch", "--left", left, "--right", right, "--radius", "%garcsec" % radius,
                        "--format", "csv", "--store", env.store, *extra)
                got = [(r["left_id"], r["right_id"], float(r["sep_arcsec"])) for r in csv.DictReader(io.StringIO(p.stdout))]
                need(all(g[0] != g[1] for g in got), "%s %g %s: an object paired with itself" % (left, radius, extra))
                need(sorted((g[0], g[1]) for g in got) == sorted((w[0], w[1]) for w in want),
                     "%s %g %s: %d pairs, brute force %d" % (left, radius, extra, len(got), len(want)))
                wsep = {(w[0], w[1]): w[2] for w in want}
                need(all(abs(g[2] - wsep[(g[0], g[1])]) < 1e-5 for g in got), "%s %g: separations" % (left, radius))
                need("not paired with itself" in p.stderr, "the skip is said: %r" % p.stderr)


def probe(env, target, *extra):
    return run(env.search, "probe", "--store", env.store, "--space", "spectrum", "--target", target,
               "--folds", "2", *extra)


@case("probe infers classification for a 0/1 flag and string classes, regression for real values, and says why")
def _(env):
    for target, task, words in (("flag", "classification", ["integers", "2 distinct values"]),
                                ("kind", "classification", ["not all numbers"]),
                                ("mass", "regression", ["not all integers"])):
        p = probe(env, target)
        line = [l for l in p.stdout.splitlines() if l.startswith("task ")]
        need(line and line[0].startswith("task %s: " % task) and all(w in line[0] for w in words) and
             "--task regression|classification" in line[0], "%s: task line %r" % (target, line))
        j = json.loads(probe(env, target, "--format", "json").stdout)
        need(j["task"] == task and all(w in j["task_reason"] for w in words), "%s: json %s / %s" %
             (target, j["task"], j["task_reason"]))
        if task == "classification":
            need(sorted(j["classes"]) == (["0", "1"] if target == "flag" else ["elliptical", "spiral"]),
                 "%s: classes %s" % (target, j["classes"]))
    # --task still overrides, and says so.
    j = json.loads(probe(env, "flag", "--task", "regression", "--format", "json").stdout)
    need(j["task"] == "regression" and "--task" in j["task_reason"], "override: %s" % j["task_reason"])


def like(env, store, *extra):
    p = run(env.search, "--store", store, "--like", "LS-000001", "--k", "3", *extra)
    table = run(env.search, "--store", store, "--like", "LS-000001", "--k", "3", "--format", "table", *extra).stdout
    j = json.loads(run(env.search, "--store", store, "--like", "LS-000001", "--k", "3", "--format", "json", *extra).stdout)
    return (j[0] if isinstance(j, list) else j), table.splitlines()[0], p


def defaults_listed(env, store):
    """{space: default column} of --list-spaces."""
    lines = run(env.search, "--store", store, "--list-spaces").stdout.splitlines()
    col = lines[0].index("default")
    return {l.split()[0]: l[col:].strip() for l in lines[1:]}


def catalog(store):
    gen = open(os.path.join(store, "CURRENT")).read().strip()
    return os.path.join(store, gen, "catalog.sqlite")


@case("default space: --like without --space uses the modality's recorded default, says so; default-space, rebuilds, --space")
def _(env):
    root = os.path.join(env.tmp, "images")
    mf.write_mmu_file(mf.mmu_path(root, mf.IMAGE_SURVEY), mf.image_datasets(8))
    pkg = os.path.join(env.tmp, "aion")
    package_model.package(mfx.tiny_aion_model(os.path.join(env.tmp, "aion_tmp", "model.pt")), pkg, "tiny-aion-test",
                          "1", "image", "aion-image", [4, 96, 96], 16, license="test model", citation="none")
    store = os.path.join(env.tmp, "image_store")
    run(env.index, "build", root, "--store", store, "--quiet")
    j, head, _ = like(env, store)
    need(j["space"] == "image" and not j["space_is_default"] and "default" not in head,
         "one space: no default needed (%s, %r)" % (j["space"], head))
    run(env.index, "build", root, "--store", store, "--quiet", "--model", pkg)
    model = "tiny-aion-test@1"

    # The new model space is the default: used, named, and the search is right.
    j, head, _ = like(env, store)
    need(j["space"] == model and j["space_is_default"], "default: %s %s" % (j["space"], j["space_is_default"]))
    need(("in space " + model) in head and "default space" in head and "--space" in head, "header: %r" % head)
    vecs, meta = load_space(store, model)
    q = vecs[[m[0] for m in meta].index("LS-000001")]
    want = brute(vecs, meta, q / np.linalg.norm(q), 3, exclude=("LS-000001",))
    got = [(n["object_id"], n["score"]) for n in j["results"]]
    need([g[0] for g in got] == [w[0] for w in want] and all(abs(g[1] - w[1]) < 1e-5 for g, w in zip(got, want)),
         "neighbours %s, brute force %s" % (got, want))
    need(defaults_listed(env, store) == {"image": "-", model: "yes"}, "list: %s" % defaults_listed(env, store))
    p = run(env.index, "default-space", "--store", store)
    need(p.stdout.strip() == "image: %s (newest model space, else the baseline)" % model, "shown: %r" % p.stdout)

    # --space overrides without touching the default.
    j, head, _ = like(env, store, "--space", "image")
    need(j["space"] == "image" and not j["space_is_default"] and "default" not in head, "--space image: %s" % j["space"])

    # The user's choice, recorded, and kept by rebuilds with and without the model.
    run(env.index, "default-space", "--store", store, "--modality", "image", "--space", "image")
    j, head, _ = like(env, store)
    need(j["space"] == "image" and j["space_is_default"] and "in space image (" in head, "chosen: %s %r" % (j["space"], head))
    need(defaults_listed(env, store) == {"image": "yes (chosen)", model: "-"}, "list: %s" % defaults_listed(env, store))
    for extra in (["--model", pkg], []):
        run(env.index, "build", root, "--store", store, "--quiet", *extra)
        j, _, _ = like(env, store)
        need(j["space"] == "image", "rebuild %s lost the choice: %s" % (extra, j["space"]))
    j, _, _ = like(env, store, "--space", model)
    need(j["space"] == model and not j["space_is_default"], "--space model: %s" % j["space"])

    # A store written before defaults were recorded: the same rule, newest model space.
    db = sqlite3.connect(catalog(store))
    db.execute("DELETE FROM meta WHERE key LIKE 'default_space%'")
    db.commit()
    db.close()
    j, _, _ = like(env, store)
    need(j["space"] == model and j["space_is_default"], "no record: %s" % j["space"])

    # Refused, naming what is wrong, with the store unchanged.
    for args, words in ((["--space", "nosuch"], ["nosuch"]), (["--modality", "spectrum", "--space", "image"], ["spectrum", "image"])):
        p = run(env.index, "default-space", "--store", store, *args, ok=False)
        need(p.returncode == 1 and all(w in p.stderr for w in words), "%s: rc %d %r" % (args, p.returncode, p.stderr))
    p = run(env.index, "default-space", "--store", os.path.join(env.tmp, "nostore"), "--space", "image", ok=False)
    need(p.returncode == 1 and "nostore" in p.stderr and not os.path.exists(os.path.join(env.tmp, "nostore")),
         "no store: %r" % p.stderr)
    j, _, _ = like(env, store)
    need(j["space"] == model, "after refusals: %s" % j["space"])


if __name__ == "__main__":
    sys.exit(run_cases(cases, Env(), setup, only=os.environ.get("ONLY")))
