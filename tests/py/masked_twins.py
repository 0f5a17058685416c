"""Masked twins of DESI-like spectra, for the gappy-PCA checks (issue 15): each
spectrum copied with a random contiguous 30-60 % of its pixels flagged bad
(spectrum_mask True = bad, as MMU writes spectra) and Gaussian noise added at
its ivar. Written with h5py in the same MMU layout under new object ids."""
import glob
import os
import shutil

import h5py
import numpy as np

ID_OFFSET = 1 << 60  # twin object_id = original + ID_OFFSET (DESI TARGETIDs are below 2^58)


def write_twins(samples, out, seed=15, lo=0.3, hi=0.6):
    """Twins of every spectrum of samples/desi under out/desi; returns {twin id: original id} (strings)."""
    rng = np.random.default_rng(seed)
    pairs = {}
    for src in sorted(glob.glob(os.path.join(samples, "desi", "*", "healpix=*", "*.hdf5"))):
        dst = os.path.join(out, os.path.relpath(src, samples))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
        with h5py.File(dst, "r+") as f:
            ids = f["object_id"][:]
            flux = f["spectrum_flux"][:]
            ivar = f["spectrum_ivar"][:]
            mask = f["spectrum_mask"][:]
            n, length = flux.shape
            for i in range(n):
                cut = int(round(rng.uniform(lo, hi) * length))
                start = int(rng.integers(0, length - cut + 1))
                mask[i, start:start + cut] = True
                sigma = np.where(ivar[i] > 0, 1.0 / np.sqrt(np.maximum(ivar[i], 1e-30)), 0.0)
                flux[i] = flux[i] + rng.standard_normal(length) * sigma
            f["spectrum_flux"][...] = flux.astype(np.float32)
            f["spectrum_mask"][...] = mask
            twin_ids = ids + ID_OFFSET
            f["object_id"][...] = twin_ids
            if "TARGETID" in f:
                f["TARGETID"][...] = f["TARGETID"][:] + ID_OFFSET
            pairs.update({str(t): str(o) for t, o in zip(twin_ids, ids)})
    return pairs


def twin_top1(vecs, meta, pairs):
    """Fraction of twins whose nearest other vector (cosine; vectors are unit) is their original."""
    row = {m[0]: i for i, m in enumerate(meta)}
    twins = [t for t in pairs if t in row]
    t_idx = np.array([row[t] for t in twins])
    sims = vecs[t_idx].astype(np.float64) @ vecs.astype(np.float64).T
    sims[np.arange(len(twins)), t_idx] = -np.inf  # not itself
    best = sims.argmax(axis=1)
    hits = sum(meta[b][0] == pairs[t] for b, t in zip(best, twins))
    return hits / len(twins), len(twins)
