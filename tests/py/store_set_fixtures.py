"""Fixtures for test_store_set.py and test_mpi.py: a set of stores that share
one fit, and the independent answer a merged store must give.

Twin stores: copies of data/samples whose object ids carry a suffix (_s0, _s1,
...) and whose file names a prefix, each built alone. Identical pixels and
spectra give each store the same PCA fit (fit.bin bit-equal, checked) and the
same vectors, so every object has a twin of exactly equal score in every other
store: the hardest case for the tie rule (the earlier store first).
"""
import glob
import hashlib
import os
import shutil
import sqlite3
import subprocess

import h5py
import numpy as np

from space_reading import generation  # noqa: E402 (tests/py is on the path of every importer)


def twin_root(samples, root, i, prefix=None):
    """Copy of samples under root: ids + '_s<i>' (text) or + (i+1)*10**15 (integers), files '<prefix>-NAME'
    (prefix 's<i>' unless given)."""
    for src in sorted(glob.glob(os.path.join(samples, "*", "*", "healpix=*", "*.hdf5"))):
        rel = os.path.relpath(src, samples)
        dst = os.path.join(root, os.path.dirname(rel), "%s-%s" % (prefix or "s%d" % i, os.path.basename(rel)))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(src, dst)
        with h5py.File(dst, "r+") as h:
            ids = h["object_id"][:]
            if ids.dtype.kind in "iu":
                new = ids + (i + 1) * 10**15
            else:
                new = np.array([(x.decode().rstrip("\0") + "_s%d" % i).encode() for x in ids])
            del h["object_id"]
            h["object_id"] = new


def nudge_root(root, seed):
    """Moves a random half of the pixel and flux values of every file under root one float32 ulp up:
    each object's vector then lies within about an ulp of its original's."""
    rng = np.random.default_rng(seed)
    for path in sorted(glob.glob(os.path.join(root, "*", "*", "healpix=*", "*.hdf5"))):
        with h5py.File(path, "r+") as h:
            for name in ("image_array", "spectrum_flux"):
                if name in h:
                    v = h[name][:]
                    up = rng.random(v.shape) < 0.5
                    v[up] = np.nextafter(v[up], np.float32(np.inf))
                    h[name][...] = v


def build(index, root, store):
    p = subprocess.run([index, "build", root, "--store", store, "--quiet"], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("build of %s failed: %s" % (root, p.stderr))


def twin_stores(index, samples, tmp, n=4):
    """Builds n twin stores under tmp; returns their paths."""
    stores = []
    for i in range(n):
        root = os.path.join(tmp, "root%d" % i)
        twin_root(samples, root, i)
        stores.append(os.path.join(tmp, "store%d" % i))
        build(index, root, stores[-1])
    return stores


def fit_sha(store, space):
    with open(os.path.join(generation(store), "spaces", space, "fit.bin"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Space:
    """One space of a set of stores, concatenated in store order (what a merged store holds)."""

    def __init__(self, stores, name):
        vecs, self.ids, self.store_of, self.row_of, self.ra, self.dec = [], [], [], [], [], []
        for s, store in enumerate(stores):
            db = sqlite3.connect(os.path.join(generation(store), "catalog.sqlite"))
            dim, count = db.execute("SELECT dim, count FROM spaces WHERE name=?", (name,)).fetchone()
            path = os.path.join(generation(store), "spaces", name, "vectors.f32")
            vecs.append(np.fromfile(path, dtype=np.float32).reshape(count, dim))
            for row, oid, ra, dec in db.execute(
                    "SELECT s.row, o.object_id, o.ra, o.dec FROM space_rows s JOIN objects o ON o.row = s.row "
                    "WHERE s.space=? ORDER BY s.vrow", (name,)):
                self.ids.append(oid)
                self.store_of.append(s)
                self.row_of.append(row)
                self.ra.append(ra)
                self.dec.append(dec)
            db.close()
        self.vecs = np.concatenate(vecs).astype(np.float64)
        self.index = {oid: i for i, oid in enumerate(self.ids)}

    def top_k(self, oid, k, allowed=None):
        """Brute force: (id, score) best first, ties to the earlier store / lower row, the query itself left out."""
        qi = self.index[oid]
        q = self.vecs[qi] / np.linalg.norm(self.vecs[qi])
        scores = self.vecs @ q
        order = [i for i in np.argsort(-scores, kind="stable") if i != qi and (allowed is None or allowed[i])]
        return [(self.ids[i], float(scores[i])) for i in order[:k]]


def compare(check, expected, got, label, space):
    """got: JSON neighbours. Ids must agree rank by rank except between scores within 1e-6 (float32 vs
    float64 order); scores within 1e-5; twins (one object's copies, equal scores) in store order."""
    check(len(expected) == len(got), "%s: %d results, expected %d" % (label, len(got), len(expected)))
    for a, b in zip(got, got[1:]):
        ia, ib = space.index.get(a["object_id"]), space.index.get(b["object_id"])
        if ia is None or ib is None:
            check(False, "%s: %s or %s is not in the stores" % (label, a["object_id"], b["object_id"]))
            continue
        if space.row_of[ia] == space.row_of[ib] and a["score"] == b["score"]:
            check(space.store_of[ia] < space.store_of[ib],
                  "%s: tied twins %s, %s not in store order" % (label, a["object_id"], b["object_id"]))
    for rank, ((eid, esc), g) in enumerate(zip(expected, got), start=1):
        check(abs(esc - g["score"]) <= 1e-5, "%s: rank %d score %s vs brute force %s" % (label, rank, g["score"], esc))
        if g["object_id"] != eid:
            near = [e for e, s in expected if abs(s - esc) <= 1e-6]
            check(g["object_id"] in near, "%s: rank %d id %s vs brute force %s" % (label, rank, g["object_id"], eid))
