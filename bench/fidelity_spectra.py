"""Spectrum-baseline fidelity before/after (issue 15 point 3): masked-twin
top-1 (each DESI-like spectrum copied with a contiguous 30-60 % of pixels
masked and noise added at ivar; is its unmasked original the nearest other
vector?) and the ridge redshift R^2 of the spectrum space by the
`mmu-search probe` protocol (store of the originals only).
Run: /usr/bin/python3 bench/fidelity_spectra.py --before BIN_DIR --after BIN_DIR --tmp DIR [--n 600 --seed 3]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "py"))
from masked_twins import twin_top1, write_twins  # noqa: E402
from test_export import load_space  # noqa: E402


def build(bin_dir, roots, store):
    shutil.rmtree(store, ignore_errors=True)
    subprocess.run([os.path.join(bin_dir, "mmu-index"), "build", *roots, "--store", store, "--quiet"], check=True)


def redshift_r2(bin_dir, store, truth):
    out = subprocess.run([os.path.join(bin_dir, "mmu-search"), "--store", store, "probe", "--space", "spectrum",
                          "--target", "redshift", "--labels", truth, "--format", "json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["linear"]["r2"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="build folder of the old mmu-index/mmu-search")
    ap.add_argument("--after", required=True, help="build folder of the new ones")
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    shutil.rmtree(a.tmp, ignore_errors=True)
    data, twins = os.path.join(a.tmp, "samples"), os.path.join(a.tmp, "twins")
    subprocess.run(["/usr/bin/python3", os.path.join(HERE, "..", "tools", "make_samples.py"), "--out", data,
                    "--n", str(a.n), "--seed", str(a.seed)], check=True, capture_output=True)
    pairs = write_twins(data, twins)
    for label, bin_dir in (("before", a.before), ("after", a.after)):
        store = os.path.join(a.tmp, label + "-twins")
        build(bin_dir, [os.path.join(data, "desi"), twins], store)
        vecs, meta, _ = load_space(store, "spectrum")
        top1, n = twin_top1(vecs, meta, pairs)
        store = os.path.join(a.tmp, label + "-originals")
        build(bin_dir, [os.path.join(data, "desi")], store)
        r2 = redshift_r2(bin_dir, store, os.path.join(data, "truth.csv"))
        print(json.dumps({"binary": label, "twins": n, "masked_twin_top1": round(top1, 4),
                          "redshift_ridge_r2": round(r2, 4)}), flush=True)


if __name__ == "__main__":
    main()
