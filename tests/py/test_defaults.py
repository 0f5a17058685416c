#!/usr/bin/python3
"""End-to-end checks of the defaults a user gets without flags (issue 15, points 5-7):

  probe:  the task is inferred from the labels (0/1 flag and string classes:
          classification; real values: regression), the output says which and why,
          and --task still overrides;
  xmatch: a catalog matched with itself never pairs an object with itself;
          --all and nearest mode against a numpy haversine brute force over a
          fixture with planted duplicates, from files and from store surveys.

Usage: test_defaults.py --bin BUILD --tmp DIR
"""
import csv
import io
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmu_fixtures as mf  # noqa: E402
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402

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


if __name__ == "__main__":
    sys.exit(run_cases(cases, Env(), setup, only=os.environ.get("ONLY")))
