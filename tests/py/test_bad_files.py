"""End-to-end checks that every bad input file is named and that --skip-bad
skips every bad file (issue 16, points 4 and 5): a file declaring 10^12 rows,
a 0-row file, a duplicate id inside one file, two files sharing an id, a
single-object light curve, a stored healpix disagreeing with ra/dec, a
healpix=N folder whose objects lie elsewhere, ids that are not UTF-8, folders
healpix=abc and healpix=5000, a dangling symlink, a folder named *.hdf5, and
MaNGA-style groups without object_id. Each build is checked against what the
fixture holds (h5py), not against a recorded output.
Run: test_bad_files.py --bin BUILD --tmp DIR
"""
import glob
import json
import os
import shutil
import sqlite3
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402
import mmu_fixtures as fx  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from mmu_healpix import mmu_cell  # noqa: E402  (an independent nside-16 NESTED implementation)

CASES, case = case_list()
SMALL = 24  # image side for these fixtures: enough for the baseline, fast to write


def small_images(n, seed, ids=None, box=fx.CELL_BOX, cell=fx.CELL):
    d = fx.image_datasets(n=n, seed=seed, ids=ids, box=box, cell=cell)
    return d


def fresh(env, name):
    root = os.path.join(env.tmp, name)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    return root


def build(env, root, *flags, ok=None):
    store = root + ".store"
    shutil.rmtree(store, ignore_errors=True)
    p = run(env.index, "build", root, "--store", store, "--quiet", *flags, ok=False, timeout=120)
    if ok is not None:
        need((p.returncode == 0) == ok, "build of %s: exit %d, wanted %s\n%s" % (root, p.returncode,
                                                                                    "0" if ok else "an error", p.stderr))
    need(p.returncode in (0, 1), "build of %s exited %d (crash or internal error):\n%s" % (root, p.returncode, p.stderr))
    return p, store


def catalog(store):
    with open(os.path.join(store, "CURRENT")) as f:
        gen = os.path.join(store, f.read().strip())
    db = sqlite3.connect(os.path.join(gen, "catalog.sqlite"))
    return db


def stored_ids(store):
    return sorted(r[0] for r in catalog(store).execute("SELECT object_id FROM objects"))


def file_ids(path):
    with h5py.File(path, "r") as f:
        ids = f["object_id"][()]
    return sorted(i.decode() if isinstance(i, bytes) else str(i) for i in np.atleast_1d(ids))


def huge_rows_file(path):
    """A valid-looking row table whose datasets declare 10^12 rows, written as
    unallocated chunked datasets: a few KB on disk."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    n = 10 ** 12
    with h5py.File(path, "w") as f:
        f.create_dataset("object_id", shape=(n,), dtype="i8", chunks=(1024,))
        f.create_dataset("ra", shape=(n,), dtype="f8", chunks=(1024,))
        f.create_dataset("dec", shape=(n,), dtype="f8", chunks=(1024,))
        f.create_dataset("image_array", shape=(n, 4, 16, 16), dtype="f4", chunks=(1, 4, 16, 16))
    return path


@case("a file declaring 10^12 rows is named, build and inspect; --skip-bad skips it")
def huge_rows(env):
    root = fresh(env, "huge")
    good = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), fx.image_datasets(4, seed=3))
    bad = huge_rows_file(fx.mmu_path(root, fx.IMAGE_SURVEY, name="002-of-002.hdf5"))
    need(os.path.getsize(bad) < 100000, "the fixture must be small")
    p, _ = build(env, root, ok=False)
    need(bad in p.stderr and "declares shape" in p.stderr, "the refusal must name the file and its shape:\n" + p.stderr)
    p, store = build(env, root, "--skip-bad", ok=True)
    need(bad in p.stdout + p.stderr, "the skipped file must be named:\n" + p.stdout + p.stderr)
    need(stored_ids(store) == file_ids(good), "only the good file's objects are stored")
    q = run(env.index, "inspect", bad, ok=False, timeout=60)
    need(q.returncode in (0, 1) and bad in q.stdout + q.stderr and "declares shape" in q.stdout + q.stderr,
         "inspect names the damaged file (exit %d):\n%s%s" % (q.returncode, q.stdout, q.stderr))


@case("a 0-row file is a warning naming it, not an error")
def zero_rows(env):
    root = fresh(env, "zero")
    good = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), fx.image_datasets(4, seed=4))
    d = fx.image_datasets(4, seed=5)
    empty = {k: v[:0] for k, v in d.items()}
    bad = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY, name="002-of-002.hdf5"), empty)
    p, store = build(env, root, ok=True)
    need(("warning: '%s' holds no objects" % bad) in p.stderr, "the empty file is named in a warning:\n" + p.stderr)
    need(stored_ids(store) == file_ids(good), "the good file is stored whole")
    alone = fresh(env, "zero_alone")
    only = fx.write_mmu_file(fx.mmu_path(alone, fx.IMAGE_SURVEY), empty)
    p, _ = build(env, alone, ok=False)
    need(only in p.stderr and "no input file holds any object" in p.stderr,
         "a tree of only empty files fails, naming them:\n" + p.stderr)


@case("a duplicate id inside one file names the file and both rows; --skip-bad skips that file")
def duplicate_in_file(env):
    root = fresh(env, "dup1")
    good = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), fx.image_datasets(4, seed=6))
    ids = fx.image_ids(5, prefix="DUP")
    ids[3] = ids[1]
    bad = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY, fx.OTHER_CELL),
                            fx.image_datasets(5, seed=7, ids=ids, box=fx.OTHER_CELL_BOX, cell=fx.OTHER_CELL))
    p, _ = build(env, root, ok=False)
    need(bad in p.stderr and "rows 1 and 3" in p.stderr, "names the file and both rows:\n" + p.stderr)
    p, store = build(env, root, "--skip-bad", ok=True)
    need(bad in p.stdout + p.stderr, "the skipped file is named")
    need(stored_ids(store) == file_ids(good), "only the good file's objects are stored")


@case("two files sharing an id: --skip-bad leaves out the later, naming both")
def duplicate_across_files(env):
    root = fresh(env, "dup2")
    first = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), fx.image_datasets(4, seed=8))
    ids = fx.image_ids(6)[2:]  # LS-000003 and LS-000004 are in both files
    later = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY, fx.OTHER_CELL),
                              fx.image_datasets(4, seed=9, ids=ids, box=fx.OTHER_CELL_BOX, cell=fx.OTHER_CELL))
    p, _ = build(env, root, ok=False)
    need(first in p.stderr and later in p.stderr and "LS-000003" in p.stderr, "names both files:\n" + p.stderr)
    p, store = build(env, root, "--skip-bad", ok=True)
    out = p.stdout + p.stderr
    need(first in out and later in out, "the report names both files:\n" + out)
    need(stored_ids(store) == file_ids(first), "the earlier file is stored, the later left out")


@case("a single-object light curve is catalogued; its space is left out with a warning")
def single_light_curve(env):
    root = fresh(env, "lc1")
    path = os.path.join(root, "cfa", "snia", "SN2001a.hdf5")
    os.makedirs(os.path.dirname(path))
    t = np.linspace(0, 60, 20)
    with h5py.File(path, "w") as f:
        f["object_id"] = b"SN2001a"
        f["ra"] = 30.5
        f["dec"] = 0.5
        f["time"] = np.stack([t, t]).astype(np.float32)
        f["mag"] = np.stack([18 + 0.02 * t, 18.3 + 0.02 * t]).astype(np.float32)
        f["mag_err"] = np.full((2, 20), 0.05, dtype=np.float32)
    p, store = build(env, root, ok=True)
    need("space 'lightcurve' left out" in p.stderr and path in p.stderr, "warned, naming the file:\n" + p.stderr)
    need(stored_ids(store) == ["SN2001a"], "the object is catalogued")
    spaces = [r[0] for r in catalog(store).execute("SELECT name FROM spaces")]
    need("lightcurve" not in spaces, "no light-curve space: %s" % spaces)


def stored_cells(store):
    return {r[0]: (r[1], r[2], r[3]) for r in catalog(store).execute("SELECT object_id, ra, dec, healpix FROM objects")}


@case("a stored healpix that disagrees with ra/dec is recomputed, with a warning naming the file")
def healpix_disagrees(env):
    root = fresh(env, "hpx_wrong")
    d = fx.image_datasets(4, seed=10)
    d["healpix"][:] = fx.OTHER_CELL  # positions lie in fx.CELL
    path = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), d)
    p, store = build(env, root, ok=True)
    need(path in p.stderr and "disagree with ra/dec" in p.stderr, "warned, naming the file:\n" + p.stderr)
    cells = stored_cells(store)
    need(len(cells) == 4, "every object stored")
    for oid, (ra, dec, cell) in cells.items():
        need(cell == mmu_cell(ra, dec) == fx.CELL, "%s stored in cell %d, its position is in %d" % (oid, cell, mmu_cell(ra, dec)))
    q = run(env.search, "--store", store, "--like", "LS-000001", "--cells", str(fx.CELL), "--format", "csv")
    need("LS-000002" in q.stdout, "--cells of the position's cell finds the objects:\n" + q.stdout)
    q = run(env.search, "--store", store, "--like", "LS-000001", "--cells", str(fx.OTHER_CELL), ok=False)
    need(q.returncode == 1 and "passes the filters" in q.stderr,
         "--cells of the stored (wrong) cell finds nothing:\n" + q.stdout + q.stderr)


@case("a file whose objects lie outside its healpix=N folder is warned about")
def healpix_folder_elsewhere(env):
    root = fresh(env, "hpx_folder")
    d = fx.image_datasets(4, seed=11)  # positions and healpix dataset in fx.CELL
    path = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY, cell=fx.OTHER_CELL), d)
    p, store = build(env, root, ok=True)
    need(("'%s' is in folder healpix=%d but 4 of its 4 objects lie in other cells" % (path, fx.OTHER_CELL)) in p.stderr,
         "warned, naming the file and the count:\n" + p.stderr)
    need(all(c == fx.CELL for _, _, c in stored_cells(store).values()), "objects stored under their own cell")
    good = fresh(env, "hpx_folder_ok")
    # The legacysurvey builder's band names: without them the reader warns that it assumed them.
    d["image_band"] = np.array([[b"des-g", b"des-r", b"des-i", b"des-z"]] * 4, dtype="S5")
    fx.write_mmu_file(fx.mmu_path(good, fx.IMAGE_SURVEY), d)
    p, _ = build(env, good, ok=True)
    need("warning" not in p.stderr, "no warning for a consistent file:\n" + p.stderr)


@case("object ids that are not UTF-8 are refused naming the file and row; --skip-bad skips the file")
def ids_not_utf8(env):
    root = fresh(env, "utf8")
    good = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), fx.image_datasets(4, seed=12))
    ids = np.array([b"OK-1", b"BAD-\xff\xfe", b"OK-3"], dtype="S24")
    bad = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY, fx.OTHER_CELL),
                            fx.image_datasets(3, seed=13, ids=ids, box=fx.OTHER_CELL_BOX, cell=fx.OTHER_CELL))
    p, _ = build(env, root, ok=False)
    need(bad in p.stderr and "row 1" in p.stderr and "not valid UTF-8" in p.stderr and "\\xff\\xfe" in p.stderr,
         "names the file, the row and the bytes:\n" + p.stderr)
    p, store = build(env, root, "--skip-bad", ok=True)
    need(bad in p.stdout + p.stderr, "the skipped file is named")
    need(stored_ids(store) == file_ids(good), "only the good file is stored")


def bad_folder_case(env, name, folder):
    root = fresh(env, name)
    good = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), fx.image_datasets(4, seed=14))
    bad = os.path.join(root, fx.IMAGE_SURVEY[0], fx.IMAGE_SURVEY[1], folder, "001-of-001.hdf5")
    fx.write_mmu_file(bad, fx.image_datasets(3, seed=15, ids=fx.image_ids(3, prefix="X"), box=fx.OTHER_CELL_BOX,
                                             cell=fx.OTHER_CELL))
    p, _ = build(env, root, ok=False)
    need(bad in p.stderr and folder in p.stderr, "names the file and its folder:\n" + p.stderr)
    p, store = build(env, root, "--skip-bad", ok=True)
    need(bad in p.stdout + p.stderr, "the skipped file is named:\n" + p.stdout + p.stderr)
    need(stored_ids(store) == file_ids(good), "only the good file is stored")
    surveys = {r[0] for r in catalog(store).execute("SELECT survey FROM objects")}
    need(surveys == {fx.IMAGE_SURVEY[0]}, "no survey named after the folder: %s" % surveys)


@case("a folder healpix=abc is refused naming it, not taken as a survey")
def healpix_abc(env):
    bad_folder_case(env, "hpx_abc", "healpix=abc")


@case("a folder healpix=5000 (past nside 16's 3072 cells) is refused naming it")
def healpix_out_of_range(env):
    bad_folder_case(env, "hpx_5000", "healpix=5000")


@case("a dangling link and a folder named *.hdf5 are reported, not passed over")
def dangling_and_folder(env):
    for kind in ("link", "folder"):
        root = fresh(env, "odd_" + kind)
        good = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), fx.image_datasets(4, seed=16))
        odd = fx.mmu_path(root, fx.IMAGE_SURVEY, name="002-of-002.hdf5")
        if kind == "link":
            os.symlink(os.path.join(root, "gone.hdf5"), odd)
        else:
            os.makedirs(odd)
        p, _ = build(env, root, ok=False)
        need(odd in p.stderr, "the %s is named:\n%s" % (kind, p.stderr))
        p, store = build(env, root, "--skip-bad", ok=True)
        need(odd in p.stdout + p.stderr, "the %s is named in the report" % kind)
        need(stored_ids(store) == file_ids(good), "the good file is stored")


@case("MaNGA-style groups without object_id: the group name is the id")
def groups_without_object_id(env):
    root = fresh(env, "groups")
    path = os.path.join(root, "manga", "dr17", "healpix=%d" % fx.CELL, "001-of-001.hdf5")
    os.makedirs(os.path.dirname(path))
    ra, dec = fx.positions(3, seed=17)
    with h5py.File(path, "w") as f:
        for k, name in enumerate(("8485-1901", "8485-1902", "8485-1903")):
            g = f.create_group(name)
            if k != 1:
                g["object_id"] = name.encode()
            g["ra"] = ra[k]
            g["dec"] = dec[k]
        f.create_group("metadata")["version"] = b"v1"
    p, store = build(env, root, ok=True)
    need(stored_ids(store) == ["8485-1901", "8485-1902", "8485-1903"], "every group is an object: %s" % stored_ids(store))
    need("group 'metadata'" in p.stderr and path in p.stderr, "the group that is not an object is named:\n" + p.stderr)


@case("objects whose data are all the same (found by the fuzz) are refused naming the file, never a NaN vector")
def identical_objects(env):
    root = fresh(env, "same")
    d = fx.image_datasets(2, seed=18)
    d["image_array"][:] = 3.4e38  # fuzz mutant 381 of seed 16: every pixel of the file set to one value
    path = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), d)
    p, _ = build(env, root, ok=False)
    need(path in p.stderr and "do not vary" in p.stderr, "refused naming the file:\n" + p.stderr)


@case("a dataset needing an unknown HDF5 filter: the refusal gives the filter's id and names the file")
def unknown_filter(env):
    root = fresh(env, "filter")
    path = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), fx.image_datasets(3, seed=19))  # LZF, id 32000
    data = bytearray(open(path, "rb").read())
    # The filter pipeline message (version 1): id (2 bytes LE), name length, flags, values, then the name.
    at = [i for i in range(len(data)) if data[i:i + 4] == b"lzf\0"]
    need(at, "the fixture's pipeline names lzf")
    for i in at:
        need(data[i - 8:i - 6] == (32000).to_bytes(2, "little"), "the filter id sits 8 bytes before its name")
        data[i - 8:i - 6] = (32013).to_bytes(2, "little")
    open(path, "wb").write(data)
    p, _ = build(env, root, ok=False)
    need(path in p.stderr and "filter id 32013" in p.stderr, "names the file and the filter id:\n" + p.stderr)


@case("--dedup nan and --nprobe -1: the command line refuses what the server refuses")
def shared_query_checks(env):
    root = fresh(env, "knobs")
    fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), fx.image_datasets(3, seed=20))
    _, store = build(env, root, ok=True)
    run(env.search, "--store", store, "--like", "LS-000001", "--dedup", "1", "--nprobe", "0")
    for flag, value, field in (("--dedup", "nan", "dedup_arcsec"), ("--dedup", "inf", "dedup_arcsec"),
                               ("--nprobe", "-1", "nprobe"), ("--ef-search", "-5", "ef_search"),
                               ("--nprobe", str(1 << 21), "nprobe")):
        q = run(env.search, "--store", store, "--like", "LS-000001", flag, value, ok=False)
        need(q.returncode != 0 and flag in q.stderr and field in q.stderr and "internal" not in q.stderr,
             "%s %s must be refused naming the flag and the field (exit %d):\n%s" % (flag, value, q.returncode, q.stderr))


def main():
    a, index, search = binaries_samples_tmp(inputs=())
    env = Env()
    env.tmp, env.index, env.search = a.tmp, index, search
    return run_cases(CASES, env, lambda e: None)


if __name__ == "__main__":
    sys.exit(main())
