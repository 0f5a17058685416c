"""End to end: light curves padded in every MMU builder convention give the same stored vectors.

The same labelled synthetic light curves (three classes of shape, random dates over 16 years) are
written by h5py in each builder's layout and padding (docs: /work MMU builders, see
src/read/light_curve_padding.cpp):
  flux-none   per-object time/flux/flux_err (bands, L), every band exactly L points: no padding
  flux-snana  the same, time -99 / flux 0 / err 0 at the end of each row, rows longer by a random
              amount, plus a band row never observed (swift_sne_ia, foundation, ps1, snls, des_y3)
  flux-zero   the same with 0 / 0 / 0 padding
  plasticc    one row table lightcurve (N, 6, 3, L) float64, zero padding, Y row empty
  mag-none, mag-zero   cfa/csp: time/mag/mag_err, unpadded and zero padded
  tess, tess-nan       (N, L) single band, zero padded per file; tess-nan adds NaN-flux cadences
Checks: bit-equal vectors (same ids, positions and cells) for flux-none/-snana/-zero, mag-none/-zero,
tess/tess-nan; plasticc equal to flux-none within float rounding (its rows are in another order for
the PCA) with identical --like results; class precision@10 the same padded and unpadded; builds of
clean files print no warning; look-alike padding and NaN fluxes are warned about on stderr naming
the file, even with --quiet.
Run: test_lc_padding.py --bin BUILD --tmp DIR [--figures] (--figures: only the mag stores' precision,
which a build that predates the time/flux reader can also make).
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks  # noqa: E402
from layout_fixtures import NSIDE, ang2pix_nest  # noqa: E402
from space_reading import load_space  # noqa: E402

CLASSES = ("fast", "plateau", "slow")
PER_CLASS = 16
BANDS = 3


def model_flux(cls, t, t0, amp):
    ph = t - t0
    if cls == "fast":
        return amp * np.exp(-np.maximum(ph, 0) / 18.0) / (1 + np.exp(-ph / 2.0))
    if cls == "plateau":
        return amp / (1 + np.exp(-ph / 4.0)) / (1 + np.exp((ph - 90.0) / 5.0))
    return amp * np.exp(-np.maximum(ph, 0) / 160.0) / (1 + np.exp(-ph / 25.0))


def make_curves(rng):
    """[(id, class, ra, dec, time (B, n), flux (B, n), err (B, n))], float32, times on a quarter-day grid."""
    out = []
    for c, cls in enumerate(CLASSES):
        for j in range(PER_CLASS):
            n = int(rng.integers(10, 30))
            start = 53000.0 + 0.25 * int(rng.integers(0, 4 * 5800))  # 16 years of dates
            t0 = start + rng.uniform(15, 40)
            amp = 10 ** rng.uniform(2.2, 3.0)
            t = np.sort(start + 0.25 * rng.integers(0, 4 * 200, (BANDS, n)), axis=1).astype(np.float32)
            err = (amp * rng.uniform(0.02, 0.05, (BANDS, n))).astype(np.float32)
            colour = np.array([0.8, 1.0, 0.9])[:, None]
            flux = (colour * model_flux(cls, t.astype(np.float64), t0, amp) + rng.normal(0, 1, (BANDS, n)) * err)
            flux = np.maximum(flux, 1.5 * err).astype(np.float32)  # mag files need a positive flux
            ra, dec = rng.uniform(30, 60), rng.uniform(-10, 10)
            out.append(("SIM%03d" % (c * PER_CLASS + j), cls, ra, dec, t, flux, err))
    return out


def to_mag(flux, err):
    return (25.0 - 2.5 * np.log10(flux)).astype(np.float32), (1.0857 * err / flux).astype(np.float32)


def padded_rows(a, length, rows, fill):
    out = np.full((rows, length), fill, np.float32)
    out[:a.shape[0], :a.shape[1]] = a
    return out


def write_per_object(root, curves, kind, pad_time, rng, pad):
    """One file per object in <root>/snsim/sim/healpix=N/; pad: add a never-observed band and 1-15 padded points."""
    for oid, _, ra, dec, t, flux, err in curves:
        rows = BANDS + (1 if pad else 0)
        length = t.shape[1] + (int(rng.integers(1, 16)) if pad else 0)
        hp = int(ang2pix_nest(NSIDE, ra, dec))
        d = os.path.join(root, "snsim", "sim", "healpix=%d" % hp)
        os.makedirs(d, exist_ok=True)
        v, e = (flux, err) if kind == "flux" else to_mag(flux, err)
        with h5py.File(os.path.join(d, oid + ".hdf5"), "w") as f:
            f.create_dataset("object_id", data=np.bytes_(oid.encode()), dtype="S8")
            f.create_dataset("ra", data=np.float64(ra))
            f.create_dataset("dec", data=np.float64(dec))
            f.create_dataset("healpix", data=np.int64(hp))
            f.create_dataset("time", data=padded_rows(t, length, rows, pad_time))
            f.create_dataset(kind, data=padded_rows(v, length, rows, 0.0))
            f.create_dataset(kind + "_err", data=padded_rows(e, length, rows, 0.0))


def write_plasticc(root, curves):
    """scripts/plasticc/build_parent_sample.py: np.zeros((6, 3, L)), L = the file's longest object."""
    n = len(curves)
    length = max(c[4].size for c in curves)  # total observations, as the builder sizes it
    lc = np.zeros((n, 6, 3, length), np.float64)
    for i, (_, _, _, _, t, flux, err) in enumerate(curves):
        m = t.shape[1]
        lc[i, :BANDS, 0, :m], lc[i, :BANDS, 1, :m], lc[i, :BANDS, 2, :m] = t, flux, err
    for hp, rows in by_cell(curves).items():  # the builder writes one file per healpix cell
        d = os.path.join(root, "snsim", "sim", "healpix=%d" % hp)
        os.makedirs(d)
        with h5py.File(os.path.join(d, "train_01.hdf5"), "w") as f:
            f.create_dataset("lightcurve", data=lc[rows])
            f.create_dataset("object_id", data=np.array([curves[i][0].encode() for i in rows], dtype="S8"))
            f.create_dataset("ra", data=np.array([curves[i][2] for i in rows]))
            f.create_dataset("dec", data=np.array([curves[i][3] for i in rows]))


def by_cell(curves):
    """{healpix cell: [indices of curves in it]}: MMU files hold the objects of one cell."""
    cells = {}
    for i, c in enumerate(curves):
        cells.setdefault(int(ang2pix_nest(NSIDE, c[2], c[3])), []).append(i)
    return cells


def write_tess(root, curves, nan_every):
    """scripts/tess/build_parent_sample.py: (N, L) time/flux/flux_err, np.pad with 0 to the file's longest.
    nan_every > 0 inserts a NaN-flux cadence after every nan_every-th point (tess keeps them)."""
    rows = []
    for _, _, _, _, t, flux, err in curves:
        tt, ff, ee = list(t[1]), list(flux[1]), list(err[1])
        if nan_every:
            for k in range(len(tt) - 1, 0, -nan_every):
                tt.insert(k, tt[k - 1])
                ff.insert(k, np.float32(np.nan))
                ee.insert(k, np.float32(np.nan) if k % 2 else ee[k - 1])
        rows.append((tt, ff, ee))
    length = max(len(r[0]) for r in rows)
    arr = [np.zeros((len(rows), length), np.float32) for _ in range(3)]
    for i, r in enumerate(rows):
        for a, v in zip(arr, r):
            a[i, :len(v)] = v
    for hp, rows in by_cell(curves).items():  # one file per healpix cell, as the builder writes
        d = os.path.join(root, "tess", "spoc", "healpix=%d" % hp)
        os.makedirs(d)
        with h5py.File(os.path.join(d, "001-of-001.hdf5"), "w") as f:
            for name, a in zip(("time", "flux", "flux_err"), arr):
                f.create_dataset(name, data=a[rows])
            f.create_dataset("object_id", data=np.array([curves[i][0].encode() for i in rows], dtype="S8"))
            f.create_dataset("RA", data=np.array([curves[i][2] for i in rows]))
            f.create_dataset("DEC", data=np.array([curves[i][3] for i in rows]))


def build(index, root, store):
    p = subprocess.run([index, "build", root, "--store", store, "--dim", "8", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit("build of %s failed (%d):\n%s" % (root, p.returncode, p.stderr))
    return p.stderr


def precision_at_10(vecs, meta, label):
    """Mean fraction of each object's 10 nearest others (numpy brute force) that share its class."""
    s = vecs @ vecs.T
    np.fill_diagonal(s, -np.inf)
    labels = np.array([label[m[0]] for m in meta])
    top = np.argsort(-s, axis=1, kind="stable")[:, :10]
    return float(np.mean(labels[top] == labels[:, None]))


def like_all(search, store, ids, tmp):
    path = os.path.join(tmp, "ids.txt")
    with open(path, "w") as f:
        f.write("\n".join(ids) + "\n")
    p = subprocess.run([search, "--store", store, "--like-file", path, "--k", "10", "--format", "csv"],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit("--like-file on %s failed: %s" % (store, p.stderr))
    out = {}
    for r in csv.DictReader(p.stdout.splitlines()):
        out.setdefault(r["query"], []).append(r["object_id"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--figures", action="store_true")
    a = ap.parse_args()
    shutil.rmtree(a.tmp, ignore_errors=True)
    os.makedirs(a.tmp)
    index, search = os.path.join(a.bin, "mmu-index"), os.path.join(a.bin, "mmu-search")
    rng = np.random.default_rng(15)
    curves = make_curves(rng)
    label = {c[0]: c[1] for c in curves}
    ck = Checks()

    writers = {
        "mag-none": lambda r: write_per_object(r, curves, "mag", 0.0, rng, False),
        "mag-zero": lambda r: write_per_object(r, curves, "mag", 0.0, rng, True),
        "mag-snana": lambda r: write_per_object(r, curves, "mag", -99.0, rng, True),
    }
    if not a.figures:
        writers.update({
            "flux-none": lambda r: write_per_object(r, curves, "flux", -99.0, rng, False),
            "flux-snana": lambda r: write_per_object(r, curves, "flux", -99.0, rng, True),
            "flux-zero": lambda r: write_per_object(r, curves, "flux", 0.0, rng, True),
            "plasticc": lambda r: write_plasticc(r, curves),
            "tess": lambda r: write_tess(r, curves, 0),
            "tess-nan": lambda r: write_tess(r, curves, 4),
        })
    space, warn = {}, {}
    for name, write in writers.items():
        root, store = os.path.join(a.tmp, name), os.path.join(a.tmp, name + ".store")
        write(root)
        warn[name] = build(index, root, store)
        space[name] = load_space(store, "lightcurve", np.float32)
        prec = precision_at_10(space[name][0].astype(np.float64), space[name][1], label)
        print("light-curve class precision@10 %-10s %.4f (%d objects)" % (name, prec, len(space[name][1])))
        if not a.figures and name != "tess-nan":
            ck.check(warn[name] == "", "%s: a clean builder convention builds without warnings: %r" % (name, warn[name]))
    if a.figures:
        return 0

    def same(x, y):
        (vx, mx), (vy, my) = space[x], space[y]
        ck.check(mx == my, "%s and %s: same ids, positions and cells in the same rows" % (x, y))
        ck.check(vx.shape == vy.shape and vx.tobytes() == vy.tobytes(), "%s and %s: bit-identical vectors" % (x, y))

    same("flux-none", "flux-snana")
    same("flux-none", "flux-zero")
    same("mag-none", "mag-zero")
    same("mag-none", "mag-snana")
    same("tess", "tess-nan")
    ck.check(len(space["flux-none"][1]) == len(curves), "every object is embedded")

    # plasticc: another file layout, so other rows for the PCA; the same vectors up to rounding.
    vu, mu = space["flux-none"]
    vp, mp = space["plasticc"]
    row_p = {m[0]: i for i, m in enumerate(mp)}
    ck.check(sorted(row_p) == sorted(m[0] for m in mu), "plasticc: the same ids")
    diff = max(float(np.max(np.abs(vu[i] - vp[row_p[m[0]]]))) for i, m in enumerate(mu))
    ck.check(diff < 1e-4, "plasticc vectors equal the unpadded ones within rounding (max diff %.2g)" % diff)
    ids = [c[0] for c in curves]
    lu = like_all(search, os.path.join(a.tmp, "flux-none.store"), ids, a.tmp)
    ck.check(len(lu) == len(ids) and all(len(v) == 10 for v in lu.values()), "--like-file: 10 results per id")
    for name in ("flux-snana", "plasticc"):
        ck.check(like_all(search, os.path.join(a.tmp, name + ".store"), ids, a.tmp) == lu,
                 "%s: --like results identical to the unpadded store's" % name)
    p_none = precision_at_10(vu.astype(np.float64), mu, label)
    ck.check(p_none > 0.6, "the features separate the three classes (precision@10 %.3f > 0.6)" % p_none)

    # tess keeps NaN-flux cadences: taken as missing, with a warning naming the file.
    ck.check("warning: '" in warn["tess-nan"] and "001-of-001.hdf5'" in warn["tess-nan"]
             and "NaN/Inf value" in warn["tess-nan"], "tess NaN fluxes: warning on stderr under --quiet: %r"
             % warn["tess-nan"])

    # A padding-like point before real ones: missing, with a warning naming the file.
    root = os.path.join(a.tmp, "holes")
    write_per_object(root, curves[:12], "flux", -99.0, rng, True)
    path = os.path.join(root, "snsim", "sim", "healpix=%d" % int(ang2pix_nest(NSIDE, curves[5][2], curves[5][3])),
                        curves[5][0] + ".hdf5")
    with h5py.File(path, "r+") as f:
        for key, v in (("time", -99.0), ("flux", 0.0), ("flux_err", 0.0)):
            f[key][0, 2] = v
    w = build(index, root, os.path.join(a.tmp, "holes.store"))
    ck.check("warning: '%s': 1 light-curve points look like padding" % path in w,
             "look-alike padding before real points: warning naming the file: %r" % w)
    return ck.summary()


if __name__ == "__main__":
    sys.exit(main())
