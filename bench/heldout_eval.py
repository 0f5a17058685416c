#!/usr/bin/python3
"""Held-out evaluation of a trained model against the PCA baseline on the same
objects: every object in the HEALPix cells training held out (train.json
val_cells). Same-class precision@10 among held-out objects; ridge redshift R²
fitted on the other cells' objects (sklearn RidgeCV, standardised), scored on
the held-out ones.
Usage: heldout_eval.py STORE MODEL_DIR TRUTH.csv SPACE...   (docs/BENCHMARKS.md, trained model)"""
import csv, json, sqlite3, sys
import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

store, model_dir, truth_csv = sys.argv[1:4]
cells = set(json.load(open(model_dir + "/train.json"))["val_cells"])
gen = store + "/" + open(store + "/CURRENT").read().strip()
db = sqlite3.connect(gen + "/catalog.sqlite")
truth = {(r["survey"], r["object_id"]): r for r in csv.DictReader(open(truth_csv))}
for sp in sys.argv[4:]:
    dim, count = db.execute("select dim, count from spaces where name=?", (sp,)).fetchone()
    v = np.fromfile(f"{gen}/spaces/{sp}/vectors.f32", dtype=np.float32).reshape(count, dim).astype(np.float64)
    meta = db.execute("select o.survey, o.object_id, o.healpix from space_rows s join objects o on o.row = s.row "
                      "where s.space=? order by s.vrow", (sp,)).fetchall()
    held = np.array([m[2] in cells for m in meta])
    cls = np.array([truth[(m[0], m[1])]["class"] for m in meta])
    z = np.array([float(truth[(m[0], m[1])]["redshift"]) for m in meta])
    h = v[held]
    s = h @ h.T
    np.fill_diagonal(s, -np.inf)
    nn = np.argpartition(-s, 10, axis=1)[:, :10]
    p10 = (cls[held][nn] == cls[held][:, None]).mean()
    sc = StandardScaler().fit(v[~held])
    r = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(sc.transform(v[~held]), z[~held])
    r2 = r.score(sc.transform(v[held]), z[held])
    print(f"{sp:22s} held-out objects {held.sum():5d}  same-class precision@10 {p10:.3f}  ridge redshift R2 {r2:.3f}")
