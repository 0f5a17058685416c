"""A store's embedding space read straight from its files (independently of
the binaries), and a numpy brute-force search over it, for the search tests."""
import os
import sqlite3

import numpy as np


def generation(store):
    """The folder of a store's current generation (what CURRENT names)."""
    with open(os.path.join(store, "CURRENT")) as f:
        return os.path.join(store, f.read().strip())


def load_space(store, name, dtype=np.float64):
    """(vectors as dtype, [(object_id, survey, ra, dec, healpix)] in vector-row order)."""
    gen = generation(store)
    db = sqlite3.connect(os.path.join(gen, "catalog.sqlite"))
    dim, count = db.execute("SELECT dim, count FROM spaces WHERE name=?", (name,)).fetchone()
    vecs = np.fromfile(os.path.join(gen, "spaces", name, "vectors.f32"), dtype=np.float32).reshape(count, dim)
    meta = db.execute(
        "SELECT o.object_id, o.survey, o.ra, o.dec, o.healpix FROM space_rows s JOIN objects o ON o.row = s.row "
        "WHERE s.space=? ORDER BY s.vrow", (name,)).fetchall()
    return vecs.astype(dtype), meta


def brute(vecs, meta, q, k, allowed=None, exclude=()):
    """(id, score) of the k best rows by inner product with q (in double), over `allowed` (indices) minus `exclude` (ids)."""
    idx = np.arange(len(vecs)) if allowed is None else np.asarray(sorted(allowed), dtype=int)
    idx = np.array([i for i in idx if meta[i][0] not in exclude], dtype=int)
    if len(idx) == 0:
        return []
    scores = vecs[idx].astype(np.float64) @ np.asarray(q, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")[:k]
    return [(meta[idx[i]][0], float(scores[i])) for i in order]
