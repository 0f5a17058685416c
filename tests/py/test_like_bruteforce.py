"""End-to-end check of `mmu-index build` + `mmu-search --like` against an
independent brute-force cosine search in numpy over the stored vectors, and of
build determinism. Run: test_like_bruteforce.py --bin BUILD --samples DIR --tmp DIR
"""
import glob
import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, binaries_samples_tmp  # noqa: E402
from space_reading import generation  # noqa: E402

CHECKS = Checks()
check = CHECKS.check


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_space(gen, name):
    db = sqlite3.connect(os.path.join(gen, "catalog.sqlite"))
    dim, count = db.execute("SELECT dim, count FROM spaces WHERE name=?", (name,)).fetchone()
    vecs = np.fromfile(os.path.join(gen, "spaces", name, "vectors.f32"), dtype=np.float32).reshape(count, dim)
    rows = db.execute(
        "SELECT s.vrow, s.row, o.object_id, o.survey FROM space_rows s JOIN objects o ON o.row = s.row "
        "WHERE s.space=? ORDER BY s.vrow", (name,)).fetchall()
    return vecs, rows


def brute_force(vecs, rows, qi, k):
    scores = vecs.astype(np.float64) @ vecs[qi].astype(np.float64)
    order = [i for i in np.argsort(-scores, kind="stable") if i != qi][:k]
    return [(rows[i][2], float(scores[i])) for i in order]


def compare(expected, got, label):
    check(len(expected) == len(got), f"{label}: {len(got)} results, expected {len(expected)}")
    for rank, ((eid, esc), g) in enumerate(zip(expected, got), start=1):
        ok_score = abs(esc - g["score"]) <= 1e-5
        check(ok_score, f"{label}: rank {rank} score {g['score']} vs brute force {esc}")
        # Exact ties may swap ids; anything else must agree.
        check(g["object_id"] == eid or (abs(esc - g["score"]) <= 1e-6 and ok_score),
              f"{label}: rank {rank} id {g['object_id']} vs brute force {eid}")
        check(g["rank"] == rank, f"{label}: rank field {g['rank']} != {rank}")


def hdf5_objects(samples):
    """Independent read of every (survey, object_id) -> (ra, dec, modality)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(samples, "**", "*.hdf5"), recursive=True)):
        survey = path.split(os.sep)[-4]
        with h5py.File(path, "r") as f:
            ids = f["object_id"][:]
            mod = "image" if "image_array" in f else ("spectrum" if "spectrum_flux" in f else "none")
            for i, raw in enumerate(ids):
                oid = raw.decode().rstrip("\0") if isinstance(raw, bytes) else str(int(raw))
                out[(survey, oid)] = (float(f["ra"][i]), float(f["dec"][i]), mod)
    return out


def main():
    a, index, search = binaries_samples_tmp()
    stores = [os.path.join(a.tmp, f"store{i}") for i in (1, 2)]
    for s in stores:
        run([index, "build", a.samples, "--store", s, "--quiet"])
    gens = [generation(s) for s in stores]

    # Determinism: the same input gives byte-identical vectors, fits and indexes.
    for name in ("image", "spectrum"):
        for fname in ("vectors.f32", "fit.bin", "index.faiss"):
            p1, p2 = (os.path.join(g, "spaces", name, fname) for g in gens)
            check(sha(p1) == sha(p2), f"{name}/{fname} differs between two builds of the same input")

    # The catalog matches an independent h5py read of the files.
    truth = hdf5_objects(a.samples)
    db = sqlite3.connect(os.path.join(gens[0], "catalog.sqlite"))
    cat = db.execute("SELECT object_id, survey, ra, dec, modality, healpix, hpx_fine, file_id FROM objects "
                     "ORDER BY row").fetchall()
    check(len(cat) == len(truth), f"catalog has {len(cat)} objects, files hold {len(truth)}")
    for oid, survey, ra, dec, mod, hp, fine, _ in cat:
        t = truth.get((survey, oid))
        check(t is not None, f"catalog object {survey}/{oid} not in the files")
        if t:
            check(abs(t[0] - ra) < 1e-9 and abs(t[1] - dec) < 1e-9 and t[2] == mod, f"{survey}/{oid} position/modality")
        check(fine >> 50 == hp, f"{survey}/{oid}: fine key not inside cell {hp}")
    # Rows of each partition (file) are sorted by the fine key.
    by_file = {}
    for row in cat:
        by_file.setdefault(row[7], []).append(row[6])
    for fid, keys in by_file.items():
        check(keys == sorted(keys), f"file {fid}: rows not in fine HEALPix order")

    # --like equals brute force, several queries in both spaces, several k.
    for name in ("image", "spectrum"):
        vecs, rows = load_space(gens[0], name)
        norms = np.linalg.norm(vecs, axis=1)
        check(np.all(np.abs(norms - 1) < 1e-5), f"{name}: vectors not L2-normalised")
        expected_n = sum(1 for v in truth.values() if v[2] == name)
        check(len(rows) == expected_n, f"{name}: {len(rows)} vectors, files hold {expected_n}")
        picks = sorted(set(np.linspace(0, len(rows) - 1, 6).astype(int)))
        for qi in picks:
            oid, survey = rows[qi][2], rows[qi][3]
            for k in (1, 10, 50):
                p = run([search, "--store", stores[0], "--like", oid, "--survey", survey, "--space", name,
                         "--k", str(k), "--format", "json"])
                got = json.loads(p.stdout)["results"]
                check(all(g["object_id"] != oid for g in got), f"{name}/{oid}: query object in its own result")
                compare(brute_force(vecs, rows, qi, k), got, f"{name}/{oid} k={k}")
            # CSV agrees with JSON.
            p = run([search, "--store", stores[0], "--like", oid, "--survey", survey, "--k", "5", "--format", "csv"])
            lines = p.stdout.strip().splitlines()
            check(lines[0] == "rank,object_id,survey,ra,dec,score", "csv header")
            exp = brute_force(vecs, rows, qi, 5)
            check([l.split(",")[1] for l in lines[1:]] == [e[0] for e in exp], f"{name}/{oid}: csv ids")

    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
