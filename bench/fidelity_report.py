"""Issue 15's fidelity report, before and after, as a markdown table for docs/BENCHMARKS.md:
  masked-twin top-1 and spectrum ridge redshift R^2   bench/fidelity_spectra.py
  same-class precision@10 per baseline space           every object of a samples store queried by brute force
                                                       over vectors.f32, classes from truth.csv
  ridge redshift R^2 of the image space                `mmu-search probe --target redshift` (its own protocol)
  light-curve class precision@10, padded vs unpadded   tests/py/test_lc_padding.py --figures
  rotated-copy top-1                                   bench/fidelity_images.py when it exists (else a note)
Run: /usr/bin/python3 bench/fidelity_report.py --before BIN_DIR --after BIN_DIR --tmp DIR [--n 600 --seed 3]
(BIN_DIR: a folder holding mmu-index and mmu-search.)
"""
import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "..", "tests", "py")
sys.path.insert(0, TESTS)
from test_export import load_space  # noqa: E402

PY = "/usr/bin/python3"


def sh(*cmd):
    return subprocess.run(list(cmd), check=True, capture_output=True, text=True).stdout


def precision_at_10(vecs, meta, cls):
    """Mean over objects with a class of the fraction of their 10 nearest others (cosine) of the same class."""
    keep = [i for i, m in enumerate(meta) if str(m[0]) in cls]
    v = vecs[keep].astype(np.float64)
    labels = np.array([cls[str(meta[i][0])] for i in keep])
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nn = np.argsort(-sims, axis=1)[:, :10]
    return float((labels[nn] == labels[:, None]).mean()), len(keep)


def samples_figures(bin_dir, data, store):
    """{space: (p@10, n)} and {space: ridge redshift R^2} on a store of every sample file."""
    shutil.rmtree(store, ignore_errors=True)
    sh(os.path.join(bin_dir, "mmu-index"), "build", data, "--store", store, "--quiet")
    truth = os.path.join(data, "truth.csv")
    cls = {r["object_id"]: r["class"] for r in csv.DictReader(open(truth))}
    prec, r2 = {}, {}
    for space in ("image", "spectrum"):
        vecs, meta, _ = load_space(store, space)
        prec[space] = precision_at_10(vecs, meta, cls)
        out = sh(os.path.join(bin_dir, "mmu-search"), "--store", store, "probe", "--space", space, "--target",
                 "redshift", "--labels", truth, "--format", "json")
        r2[space] = json.loads(out)["linear"]["r2"]
    return prec, r2


def lc_figures(bin_dir, tmp):
    """{store name: light-curve class p@10} of test_lc_padding.py's unpadded and padded copies."""
    out = sh(PY, os.path.join(TESTS, "test_lc_padding.py"), "--bin", bin_dir, "--tmp", tmp, "--figures")
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"precision@10 (\S+)\s+([0-9.]+)", out)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="folder of the mmu-index/mmu-search before issue 15")
    ap.add_argument("--after", required=True, help="folder of the new ones (a build folder)")
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    shutil.rmtree(a.tmp, ignore_errors=True)
    os.makedirs(a.tmp)
    bins = {"before": a.before, "after": a.after}
    rows = []  # (figure, before, after)

    # Spectra: fidelity_spectra.py generates the samples this report reuses.
    spec_tmp = os.path.join(a.tmp, "spectra")
    out = sh(PY, os.path.join(HERE, "fidelity_spectra.py"), "--before", a.before, "--after", a.after, "--tmp", spec_tmp,
             "--n", str(a.n), "--seed", str(a.seed))
    spec = {r["binary"]: r for r in map(json.loads, out.splitlines())}
    rows.append(("masked-twin top-1 (%d spectra)" % spec["after"]["twins"],
                 spec["before"]["masked_twin_top1"], spec["after"]["masked_twin_top1"]))

    data = os.path.join(spec_tmp, "samples")
    figs = {k: samples_figures(b, data, os.path.join(a.tmp, k + "-samples")) for k, b in bins.items()}
    for space in ("image", "spectrum"):
        rows.append(("same-class precision@10, %s (%d objects)" % (space, figs["after"][0][space][1]),
                     figs["before"][0][space][0], figs["after"][0][space][0]))
    for space in ("image", "spectrum"):
        rows.append(("ridge redshift R², %s (probe)" % space, figs["before"][1][space], figs["after"][1][space]))

    lc = {k: lc_figures(b, os.path.join(a.tmp, k + "-lc")) for k, b in bins.items()}
    for name in sorted(lc["after"]):
        rows.append(("light-curve class precision@10, %s" % name, lc["before"].get(name), lc["after"][name]))

    notes = []
    images = os.path.join(HERE, "fidelity_images.py")
    if os.path.exists(images):
        out = subprocess.run([PY, images, "--before", a.before, "--after", a.after, "--tmp",
                              os.path.join(a.tmp, "images")], capture_output=True, text=True)
        notes.append("bench/fidelity_images.py (exit %d):\n%s" % (out.returncode, (out.stdout + out.stderr).strip()))
    else:
        notes.append("rotated-copy top-1: skipped, bench/fidelity_images.py is absent")

    print("| figure | before | after |\n|---|---|---|")
    for name, before, after in rows:
        fmt = lambda x: "—" if x is None else "%.3f" % x  # noqa: E731
        print("| %s | %s | %s |" % (name, fmt(before), fmt(after)))
    for note in notes:
        print("\n" + note)


if __name__ == "__main__":
    main()
