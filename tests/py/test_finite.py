"""End-to-end checks that no NaN/Inf vector ever enters a store or an output:
a finite pixel of 3e38 and a spectrum flux of 1e38 give finite vectors (the
image one equal to a float64 numpy recomputation of the baseline), an Inf
pixel or a NaN-only image is refused naming the file and object (--skip-bad
skips the file and reports it), a damaged fit.bin or vectors.f32 is refused on
the next build naming the file, and query output (table, CSV, JSON) holds no nan/inf.
Run: test_finite.py --bin BUILD --samples DIR --tmp DIR
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
from space_reading import generation  # noqa: E402
import image_reference  # noqa: E402

CASES, case = case_list()


def small_tree(env, name, n_images=3, n_spectra=3):
    """A copy of a few sample files; returns (root, image files, spectrum files)."""
    root = os.path.join(env.tmp, name)
    shutil.rmtree(root, ignore_errors=True)
    out = {}
    for survey, n in (("legacysurvey", n_images), ("desi", n_spectra)):
        out[survey] = []
        for src in sorted(glob.glob(os.path.join(env.samples, survey, "*", "*", "*.hdf5")))[:n]:
            dst = os.path.join(root, os.path.relpath(src, env.samples))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(src, dst)
            out[survey].append(dst)
    return root, out["legacysurvey"], out["desi"]


def space_vectors(store, name):
    """{object_id: vector} of space `name`, read from the store's files."""
    gen = generation(store)
    db = sqlite3.connect(os.path.join(gen, "catalog.sqlite"))
    dim, count = db.execute("SELECT dim, count FROM spaces WHERE name=?", (name,)).fetchone()
    vecs = np.fromfile(os.path.join(gen, "spaces", name, "vectors.f32"), dtype=np.float32).reshape(count, dim)
    ids = [r[0] for r in db.execute("SELECT o.object_id FROM space_rows s JOIN objects o ON o.row = s.row "
                                    "WHERE s.space=? ORDER BY s.vrow", (name,))]
    return dict(zip(ids, vecs))


def all_vectors_finite(store):
    files = glob.glob(os.path.join(generation(store), "spaces", "*", "vectors.f32"))
    return bool(files) and all(np.isfinite(np.fromfile(p, dtype=np.float32)).all() for p in files)


def set_pixel(path, obj, value, whole_image=False):
    """Sets one unmasked centre pixel (band 1) of object `obj`, or its whole image; returns its object_id."""
    with h5py.File(path, "r+") as f:
        a = f["image_array"]
        x = a[obj]
        if whole_image:
            x[:] = value
        else:
            need(bool(f["image_mask"][obj][80, 80]), "the test pixel must be usable")
            x[1, 80, 80] = value
        a[obj] = x
        return f["object_id"][obj].decode()


def baseline_image_vector(path, obj, fit_path):
    """The baseline image embedding of one object, recomputed in float64 (image_reference.py)."""
    with h5py.File(path, "r") as f:
        img = f["image_array"][obj].astype(np.float64)
        good = f["image_mask"][obj].astype(bool)
        bands = [b.decode()[-1] for b in f["image_band"][obj]]
        scale = float(f["image_scale"][obj][0])
    order = [bands.index(letter) if letter in bands else None for letter in "griz"]
    good = np.broadcast_to(good, img.shape)  # one mask for every band
    return image_reference.project(fit_path, image_reference.ring_features(img, good, order, scale))


def setup(env):
    pass


@case("pixel 3e38: finite vectors, the object's equal to a float64 recomputation; table/CSV/JSON without nan/inf")
def _(env):
    root, images, _ = small_tree(env, "huge_pixel")
    oid = set_pixel(images[0], 0, 3e38)
    store = os.path.join(env.tmp, "huge_pixel_store")
    run(env.index, "build", root, "--store", store, "--quiet")
    need(all_vectors_finite(store), "non-finite values in vectors.f32")
    got = space_vectors(store, "image")[oid]
    want = baseline_image_vector(images[0], 0, os.path.join(generation(store), "spaces", "image", "fit.bin"))
    need(np.abs(got - want).max() < 1e-4, "stored vector differs from numpy by %g" % np.abs(got - want).max())
    outs = [run(env.search, "--store", store, "--like", oid, "--space", "image", "--format", fmt).stdout
            for fmt in ("table", "csv", "json")]
    for out in outs:
        need("nan" not in out.lower() and "inf" not in out.lower(), "nan/inf in output:\n" + out)
    js = json.loads(outs[2], parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    need(js, "empty JSON")


@case("spectrum flux 1e38: the build gives finite vectors")
def _(env):
    root, _, spectra = small_tree(env, "huge_flux")
    with h5py.File(spectra[0], "r+") as f:
        usable = np.flatnonzero(~f["spectrum_mask"][0] & (f["spectrum_ivar"][0] > 0))
        need(len(usable) > 0, "no usable pixel")
        flux = f["spectrum_flux"][0]
        flux[usable[len(usable) // 2]] = 1e38
        f["spectrum_flux"][0] = flux
    store = os.path.join(env.tmp, "huge_flux_store")
    run(env.index, "build", root, "--store", store, "--quiet")
    need(all_vectors_finite(store), "non-finite values in vectors.f32")


@case("Inf pixel / NaN-only image: refused naming file and object; --skip-bad skips the file and reports it")
def _(env):
    for label, value, whole in (("inf_pixel", np.inf, False), ("nan_image", np.nan, True)):
        root, images, _ = small_tree(env, label)
        oid = set_pixel(images[1], 0, value, whole_image=whole)
        store = os.path.join(env.tmp, label + "_store")
        p = run(env.index, "build", root, "--store", store, "--quiet", ok=False)
        need(p.returncode != 0, "%s: build exit 0" % label)
        need(images[1] in p.stderr and oid in p.stderr, "%s: error does not name file and object: %s" % (label, p.stderr))
        need(not os.path.exists(os.path.join(store, "CURRENT")), "%s: a store was written" % label)
        p = run(env.index, "build", root, "--store", store, "--quiet", "--skip-bad")
        said = p.stdout + p.stderr  # --quiet reports skips on stderr
        need("skipped" in said and images[1] in said and oid in said, "%s: skip not reported:\n%s" % (label, said))
        need(oid not in space_vectors(store, "image"), "%s: the bad object has a vector" % label)
        need(all_vectors_finite(store), "%s: non-finite values in vectors.f32" % label)


@case("damaged fit.bin / vectors.f32: the next build refuses naming the file")
def _(env):
    for victim in ("fit.bin", "vectors.f32"):
        root, images, _ = small_tree(env, "damaged", n_images=2)
        extra = sorted(glob.glob(os.path.join(env.samples, "legacysurvey", "*", "*", "*.hdf5")))[2]
        store = os.path.join(env.tmp, "damaged_store")
        shutil.rmtree(store, ignore_errors=True)
        run(env.index, "build", root, "--store", store, "--quiet")
        path = os.path.join(generation(store), "spaces", "image", victim)
        with open(path, "r+b") as f:  # flip bytes well inside the data
            f.seek(64)
            b = f.read(8)
            f.seek(64)
            f.write(bytes(x ^ 0xFF for x in b))
        dst = os.path.join(root, os.path.relpath(extra, env.samples))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(extra, dst)  # a new file: an incremental build reuses the damaged space
        p = run(env.index, "build", root, "--store", store, "--quiet", ok=False)
        need(p.returncode != 0, "%s: incremental build exit 0" % victim)
        need(path.split(os.sep)[-1] in p.stderr and "damaged" in p.stderr, "%s: error does not name it: %s" % (victim, p.stderr))


if __name__ == "__main__":
    args, index, search = binaries_samples_tmp()
    env = Env()
    env.tmp, env.samples, env.index, env.search = os.path.abspath(args.tmp), args.samples, index, search
    sys.exit(run_cases(CASES, env, setup, only=os.environ.get("MMU_TEST_ONLY")))
