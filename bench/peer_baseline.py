#!/usr/bin/python3
"""Python peer of `mmu-index build`'s baseline pipeline: what a user would write
in a notebook with h5py + numpy, used by run_benchmarks.py as the yardstick for
ingest speed (and as an independent check of the C++ vectors).

    /usr/bin/python3 bench/peer_baseline.py ROOT [ROOT...] --out DIR [--batch-size 64] [--dim 64]

Same transforms as src/encode/preprocess.cpp and src/encode/pca.cpp, vectorised with numpy:

  images   centre crop of 25.152" (96 px at the file's image_scale, else 0.262"/px),
           asinh(x / 0.01), per band and ring (24 rings of the inscribed disc) the
           mean of the good pixels (image_mask: True = good) and the moduli of the
           ring's angular Fourier modes 1..4; unit L2 norm
           (src/encode/image_rings.cpp; tests/py/image_reference.py is the same
           transform one object at a time in float64)
  spectra  usable pixels (spectrum_mask: True = bad; ivar > 0; lambda > 0)
           rebinned onto 512 log-lambda bins over 3600-9825 A (inverse-variance
           weighted means), empty bins linearly interpolated (ends held flat),
           standardised (mean 0, std 1 with ddof=1)
  PCA      per modality: covariance (float32 X^T X / (n-1)) + numpy.linalg.eigh,
           top 64 components, sign fixed (largest |entry| positive), projection,
           L2 norm

Writes DIR/<space>_vectors.npy (n x dim float32), DIR/<space>_ids.npy
(object ids as text, file row order within files sorted by path),
DIR/<space>_surveys.npy and DIR/<space>_components.npy (dim x features), and
prints one JSON line with per-phase seconds.

The C++ build fits its PCA by randomised subspace iteration (src/encode/pca.cpp);
this peer does the exact eigendecomposition a notebook would, so comparing
the two measures how close the C++ approximation is.
It writes no catalog and no FAISS index: the C++ build does both on top.
"""

import argparse
import json
import os
import sys
import time

import h5py
import numpy as np

CROP_ARCSEC, DEFAULT_SCALE, RINGS, MODES, SOFTENING = 25.152, 0.262, 24, 4, 0.01
LMIN, LMAX, NBINS = 3600.0, 9825.0, 512


def discover(roots):
    """Every *.hdf5 / *.h5 under the roots, sorted by path (dataset/subset/healpix=N)."""
    found = []
    for root in roots:
        if os.path.isfile(root):
            found.append(root)
            continue
        for dirpath, _, files in os.walk(root):
            found += [os.path.join(dirpath, f) for f in files if f.endswith((".hdf5", ".h5"))]
    return sorted(found)


def survey_of(path):
    """Dataset name: the folder two levels above healpix=N."""
    parts = os.path.normpath(path).split(os.sep)
    for i, p in enumerate(parts):
        if p.startswith("healpix="):
            return parts[i - 2]
    return parts[-2]


def text_ids(ds):
    ids = ds[:]
    if ids.dtype.kind == "S":
        return [x.decode().strip() for x in ids]
    return [str(int(x)) for x in ids]


def ring_geometry(h, w, scale):
    """The crop's corner, side, each pixel's ring (RINGS = outside the disc) and angle."""
    crop = min(max(int(round(CROP_ARCSEC / scale)), 1), min(h, w))
    dy, dx = np.mgrid[0:crop, 0:crop] - (crop - 1) / 2.0
    ring = np.floor(np.hypot(dy, dx) / (crop / 2.0) * RINGS).astype(np.int64)
    return (h - crop) // 2, (w - crop) // 2, crop, np.minimum(ring, RINGS), np.arctan2(dy, dx)


def image_features(x, good, scale):
    """x: (n, bands, H, W) float32, good: same shape bool -> (n, bands*(MODES+1)*RINGS) float32,
    all objects of a batch at once (bincount over object, band and ring)."""
    n, b, h, w = x.shape
    y0, x0, crop, ring, theta = ring_geometry(h, w, scale)
    sub = x[:, :, y0:y0 + crop, x0:x0 + crop]
    ok = good[:, :, y0:y0 + crop, x0:x0 + crop] & (ring < RINGS)
    if not np.isfinite(sub[ok]).all():
        raise ValueError("NaN/Inf in unmasked pixels")
    px = np.arcsinh(sub[ok].astype(np.float64) * (1.0 / SOFTENING))
    slot = ((np.arange(n * b).reshape(n, b, 1, 1) * RINGS) + ring)[ok]
    count = np.bincount(slot, minlength=n * b * RINGS)
    feats = np.empty((n * b, MODES + 1, RINGS))
    inv = np.where(count > 0, 1.0 / np.maximum(count, 1), 0.0)
    t = np.broadcast_to(theta, ok.shape)[ok]
    for m in range(MODES + 1):
        if m == 0:
            feats[:, 0] = (np.bincount(slot, weights=px, minlength=n * b * RINGS) * inv).reshape(n * b, RINGS)
            continue
        re = np.bincount(slot, weights=px * np.cos(m * t), minlength=n * b * RINGS)
        im = np.bincount(slot, weights=-px * np.sin(m * t), minlength=n * b * RINGS)
        feats[:, m] = (np.hypot(re, im) * inv).reshape(n * b, RINGS)
    f = feats.reshape(n, -1)
    norm = np.sqrt((f * f).sum(axis=1, keepdims=True))
    f = np.where(norm > 0, f / np.where(norm > 0, norm, 1), f)
    return f.astype(np.float32)


def pixel_scale(f):
    """arcsec/pixel: the file's image_scale (first band), else the legacysurvey default."""
    for name in ("image_scale", "pxscale"):
        if name in f:
            v = np.ravel(f[name][()])
            if v.size and np.isfinite(v[0]) and v[0] > 0:
                return float(v[0])
    return DEFAULT_SCALE


def spectrum_features(flux, ivar, lam, bad):
    """(n, L) arrays -> (n, 512) float32 standardised rebinned spectra."""
    n, _ = flux.shape
    good = ~bad & (ivar > 0) & (lam > 0)
    if not (np.isfinite(flux[good]).all() and np.isfinite(ivar[good]).all()):
        raise ValueError("NaN/Inf flux or ivar in usable pixels")
    lmin, lmax = np.log(LMIN), np.log(LMAX)
    k = np.floor((np.log(np.where(lam > 0, lam, 1).astype(np.float64)) - lmin) * (NBINS / (lmax - lmin)))
    use = good & (k >= 0) & (k < NBINS)
    flat = (np.arange(n)[:, None] * NBINS + k.astype(np.int64))[use]
    w = np.bincount(flat, weights=ivar[use].astype(np.float64), minlength=n * NBINS).reshape(n, NBINS)
    fs = np.bincount(flat, weights=(ivar[use].astype(np.float64) * flux[use]), minlength=n * NBINS).reshape(n, NBINS)
    grid = np.arange(NBINS)
    out = np.empty((n, NBINS), dtype=np.float32)
    for i in range(n):
        filled = np.flatnonzero(w[i] > 0)
        if filled.size == 0:
            raise ValueError("spectrum with no usable pixel")
        v = np.interp(grid, filled, fs[i, filled] / w[i, filled])  # ends held at the nearest filled bin
        sd = v.std(ddof=1)
        out[i] = (v - v.mean()) * (1.0 / sd if sd > 0 else 0.0)
    return out


def fit_pca(x, k):
    m, d = x.shape
    k = min(k, d, m - 1)
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    xc = x - mean
    cov = (xc.T @ xc) / np.float32(m - 1)
    w, v = np.linalg.eigh(cov)                    # ascending
    comps = v[:, ::-1][:, :k].T.copy()            # k x d, descending
    arg = np.abs(comps).argmax(axis=1)
    comps *= np.sign(comps[np.arange(k), arg])[:, None]
    return mean, comps


def project(x, mean, comps):
    y = (x - mean) @ comps.T
    norm = np.sqrt((y.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
    return (y / np.where(norm > 0, norm, 1)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--save-features", action="store_true",
                    help="also write DIR/<space>_features.npy (for checks; not part of a timed run)")
    args = ap.parse_args()

    t = {"read": 0.0, "features": 0.0, "pca": 0.0, "write": 0.0}
    feats = {"image": [], "spectrum": []}
    ids = {"image": [], "spectrum": []}
    surveys = {"image": [], "spectrum": []}
    t_all = time.perf_counter()
    for path in discover(args.roots):
        with h5py.File(path, "r") as f:
            if "image_array" in f:
                space = "image"
                scale = pixel_scale(f)
            elif "spectrum_flux" in f:
                space = "spectrum"
            else:
                continue
            t0 = time.perf_counter()
            file_ids = text_ids(f["object_id"])
            t["read"] += time.perf_counter() - t0
            n = len(file_ids)
            for start in range(0, n, args.batch_size):
                stop = min(n, start + args.batch_size)
                t0 = time.perf_counter()
                if space == "image":
                    x = f["image_array"][start:stop].astype(np.float32, copy=False)
                    if "image_mask" in f:
                        m = f["image_mask"][start:stop].astype(bool)
                        good = np.broadcast_to(m[:, None], x.shape) if m.ndim == 3 else m
                    else:
                        good = np.ones(x.shape, dtype=bool)
                    t1 = time.perf_counter()
                    feats[space].append(image_features(x, good, scale))
                else:
                    flux = f["spectrum_flux"][start:stop].astype(np.float32, copy=False)
                    ivar = f["spectrum_ivar"][start:stop].astype(np.float32, copy=False)
                    lam = f["spectrum_lambda"][start:stop].astype(np.float32, copy=False)
                    if "spectrum_mask" in f:
                        bad = f["spectrum_mask"][start:stop].astype(bool)
                    else:
                        bad = np.zeros(flux.shape, dtype=bool)
                    t1 = time.perf_counter()
                    feats[space].append(spectrum_features(flux, ivar, lam, bad))
                t["read"] += t1 - t0
                t["features"] += time.perf_counter() - t1
            ids[space] += file_ids
            surveys[space] += [survey_of(path)] * n

    os.makedirs(args.out, exist_ok=True)
    counts = {}
    for space, parts in feats.items():
        if not parts:
            continue
        t0 = time.perf_counter()
        x = np.concatenate(parts)
        mean, comps = fit_pca(x, args.dim)
        vectors = project(x, mean, comps)
        t1 = time.perf_counter()
        np.save(os.path.join(args.out, f"{space}_vectors.npy"), vectors)
        np.save(os.path.join(args.out, f"{space}_components.npy"), comps)
        if args.save_features:
            np.save(os.path.join(args.out, f"{space}_features.npy"), x)
        np.save(os.path.join(args.out, f"{space}_ids.npy"), np.array(ids[space]))
        np.save(os.path.join(args.out, f"{space}_surveys.npy"), np.array(surveys[space]))
        t["pca"] += t1 - t0
        t["write"] += time.perf_counter() - t1
        counts[space] = int(x.shape[0])
    t["total_in_process"] = time.perf_counter() - t_all
    print(json.dumps({"counts": counts, "seconds": {k: round(v, 4) for k, v in t.items()}}))


if __name__ == "__main__":
    sys.exit(main())
