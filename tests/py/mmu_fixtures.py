"""Small, valid Multimodal Universe (MMU v1) fixture files written with h5py.

Shared by the Python CLI tests.  Needs Debian's /usr/bin/python3 (numpy, h5py).

Layout written by the helpers:  <root>/<dataset>/<subset>/healpix=N/001-of-001.hdf5

Datasets are built as an ordered dict ``name -> numpy array`` (``image_datasets``,
``spectrum_datasets``) so a test can drop, replace or corrupt one entry before
``write_mmu_file`` writes it.  Everything is deterministic for a given seed.
"""

import collections
import os
import sys

import h5py
import numpy as np

IMAGE_SURVEY = ("legacysurvey", "dr10_south_21")
SPECTRUM_SURVEY = ("desi", "edr_sv3")
# HEALPix nside-16 NESTED cells (checked with tools/mmu_healpix.py):
# ra 30..31, dec 0..1 lies in 1113; ra 33.5..34, dec 2.1..2.6 lies in 1116.
CELL = 1113
CELL_BOX = (30.0, 31.0, 0.0, 1.0)
OTHER_CELL = 1116
OTHER_CELL_BOX = (33.5, 34.0, 2.1, 2.6)

IMAGE_BANDS, IMAGE_SIZE = 4, 160
SPECTRUM_LENGTH = 7781  # DESI coadd: 3600..9824 A at 0.8 A


def positions(n, seed, box=CELL_BOX):
    rng = np.random.default_rng(seed + 1000)
    ra0, ra1, dec0, dec1 = box
    ra = rng.uniform(ra0 + 0.05, ra1 - 0.05, n)
    dec = rng.uniform(dec0 + 0.05, dec1 - 0.05, n)
    return ra.astype(np.float64), dec.astype(np.float64)


def image_ids(n, prefix="LS"):
    return np.array([("%s-%06d" % (prefix, i + 1)).encode() for i in range(n)], dtype="S24")


def spectrum_ids(n, base=39627000000000000):
    return np.arange(base + 1, base + 1 + n, dtype=np.int64)


def image_datasets(n=6, seed=1, ids=None, box=CELL_BOX, cell=CELL, mask_3d=True):
    """n galaxy-like cutouts: a smooth elliptical blob per object plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    c = (IMAGE_SIZE - 1) / 2.0
    img = np.empty((n, IMAGE_BANDS, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for i in range(n):
        sx, sy = rng.uniform(4, 20, 2)
        th = rng.uniform(0, np.pi)
        dx, dy = rng.uniform(-6, 6, 2)
        x = (xx - c - dx) * np.cos(th) + (yy - c - dy) * np.sin(th)
        y = -(xx - c - dx) * np.sin(th) + (yy - c - dy) * np.cos(th)
        blob = np.exp(-0.5 * ((x / sx) ** 2 + (y / sy) ** 2))
        for b in range(IMAGE_BANDS):
            amp = rng.uniform(0.5, 5.0)
            img[i, b] = amp * blob + rng.normal(0, 0.02, blob.shape)
    ra, dec = positions(n, seed, box)
    d = collections.OrderedDict()
    d["object_id"] = image_ids(n) if ids is None else ids
    d["ra"] = ra
    d["dec"] = dec
    d["healpix"] = np.full(n, cell, dtype=np.int64)
    d["image_array"] = img
    if mask_3d:
        d["image_mask"] = np.ones((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)  # True = good
    else:
        d["image_mask"] = np.ones((n, IMAGE_BANDS, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    return d


def spectrum_datasets(n=8, seed=2, ids=None, box=CELL_BOX, cell=CELL, length=SPECTRUM_LENGTH):
    """n smooth continua with a few emission lines, noise and ivar."""
    rng = np.random.default_rng(seed)
    lam = (3600.0 + 0.8 * np.arange(length)).astype(np.float32)
    flux = np.empty((n, length), dtype=np.float32)
    for i in range(n):
        slope = rng.uniform(-1, 1)
        cont = 2.0 + slope * (lam - 6700.0) / 3000.0
        z = rng.uniform(0.0, 0.3)
        lines = np.zeros_like(lam)
        for rest in (3727.0, 4861.0, 5007.0, 6563.0):
            obs = rest * (1 + z)
            lines += rng.uniform(1, 8) * np.exp(-0.5 * ((lam - obs) / 3.0) ** 2)
        flux[i] = cont + lines + rng.normal(0, 0.1, length)
    ra, dec = positions(n, seed, box)
    d = collections.OrderedDict()
    d["object_id"] = spectrum_ids(n) if ids is None else ids
    d["ra"] = ra
    d["dec"] = dec
    d["healpix"] = np.full(n, cell, dtype=np.int64)
    d["spectrum_flux"] = flux
    d["spectrum_ivar"] = np.full((n, length), 100.0, dtype=np.float32)
    d["spectrum_lambda"] = np.tile(lam, (n, 1))
    d["spectrum_mask"] = np.zeros((n, length), dtype=bool)  # True = bad
    return d


def mmu_path(root, survey, cell=CELL, name="001-of-001.hdf5"):
    dataset, subset = survey
    return os.path.join(root, dataset, subset, "healpix=%d" % cell, name)


def write_positions(path, ids, ra, dec):
    """A positions-only MMU-style file (object_id, ra, dec), folders made: what cross-match tests read."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("object_id", data=ids)
        f.create_dataset("ra", data=ra)
        f.create_dataset("dec", data=dec)


def write_mmu_file(path, datasets, compression="lzf"):
    """Writes datasets (name -> array) to path; big 2-D+ float arrays are chunked
    per row and compressed (LZF by default, as MMU does for images)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, arr in datasets.items():
            arr = np.asarray(arr)
            if compression and arr.ndim >= 2 and arr.dtype.kind in "fb" and arr.shape[0] > 0:
                f.create_dataset(name, data=arr, compression=compression, chunks=(1,) + arr.shape[1:])
            else:
                f.create_dataset(name, data=arr)
    return path


def write_good_tree(root, n_images=6, n_spectra=8):
    """The reference tree: one legacysurvey image file and one DESI spectrum file."""
    img = write_mmu_file(mmu_path(root, IMAGE_SURVEY), image_datasets(n_images))
    spec = write_mmu_file(mmu_path(root, SPECTRUM_SURVEY), spectrum_datasets(n_spectra))
    return img, spec


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from package_model import sha256_file  # noqa: E402,F401  (one implementation, shared with the tools)


def tree_snapshot(top):
    """{relative path: sha256 (files) or 'dir' (folders)} for everything under top."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for d in dirnames:
            snap[os.path.relpath(os.path.join(dirpath, d), top)] = "dir"
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            snap[os.path.relpath(p, top)] = "link" if os.path.islink(p) else sha256_file(p)
    return snap
