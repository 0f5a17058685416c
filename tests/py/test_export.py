"""End-to-end checks of `mmu-search export` against the store's own files:
FITS read by astropy (columns, units, values equal to vectors.f32, provenance
keywords), HDF5 read by h5py and ingested again by mmu-index build, .npy by
numpy, CSV, --where, --with-predictions, and an unwritable destination.
Run: test_export.py --bin BUILD --samples DIR --tmp DIR
"""
import csv
import glob
import os
import sqlite3
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402

CASES, case = case_list()





def export(env, *args, ok=True):
    return run(env.search, "--store", env.store, "export", *args, ok=ok)


def load_space(store, name):
    """(vectors, [(object_id, survey, ra, dec, healpix)], space row) in vector-row order, from the store's files."""
    with open(os.path.join(store, "CURRENT")) as f:
        gen = os.path.join(store, f.read().strip())
    db = sqlite3.connect(os.path.join(gen, "catalog.sqlite"))
    info = db.execute("SELECT dim, count, model, version, sha256 FROM spaces WHERE name=?", (name,)).fetchone()
    vecs = np.fromfile(os.path.join(gen, "spaces", name, "vectors.f32"), dtype=np.float32).reshape(info[1], info[0])
    meta = db.execute(
        "SELECT o.object_id, o.survey, o.ra, o.dec, o.healpix FROM space_rows s JOIN objects o ON o.row = s.row "
        "WHERE s.space=? ORDER BY s.vrow", (name,)).fetchall()
    return vecs, meta, info


def setup(env):
    env.store = os.path.join(env.tmp, "store")
    run(env.index, "build", env.samples, "--store", env.store, "--quiet")
    env.vecs, env.meta, env.info = load_space(env.store, "spectrum")


@case("FITS: astropy reads OBJECT_ID/SURVEY/RA/DEC/HEALPIX/EMBEDDING equal to the store, units deg, provenance keywords")
def _(env):
    from astropy.io import fits
    from astropy.table import Table
    out = os.path.join(env.tmp, "spectrum.fits")
    export(env, "--space", "spectrum", "--format", "fits", "--out", out)
    t = Table.read(out)
    need(t.colnames == ["OBJECT_ID", "SURVEY", "RA", "DEC", "HEALPIX", "EMBEDDING"], "columns %s" % t.colnames)
    need(str(t["RA"].unit) == "deg" and str(t["DEC"].unit) == "deg", "RA/DEC units %s %s" % (t["RA"].unit, t["DEC"].unit))
    need(len(t) == len(env.meta), "%d rows, store has %d" % (len(t), len(env.meta)))
    need([str(x) for x in t["OBJECT_ID"]] == [m[0] for m in env.meta], "object ids differ")
    need(all(str(s) == m[1] for s, m in zip(t["SURVEY"], env.meta)), "surveys differ")
    need(np.array_equal(np.asarray(t["RA"]), [m[2] for m in env.meta]), "RA differs")
    need(np.array_equal(np.asarray(t["DEC"]), [m[3] for m in env.meta]), "DEC differs")
    need(np.array_equal(np.asarray(t["HEALPIX"]), [m[4] for m in env.meta]), "HEALPIX differs")
    emb = np.asarray(t["EMBEDDING"])
    need(emb.dtype.kind == "f" and emb.dtype.itemsize == 4 and emb.shape == env.vecs.shape,  # FITS is big-endian
         "EMBEDDING %s %s" % (emb.dtype, emb.shape))
    need(np.array_equal(emb, env.vecs), "EMBEDDING differs from vectors.f32")
    h = fits.open(out)[1].header
    need(h["SPACE"] == "spectrum" and h["MODEL"] == env.info[2] and h["MODELVER"] == env.info[3], "space/model keywords")
    need(h["MODELSHA"] == env.info[4], "MODELSHA %s, store %s" % (h["MODELSHA"], env.info[4]))
    need(h["STORE"] == env.store, "STORE keyword %r (long string) != %r" % (h["STORE"], env.store))
    need(h["CREATOR"].startswith("mmu-search "), "CREATOR %s" % h["CREATOR"])


@case("FITS --where exports exactly the rows the catalog selects")
def _(env):
    from astropy.table import Table
    out = os.path.join(env.tmp, "where.fits")
    export(env, "--space", "spectrum", "--format", "fits", "--out", out, "--where", "Z < 0.25")
    with open(os.path.join(env.store, "CURRENT")) as f:
        db = sqlite3.connect(os.path.join(env.store, f.read().strip(), "catalog.sqlite"))
    want = {r[0] for r in db.execute(
        "SELECT o.object_id FROM objects o JOIN object_values v ON v.row = o.row AND v.name = 'Z' "
        "JOIN space_rows s ON s.row = o.row AND s.space = 'spectrum' WHERE v.num < 0.25")}
    got = [str(x) for x in Table.read(out)["OBJECT_ID"]]
    need(0 < len(got) < len(env.meta) and set(got) == want, "%d rows, catalog selects %d" % (len(got), len(want)))


@case("HDF5: one MMU file per HEALPix cell, read by h5py, ingested again by mmu-index build with the same ids and positions")
def _(env):
    import h5py
    out = os.path.join(env.tmp, "h5export")
    export(env, "--space", "spectrum", "--format", "hdf5", "--out", out)
    files = sorted(glob.glob(os.path.join(out, "spectrum", "healpix=*", "001-of-001.hdf5")))
    cells = sorted({m[4] for m in env.meta})
    need(len(files) == len(cells), "%d files for %d cells" % (len(files), len(cells)))
    by_id = {m[0]: (m, env.vecs[i]) for i, m in enumerate(env.meta)}
    seen = 0
    for path in files:
        with h5py.File(path, "r") as f:
            cell = int(os.path.basename(os.path.dirname(path)).split("=")[1])
            need(f.attrs["model_sha256"].decode() == env.info[4], "model_sha256 attribute")
            need(f["embedding"].dtype == np.float32 and f["embedding"].shape[1] == env.vecs.shape[1], "embedding shape")
            for oid, ra, dec, hp, e in zip(f["object_id"][:], f["ra"][:], f["dec"][:], f["healpix"][:], f["embedding"][:]):
                m, v = by_id[oid.decode()]
                need((ra, dec, hp) == (m[2], m[3], m[4]) and hp == cell, "row of %s" % m[0])
                need(np.array_equal(e, v), "embedding of %s" % m[0])
                seen += 1
    need(seen == len(env.meta), "%d rows in the files, store has %d" % (seen, len(env.meta)))
    again = os.path.join(env.tmp, "store-again")
    run(env.index, "build", out, "--store", again, "--quiet")
    with open(os.path.join(again, "CURRENT")) as f:
        db = sqlite3.connect(os.path.join(again, f.read().strip(), "catalog.sqlite"))
    got = {r[0]: r[1:] for r in db.execute("SELECT object_id, ra, dec, healpix FROM objects")}
    want = {m[0]: (m[2], m[3], m[4]) for m in env.meta}
    need(got == want, "ids/positions after the round trip differ (%d vs %d objects)" % (len(got), len(want)))
    p = export(env, "--space", "spectrum", "--format", "hdf5", "--out", out, ok=False)
    need(p.returncode == 1 and "exists" in p.stderr, "an existing folder is refused: %s" % p.stderr)


@case("npy + ids.txt load in numpy, equal to the store; CSV has %.9g values that parse back to the floats")
def _(env):
    out = os.path.join(env.tmp, "emb.npy")
    export(env, "--space", "spectrum", "--format", "npy", "--out", out)
    a = np.load(out)
    need(a.dtype == np.float32 and np.array_equal(a, env.vecs), "npy differs from vectors.f32")
    with open(os.path.join(env.tmp, "emb.ids.txt")) as f:
        need(f.read().split("\n")[:-1] == [m[0] for m in env.meta], "ids file differs")
    out = os.path.join(env.tmp, "emb.csv")
    export(env, "--space", "spectrum", "--format", "csv", "--out", out)
    with open(out) as f:
        rows = list(csv.reader(f))
    dim = env.vecs.shape[1]
    need(rows[0] == ["object_id", "survey", "ra", "dec"] + ["e%d" % j for j in range(dim)], "csv header %s" % rows[0][:6])
    vals = np.array([[float(x) for x in r[4:]] for r in rows[1:]], dtype=np.float32)
    need(np.array_equal(vals, env.vecs), "csv values differ from vectors.f32")
    need([r[0] for r in rows[1:]] == [m[0] for m in env.meta], "csv ids differ")


@case("unwritable destination or bad flags: exit 1 naming the path/flag, no file or temporary left")
def _(env):
    for fmt in ("fits", "hdf5", "csv", "npy"):
        out = "/proc/mmu-export-test." + fmt
        p = export(env, "--space", "spectrum", "--format", fmt, "--out", out, ok=False)
        need(p.returncode == 1 and "/proc/" in p.stderr, "%s to /proc: rc %d %s" % (fmt, p.returncode, p.stderr))
    need(not [n for n in os.listdir("/proc") if "mmu-export-test" in n], "something left in /proc")
    # A folder that exists as a file: the temporary goes next to it and is removed on failure.
    blocker = os.path.join(env.tmp, "blocker")
    open(blocker, "w").close()
    p = export(env, "--space", "spectrum", "--format", "fits", "--out", os.path.join(blocker, "x.fits"), ok=False)
    need(p.returncode == 1, "an output under a file fails: %s" % p.stderr)
    leftovers = [n for n in os.listdir(env.tmp) if ".tmp-" in n]
    need(not leftovers, "temporaries left: %s" % leftovers)
    p = export(env, "--space", "spectrum", "--format", "parquet", "--out", os.path.join(env.tmp, "x"), ok=False)
    need(p.returncode == 1 and "--format" in p.stderr, "bad format names --format: %s" % p.stderr)
    p = export(env, "--space", "nope", "--out", os.path.join(env.tmp, "x.fits"), ok=False)
    need(p.returncode == 1 and "nope" in p.stderr, "unknown space is named: %s" % p.stderr)
    p = export(env, "--space", "spectrum", "--out", os.path.join(env.tmp, "x.fits"), "--where", "Z < -5", ok=False)
    need(p.returncode == 1 and "--where" in p.stderr, "an empty selection names --where: %s" % p.stderr)
    need(not os.path.exists(os.path.join(env.tmp, "x.fits")), "no file after a refused export")


@case("--with-predictions adds the saved probe's prediction, equal to mmu-search predict")
def _(env):
    from astropy.table import Table
    truth = os.path.join(env.samples, "truth.csv")
    probe = os.path.join(env.tmp, "z.json")
    run(env.search, "--store", env.store, "probe", "--space", "spectrum", "--target", "redshift", "--labels", truth,
        "--save", probe)
    out = os.path.join(env.tmp, "pred.fits")
    export(env, "--space", "spectrum", "--out", out, "--with-predictions", probe)
    t = Table.read(out)
    pred = list(csv.DictReader(run(env.search, "--store", env.store, "predict", "--probe", probe).stdout.splitlines()))
    need(len(pred) == len(t), "predict gives %d rows, export %d" % (len(pred), len(t)))
    for r, p in zip(t, pred):
        need(str(r["OBJECT_ID"]) == p["object_id"] and abs(r["PREDICTION"] - float(p["prediction"])) < 1e-6,
             "prediction of %s" % p["object_id"])
    p = export(env, "--space", "image", "--out", os.path.join(env.tmp, "y.fits"), "--with-predictions", probe, ok=False)
    need(p.returncode == 1 and "spectrum" in p.stderr, "a probe of another space is refused: %s" % p.stderr)


if __name__ == "__main__":
    args, index, search = binaries_samples_tmp()
    env = Env()
    env.tmp, env.samples, env.index, env.search = os.path.abspath(args.tmp), args.samples, index, search
    sys.exit(run_cases(CASES, env, setup, only=os.environ.get("MMU_TEST_ONLY")))
