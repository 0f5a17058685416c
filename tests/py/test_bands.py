"""End to end: image bands go through the MMU band table, never by a letter, and
the pixel scale comes from the file or the table or is assumed with a warning.

One small tree, written by h5py in each builder's convention:
  legacysurvey      image_band des-g..des-z, no image_scale (scale: table 0.262)
  legacysurvey      a second cell without image_band (bands: the builder's order, with a warning)
  hsc               hsc-g..hsc-y, image_scale (N,5) 0.168, per-band mask (joins `image`, y unused)
  colours           an R,G,B set with a per-object pxscale (own space image-rgb)
  colours_shuffled  the same pixels with the bands stored B,R,G (the same vectors)
  jwst              one band f150w, no scale (own space image-f150w, 0.262 assumed with a warning)
  gz10              Galaxy10's uint8 RGB `images` (N, H, W, 3) and pxscale, as the gz10 builder copies them (image-rgb)
and, apart, an image whose bands cannot be named (refused naming the file and dataset).
Checks: the build's per-survey band/scale lines and warnings; spaces and their members; image-rgb
and image vectors equal a numpy recomputation of the baseline (crop, asinh, block means, unit
norm, stored PCA); --like on an R,G,B object without --space searches image-rgb, says why, and
equals brute force; inspect gives image_band, image_scale, spectrum_lambda/ivar and light-curve
time/mag_err their roles.
Run: test_bands.py --bin BUILD --tmp DIR
"""
import json
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import image_reference  # noqa: E402
import mmu_fixtures as mf  # noqa: E402
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402
from space_reading import load_space  # noqa: E402

CASES, case = case_list()
SIZE = 64  # small cutouts keep the build fast


def blobs(n, bands, seed):
    """n galaxy-like cutouts of `bands` bands (a smooth blob with a per-band amplitude, plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    c = (SIZE - 1) / 2.0
    img = np.empty((n, bands, SIZE, SIZE), np.float32)
    for i in range(n):
        sx, sy = rng.uniform(2, 9, 2)
        th = rng.uniform(0, np.pi)
        x = (xx - c) * np.cos(th) + (yy - c) * np.sin(th)
        y = -(xx - c) * np.sin(th) + (yy - c) * np.cos(th)
        blob = np.exp(-0.5 * ((x / sx) ** 2 + (y / sy) ** 2))
        for b in range(bands):
            img[i, b] = rng.uniform(0.5, 5.0) * blob + rng.normal(0, 0.02, blob.shape)
    return img


def image_file(root, survey, cell, prefix, img, bands=None, extra=None):
    n = len(img)
    ra, dec = mf.positions(n, cell, mf.CELL_BOX if cell == mf.CELL else mf.OTHER_CELL_BOX)
    d = {"object_id": np.array([("%s-%03d" % (prefix, i)).encode() for i in range(n)], dtype="S16"),
         "ra": ra, "dec": dec, "image_array": img}
    if bands is not None:
        d["image_band"] = np.array([[b.encode() for b in bands]] * n, dtype="S5")
    d.update(extra or {})
    return mf.write_mmu_file(mf.mmu_path(root, survey, cell), d)


def baseline_vector(img, good, order, scale, fit_path):
    """The baseline embedding in float64 (image_reference.py) of bands `order` (indices)."""
    x = image_reference.ring_features(img, good, order, scale)
    mean, _ = image_reference.read_fit(fit_path)
    need(mean.size == x.size, "fit.bin takes %d features, the recomputation gives %d" % (mean.size, x.size))
    return image_reference.project(fit_path, x)


def fit_path(store, space):
    with open(os.path.join(store, "CURRENT")) as f:
        return os.path.join(store, f.read().strip(), "spaces", space, "fit.bin")


def setup(env):
    root = env.root = os.path.join(env.tmp, "tree")
    env.files = {}
    env.img = {}
    env.img["ls"] = blobs(6, 4, 1)
    env.files["ls"] = image_file(root, ("legacysurvey", "dr10_south_21"), 1113, "LS", env.img["ls"],
                                 ["des-g", "des-r", "des-i", "des-z"])
    env.files["ls_unnamed"] = image_file(root, ("legacysurvey", "dr10_south_21"), 1116, "LSU", blobs(3, 4, 2))
    env.img["hsc"] = blobs(4, 5, 3)
    env.hsc_mask = np.ones(env.img["hsc"].shape, bool)
    env.hsc_mask[:, :, 30:34, :] = False  # per band, True = clean
    env.files["hsc"] = image_file(root, ("hsc", "pdr3_dud_22.5"), 1113, "HSC", env.img["hsc"],
                                  ["hsc-g", "hsc-r", "hsc-i", "hsc-z", "hsc-y"],
                                  {"image_scale": np.full((4, 5), 0.168, np.float32), "image_mask": env.hsc_mask})
    env.img["rgb"] = blobs(5, 3, 4)
    env.rgb_scale = 0.5  # a 50-pixel crop of the 64: the scale matters
    env.files["rgb"] = image_file(root, ("colours", "set"), 1113, "RGB", env.img["rgb"], ["R", "G", "B"],
                                  {"pxscale": np.full(5, env.rgb_scale, np.float32)})
    # The same pixels stored B, R, G: the table's order puts them back.
    env.files["rgb_shuffled"] = image_file(root, ("colours_shuffled", "set"), 1113, "RGB",
                                           env.img["rgb"][:, [2, 0, 1]], ["B", "R", "G"],
                                           {"pxscale": np.full(5, env.rgb_scale, np.float32)})
    n = 4
    env.img["gz10"] = np.clip(blobs(n, 3, 7) * 40, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)  # channels last
    ra, dec = mf.positions(n, 8, mf.CELL_BOX)
    env.files["gz10"] = mf.write_mmu_file(
        mf.mmu_path(root, ("gz10", "datafiles"), mf.CELL, "001-of-001.h5"),
        {"ans": np.arange(n) % 3, "dec": dec, "images": env.img["gz10"], "pxscale": np.full(n, 0.262, np.float32),
         "ra": ra, "redshift": np.full(n, 0.05), "object_id": np.arange(n), "healpix": np.full(n, mf.CELL)})
    env.files["jwst"] = image_file(root, ("jwst", "primer-cosmos"), 1113, "JW", blobs(3, 1, 5), ["f150w"])
    env.store = os.path.join(env.tmp, "store")
    env.build = run(env.index, "build", root, "--store", env.store)


@case("build: per survey, the bands used, the space, the pixel scale and its source")
def _(env):
    out = env.build.stdout
    for line in ('images of legacysurvey: bands des-g, des-r, des-i, des-z -> space image; pixel scale 0.262"/px (table)',
                 'images of legacysurvey: bands des-g, des-r, des-i, des-z -> space image (no image_band: the builder\'s order)',
                 'images of hsc: bands hsc-g, hsc-r, hsc-i, hsc-z -> space image (not used: hsc-y); '
                 'pixel scale 0.168"/px (file: image_scale)',
                 'images of colours: bands r, g, b -> space image-rgb; pixel scale 0.5"/px (file: pxscale)',
                 'images of jwst: bands f150w -> space image-f150w; pixel scale 0.262"/px (assumed)',
                 'images of gz10: bands r, g, b -> space image-rgb (no image_band: the builder\'s order); '
                 'pixel scale 0.262"/px (file: pxscale)'):
        need(line in out, "build output lacks %r:\n%s" % (line, out))


@case("build: warnings on stderr name the file without image_band and the file with no pixel scale")
def _(env):
    err = env.build.stderr
    need("warning: '%s' has no 'image_band' dataset: took its 4 bands to be des-g, des-r, des-i, des-z"
         % env.files["ls_unnamed"] in err, "no warning naming the file without image_band:\n" + err)
    need("warning: '%s' gives no pixel scale" % env.files["jwst"] in err and "assumed 0.262 arcsec/pixel" in err,
         "no warning naming the file without a pixel scale:\n" + err)
    need(err.count("warning:") == 2, "exactly those two warnings expected:\n" + err)
    q = run(env.index, "build", env.root, "--store", os.path.join(env.tmp, "store_quiet"), "--quiet")
    need(q.stderr.count("warning:") == 2 and q.stdout == "", "--quiet keeps the warnings: %r %r" % (q.stdout, q.stderr))


@case("spaces: legacysurvey and hsc share image; R,G,B and f150w get their own")
def _(env):
    members = {}
    for space in ("image", "image-rgb", "image-f150w"):
        _, meta = load_space(env.store, space)
        members[space] = sorted({m[1] for m in meta}), len(meta)
    need(members["image"] == (["hsc", "legacysurvey"], 6 + 3 + 4), "image: %r" % (members["image"],))
    need(members["image-rgb"] == (["colours", "colours_shuffled", "gz10"], 14), "image-rgb: %r" % (members["image-rgb"],))
    need(members["image-f150w"] == (["jwst"], 3), "image-f150w: %r" % (members["image-f150w"],))


@case("vectors: image-rgb (pxscale, R,G,B order, gz10 channels last) and image (hsc with its per-band mask) equal numpy")
def _(env):
    vecs, meta = load_space(env.store, "image-rgb")
    fit = fit_path(env.store, "image-rgb")
    ones = np.ones(env.img["rgb"].shape[1:], bool)
    for i, (oid, survey) in enumerate((m[0], m[1]) for m in meta):
        if survey == "gz10":
            want = baseline_vector(env.img["gz10"][int(oid)].transpose(2, 0, 1), ones, [0, 1, 2], 0.262, fit)
        else:
            want = baseline_vector(env.img["rgb"][int(oid.split("-")[1])], ones, [0, 1, 2], env.rgb_scale, fit)
        need(np.abs(vecs[i] - want).max() < 1e-4, "%s %s differs from numpy by %g" % (survey, oid, np.abs(vecs[i] - want).max()))
    by = {(m[1], m[0]): vecs[i] for i, m in enumerate(meta)}
    for k in range(5):
        a, b = by[("colours", "RGB-%03d" % k)], by[("colours_shuffled", "RGB-%03d" % k)]
        need(np.abs(a - b).max() < 1e-6, "bands stored B,R,G give another vector (%g)" % np.abs(a - b).max())
    vecs, meta = load_space(env.store, "image")
    fit = fit_path(env.store, "image")
    for i, m in enumerate(meta):
        if m[1] != "hsc":
            continue
        k = int(m[0].split("-")[1])
        want = baseline_vector(env.img["hsc"][k], env.hsc_mask[k], [0, 1, 2, 3], 0.168, fit)
        need(np.abs(vecs[i] - want).max() < 1e-4, "hsc %s differs from numpy by %g" % (m[0], np.abs(vecs[i] - want).max()))


@case("--like on an R,G,B object without --space: image-rgb, said, equal to brute force")
def _(env):
    r = run(env.search, "--store", env.store, "--like", "RGB-002", "--survey", "colours", "--k", "4", "--format", "json")
    js = json.loads(r.stdout)
    need(js["space"] == "image-rgb", "space %r" % js["space"])
    need("no vector in the default image space image" in js.get("space_note", ""), "no note: %r" % js)
    vecs, meta = load_space(env.store, "image-rgb")
    qi = [i for i, m in enumerate(meta) if m[:2] == ("RGB-002", "colours")][0]
    scores = vecs.astype(np.float64) @ vecs[qi].astype(np.float64)
    scores[qi] = -np.inf  # the query itself is never returned
    want = sorted((meta[i][1], meta[i][0]) for i in np.argsort(-scores, kind="stable")[:4])
    need(scores[np.argsort(-scores)[3]] - scores[np.argsort(-scores)[4]] > 1e-5, "a tie at rank 4: pick other data")
    got = sorted((n["survey"], n["object_id"]) for n in js["results"])
    need(got == want, "neighbours %r, brute force %r" % (got, want))
    need(("colours_shuffled", "RGB-002") in got, "the B,R,G copy is not a neighbour: %r" % got)
    t = run(env.search, "--store", env.store, "--like", "RGB-002", "--survey", "colours", "--k", "3").stdout
    need("in space image-rgb" in t and "no vector in the default image space image" in t, "table output:\n" + t)


@case("an image whose bands cannot be named is refused, naming the file and dataset")
def _(env):
    root = os.path.join(env.tmp, "unnamed")
    path = image_file(root, ("mystery", "set"), 1113, "MY", blobs(3, 2, 6))
    r = run(env.index, "build", root, "--store", os.path.join(env.tmp, "store_unnamed"), ok=False)
    need(r.returncode != 0, "built an image with unnamed bands")
    need(path in r.stderr and "image_array" in r.stderr and "cannot be named" in r.stderr, "error: " + r.stderr)
    root2 = os.path.join(env.tmp, "twice")
    path2 = image_file(root2, ("mystery", "set"), 1113, "MY", blobs(3, 2, 6), ["des-g", "hsc-g"])
    r = run(env.index, "build", root2, "--store", os.path.join(env.tmp, "store_twice"), ok=False)
    need(r.returncode != 0 and path2 in r.stderr and "same filter" in r.stderr, "two g bands: " + r.stderr)


@case("btsbot's image_triplet is not read, and the build says so naming the file; its objects are catalogued")
def _(env):
    root = os.path.join(env.tmp, "btsbot")
    n = 3
    ra, dec = mf.positions(n, mf.CELL, mf.CELL_BOX)
    path = mf.write_mmu_file(mf.mmu_path(root, ("btsbot", "train"), mf.CELL), {
        "object_id": np.arange(1, n + 1, dtype=np.int64), "ra": ra, "dec": dec,
        "image_triplet": np.random.default_rng(9).normal(size=(n, 63, 63, 3)).astype(np.float32),
        "band": np.array([b"g", b"r", b"g"])})
    store = os.path.join(env.tmp, "store_btsbot")
    r = run(env.index, "build", root, "--store", store, "--quiet", ok=True)
    need(("warning: '%s': 'image_triplet'" % path) in r.stderr and "not read" in r.stderr, "stderr: " + r.stderr)
    q = run(env.search, "--store", store, "--like", "2", ok=False)
    need(q.returncode != 0, "an object without a vector answered --like: " + q.stdout)


@case("inspect: every dataset the reader uses has its role")
def _(env):
    spec = mf.write_mmu_file(mf.mmu_path(os.path.join(env.tmp, "others"), ("desi", "edr_sv3")), mf.spectrum_datasets(3))
    lc = os.path.join(env.tmp, "others", "cfa", "cfa", "healpix=1113", "sn1.hdf5")
    os.makedirs(os.path.dirname(lc))
    with h5py.File(lc, "w") as f:
        f["object_id"] = b"SN1"
        f["ra"], f["dec"] = 30.5, 0.5
        f["time"] = np.tile(np.arange(10.0), (2, 1))
        f["mag"] = np.full((2, 10), 18.0)
        f["mag_err"] = np.full((2, 10), 0.1)
    r = run(env.index, "inspect", env.files["hsc"], env.files["rgb"], env.files["gz10"], spec, lc, "--format", "json")
    roles = {}
    for e in json.loads(r.stdout):
        need(e["error"] is None, "%s: %s" % (e["path"], e["error"]))
        for k in e["keys"]:
            roles[(os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(e["path"])))), k["name"])] = k["role"]
    want = {("hsc", "image_band"): "image bands (hsc-g, hsc-r, hsc-i, hsc-z -> space image)",
            ("hsc", "image_scale"): "pixel scale",
            ("hsc", "image_array"): "image data",
            ("colours", "pxscale"): "pixel scale",
            ("gz10", "images"): "image data",
            ("gz10", "pxscale"): "pixel scale",
            ("colours", "image_band"): "image bands (r, g, b -> space image-rgb)",
            ("desi", "spectrum_lambda"): "spectrum wavelength",
            ("desi", "spectrum_ivar"): "spectrum inverse variance",
            ("cfa", "time"): "light-curve time",
            ("cfa", "mag_err"): "light-curve magnitude error",
            ("cfa", "mag"): "lightcurve data"}
    for key, role in want.items():
        need(roles.get(key) == role, "%s: role %r, expected %r" % (key, roles.get(key), role))
    need('pixel scale 0.168"/px (file: image_scale)' in (roles.get(("hsc", "(image)")) or ""),
         "no image summary: %r" % roles.get(("hsc", "(image)")))


def main():
    a, index, search = binaries_samples_tmp(inputs=())
    env = Env()
    env.index, env.search, env.tmp = index, search, a.tmp
    return run_cases(CASES, env, setup)


if __name__ == "__main__":
    sys.exit(main())
