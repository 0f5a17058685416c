"""Image-baseline fidelity before/after (issue 15 point 4): rotated-copy top-1
(each of the first --originals sample images stored with its 7 non-trivial
90-degree/flip copies and one arbitrary-angle bilinear rotation; is the
nearest original of each copy its own?) and same-class precision@10 of the
image space (every image of the samples a query, its 10 nearest others by
brute force over vectors.f32; classes from truth.csv), on a store of the
samples' images alone and among the originals of the copies' store.
Run: /usr/bin/python3 bench/fidelity_images.py --before BIN_DIR --after BIN_DIR --tmp DIR [--n 600 --seed 3]
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "py"))
from rotated_copies import copy_top1, write_copies  # noqa: E402
from test_export import load_space  # noqa: E402
from test_rotation import same_class_p10  # noqa: E402


def build(bin_dir, roots, store):
    shutil.rmtree(store, ignore_errors=True)
    subprocess.run([os.path.join(bin_dir, "mmu-index"), "build", *roots, "--store", store, "--quiet"], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="folder of the old mmu-index/mmu-search")
    ap.add_argument("--after", required=True, help="folder of the new ones")
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--n", type=int, default=600, help="galaxies generated (about 60 %% have an image)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--originals", type=int, default=200)
    a = ap.parse_args()
    shutil.rmtree(a.tmp, ignore_errors=True)
    data, copies = os.path.join(a.tmp, "samples"), os.path.join(a.tmp, "copies")
    subprocess.run(["/usr/bin/python3", os.path.join(HERE, "..", "tools", "make_samples.py"), "--out", data,
                    "--n", str(a.n), "--seed", str(a.seed)], check=True, capture_output=True)
    pairs = write_copies(data, copies, n_max=a.originals)
    originals = sorted({o for o, _ in pairs.values()})
    with open(os.path.join(data, "truth.csv")) as f:
        classes = {r["object_id"]: r["class"] for r in csv.DictReader(f) if r["survey"] == "legacysurvey"}
    for label, bin_dir in (("before", a.before), ("after", a.after)):
        store = os.path.join(a.tmp, label + "-copies")
        build(bin_dir, [os.path.join(copies, "originals"), os.path.join(copies, "copies")], store)
        vecs, meta, _ = load_space(store, "image")
        top1 = copy_top1(vecs, meta, pairs)
        p10_originals = same_class_p10(vecs, meta, classes, originals)
        store = os.path.join(a.tmp, label + "-samples")
        build(bin_dir, [os.path.join(data, "legacysurvey")], store)
        vecs, meta, _ = load_space(store, "image")
        p10 = same_class_p10(vecs, meta, classes, [m[0] for m in meta])
        print(json.dumps({"binary": label, "originals": len(originals),
                          "dihedral_top1": round(top1["dihedral"][0], 4), "dihedral_copies": top1["dihedral"][1],
                          "angle_top1": round(top1["angle"][0], 4), "angle_copies": top1["angle"][1],
                          "p10_originals": round(p10_originals, 4), "images": len(meta),
                          "p10_samples": round(p10, 4)}), flush=True)


if __name__ == "__main__":
    main()
