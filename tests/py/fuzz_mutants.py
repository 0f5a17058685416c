"""The seeded mutant generator and checker shared by tests/py/test_fuzz_build.py
(>= 100 mutants, in `make test`) and bench/fuzz_build.py (>= 2,000).

Mutant i of seed s is a function of (s, i) alone, so a failure reproduces
with `bench/fuzz_build.py --seed s --first i --count 1 --keep`. Each mutant
is one sample file damaged one way: bytes flipped (half of them in the first
16 KB, where HDF5 keeps its superblock and object headers), truncated, a block
zeroed, or extreme finite values (and a few NaN/Inf) written through h5py.
Each is built alone with a time limit and must give exit 0 with only finite
vectors in the store, or exit 1 with a message naming the file; `inspect`
must not crash on it either."""
import concurrent.futures
import glob
import os
import random
import shutil
import subprocess
import tempfile
import time

import h5py
import numpy as np

# Several objects each, so a PCA is fitted (3 spectra, 2 images).
BASE_FILES = ("desi/edr_sv3/healpix=1126/001-of-001.hdf5", "legacysurvey/dr10_south_21/healpix=33/001-of-001.hdf5")
KINDS = ("flip", "truncate", "zero", "extreme")
EXTREMES = (3.4e38, -3.4e38, 3e38, 1e38, -1e38, 1e30, 1e-38, -1e-45, 0.0, 65504.0, 1e300, -1e300)


def mutate(src, dst, seed, index):
    """Writes mutant `index` of `seed` of file src to dst; returns its description."""
    rng = random.Random("%d/%d" % (seed, index))
    kind = KINDS[rng.randrange(len(KINDS))]
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    data = bytearray(open(src, "rb").read())
    n = len(data)
    if kind == "flip":
        flips = rng.choice((1, 2, 4, 16))
        for _ in range(flips):
            at = rng.randrange(min(n, 16384)) if rng.random() < 0.5 else rng.randrange(n)
            data[at] ^= rng.randrange(1, 256)
        what = "%d byte(s) flipped" % flips
    elif kind == "truncate":
        keep = rng.randrange(n)
        del data[keep:]
        what = "truncated to %d of %d bytes" % (keep, n)
    elif kind == "zero":
        size = 1 << rng.randrange(2, 15)
        at = rng.randrange(n)
        data[at:at + size] = bytes(len(data[at:at + size]))
        what = "%d bytes zeroed at %d" % (size, at)
    if kind != "extreme":
        with open(dst, "wb") as f:
            f.write(data)
        return kind + ": " + what
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        names = []
        f.visititems(lambda name, o: names.append(name) if isinstance(o, h5py.Dataset) and o.dtype.kind == "f" else None)
        name = names[rng.randrange(len(names))]
        ds = f[name]
        a = ds[()]
        flat = a.reshape(-1)
        value = EXTREMES[rng.randrange(len(EXTREMES))] if rng.random() < 0.9 else rng.choice((np.nan, np.inf, -np.inf))
        count = rng.choice((1, 8, flat.size))
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(count if count < flat.size else 1):
                flat[rng.randrange(flat.size)] = value
            if count == flat.size:
                flat[:] = value
        ds[...] = a
    return "extreme: %s values of '%s' set to %r" % ("all" if count == flat.size else count, name, value)


def check_one(index_bin, path, store, limit):
    """Builds and inspects one mutant; returns (verdict, detail): verdict is
    'built', 'refused', or a failure: 'crash', 'hang', 'nan', 'unnamed'."""
    shutil.rmtree(store, ignore_errors=True)
    t0 = time.monotonic()
    try:
        p = subprocess.run([index_bin, "build", path, "--store", store, "--quiet"], capture_output=True, text=True,
                           timeout=limit, errors="replace")
    except subprocess.TimeoutExpired:
        return "hang", "build ran past %d s" % limit, time.monotonic() - t0
    seconds = time.monotonic() - t0
    if p.returncode < 0 or p.returncode not in (0, 1) or "internal error" in p.stderr:
        return "crash", "build exit %d: %s" % (p.returncode, p.stderr.strip()[-400:]), seconds
    if p.returncode == 1 and path not in p.stderr:
        return "unnamed", "refusal does not name the file: " + p.stderr.strip()[-400:], seconds
    if p.returncode == 0:
        vectors = glob.glob(os.path.join(store, "gen-*", "spaces", "*", "vectors.f32"))
        for v in vectors:
            if not np.isfinite(np.fromfile(v, dtype=np.float32)).all():
                return "nan", "non-finite vector in " + v, seconds
    try:
        q = subprocess.run([index_bin, "inspect", path], capture_output=True, text=True, timeout=limit, errors="replace")
    except subprocess.TimeoutExpired:
        return "hang", "inspect ran past %d s" % limit, seconds
    if q.returncode < 0 or q.returncode not in (0, 1) or "internal error" in q.stderr:
        return "crash", "inspect exit %d: %s" % (q.returncode, q.stderr.strip()[-400:]), seconds
    shutil.rmtree(store, ignore_errors=True)
    return ("built" if p.returncode == 0 else "refused"), p.stderr.strip()[-200:], seconds


def scratch_dir(tmp):
    """A folder for the mutants and their stores: in /dev/shm when there is
    one (a build's fsyncs would otherwise take most of the time), else tmp."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return tempfile.mkdtemp(prefix="mmu-fuzz-", dir="/dev/shm")
    return tempfile.mkdtemp(prefix="mmu-fuzz-", dir=tmp)


def run_mutants(index_bin, samples, tmp, seed, first, count, limit=20, workers=2, keep=False):
    """Makes and checks mutants first..first+count-1 in tmp; returns a list of
    (index, description, verdict, detail, seconds) in index order."""
    def one(i):
        src = os.path.join(samples, BASE_FILES[i % len(BASE_FILES)])
        # The survey folders are kept so the mutant is named like a real file.
        dst = os.path.join(tmp, "m%06d" % i, os.path.relpath(src, samples))
        what = mutate(src, dst, seed, i)
        verdict, detail, seconds = check_one(index_bin, dst, os.path.join(tmp, "m%06d.store" % i), limit)
        if not keep and verdict in ("built", "refused"):
            shutil.rmtree(os.path.join(tmp, "m%06d" % i), ignore_errors=True)
        return i, what, verdict, detail, seconds
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(first, first + count)))
