#!/usr/bin/python3
"""Checks the generated MMU-format sample data and its generator.

Usage:
  /usr/bin/python3 tests/py/test_samples_layout.py --samples data/samples \
      --generator tools/make_samples.py --tmp <tmpdir>

Checks, against docs/MMU-FORMAT.md sections 1-3:
  * every file's datasets, shapes, dtypes, filters (LZF = 32000 on images,
    none and contiguous on spectra), mask polarity and values;
  * healpix = the recomputed nside-16 NESTED cell = the healpix=N folder;
  * unique ids per survey; truth.csv consistent with the files; shared galaxies
    < 0.5" apart; the committed set holds every class in both surveys;
  * ang2pix on two real MMU objects and by pix2ang round trips;
  * the generator is deterministic (twice, with different --jobs) and reproduces
    the committed set byte for byte (and the sha256 table of its README).
Needs only numpy and h5py (Debian's python3).  Exit status 1 on any failure.
"""

import argparse
import csv
import hashlib
import re
import subprocess
import sys
import traceback
from pathlib import Path

import h5py
import numpy as np

IMAGE_DIR = Path("legacysurvey/dr10_south_21")
SPEC_DIR = Path("desi/edr_sv3")
CLASSES = {"elliptical", "spiral", "edge_on", "merger", "lens"}
N_SPEC = 7781
LZF_FILTER_ID = 32000


class Checks:
    """Named checks; a check fails on its first failed expectation."""

    def __init__(self):
        self.passed, self.failed = 0, []

    def run(self, name, fn, *args):
        try:
            fn(*args)
            self.passed += 1
        except Exception as exc:  # report every failure, keep going
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.failed.append(f"{name}: {detail}")
            print(f"FAIL {name}: {detail}")


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def cell_of(path):
    """The N of the enclosing healpix=N folder."""
    m = re.fullmatch(r"healpix=(\d+)", path.parent.name)
    expect(m is not None, f"{path}: parent folder is not healpix=N")
    return int(m.group(1))


def filter_ids(ds):
    plist = ds.id.get_create_plist()
    return [plist.get_filter(k)[0] for k in range(plist.get_nfilters())]


def expect_dataset(f, name, shape, dtype):
    expect(name in f, f"{f.filename}: dataset {name} missing")
    ds = f[name]
    expect(ds.shape == shape, f"{f.filename}:{name}: shape {ds.shape}, expected {shape}")
    expect(ds.dtype == np.dtype(dtype), f"{f.filename}:{name}: dtype {ds.dtype}, expected {dtype}")
    return ds


def sep_arcsec(ra1, dec1, ra2, dec2):
    """Great-circle separation (haversine), degrees in, arcsec out."""
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(h))) * 3600.0


# ---------------------------------------------------------------------------
# Per-file layout
# ---------------------------------------------------------------------------

def check_common(f, path, n, healpix_mod):
    ra = expect_dataset(f, "ra", (n,), "f8")[()]
    dec = expect_dataset(f, "dec", (n,), "f8")[()]
    hp = expect_dataset(f, "healpix", (n,), "i8")[()]
    expect(np.all((ra >= 0) & (ra < 360) & (dec >= -90) & (dec <= 90)), f"{path}: ra/dec out of range")
    cell = cell_of(path)
    expect(np.all(hp == cell), f"{path}: healpix column {set(hp.tolist())} != folder {cell}")
    recomputed = healpix_mod.mmu_cell(ra, dec)
    expect(np.array_equal(recomputed, hp), f"{path}: healpix != ang2pix_nest(16, ra, dec)")
    return ra, dec


def check_image_file(path, healpix_mod, out):
    with h5py.File(path, "r") as f:
        n = f["image_array"].shape[0]
        expect(n > 0, f"{path}: empty file")
        arr = expect_dataset(f, "image_array", (n, 4, 160, 160), "f4")
        msk = expect_dataset(f, "image_mask", (n, 160, 160), bool)
        for ds, chunks in ((arr, (1, 4, 160, 160)), (msk, (1, 160, 160))):
            expect(filter_ids(ds) == [LZF_FILTER_ID], f"{path}:{ds.name}: filters {filter_ids(ds)}")
            expect(ds.chunks == chunks, f"{path}:{ds.name}: chunks {ds.chunks}")
        bands = expect_dataset(f, "image_band", (n, 4), "S5")[()]
        expect(np.all(bands == np.array([b"des-g", b"des-r", b"des-i", b"des-z"])), f"{path}: image_band")
        psf = expect_dataset(f, "image_psf_fwhm", (n, 4), "f4")[()]
        expect(np.all((psf >= 1.0) & (psf <= 1.6)), f"{path}: psf fwhm outside 1.0-1.6")
        scale = expect_dataset(f, "image_scale", (n, 4), "f4")[()]
        expect(np.all(scale == np.float32(0.262)), f"{path}: image_scale != 0.262")
        oid = f["object_id"]
        info = h5py.check_string_dtype(oid.dtype)
        expect(info is not None and info.encoding == "utf-8" and info.length == 16,
               f"{path}: object_id is not a fixed 16-byte UTF-8 string ({oid.dtype})")
        expect(oid.shape == (n,), f"{path}: object_id shape")
        ids = [s.decode("utf-8") for s in oid[()]]
        expect(all(re.fullmatch(r"\d{4}[pm]\d{3}-\d+", s) for s in ids), f"{path}: object_id format")
        ra, dec = check_common(f, path, n, healpix_mod)
        for name in ("FLUX_G", "FLUX_R", "FLUX_I", "FLUX_Z", "SHAPE_R", "EBV"):
            col = expect_dataset(f, name, (n,), "f4")[()]
            expect(np.all(np.isfinite(col)), f"{path}:{name} not finite")
        types = expect_dataset(f, "TYPE", (n,), "S3")[()]
        expect(set(types.tolist()) <= {b"DEV", b"EXP", b"SER", b"REX"}, f"{path}: TYPE values")
        expect(np.all(f["FLUX_R"][()] > 0), f"{path}: FLUX_R must be positive")
        for i in range(n):
            img, good = arr[i], msk[i]
            expect(np.all(np.isfinite(img[:, good])), f"{path}[{i}]: NaN/Inf in an unmasked pixel")
            expect(not np.any(np.isinf(img)), f"{path}[{i}]: Inf pixel")
            out["pixels"] += good.size
            out["masked"] += int((~good).sum())
            out["nan_objects"] += int(np.isnan(img).any())
            # Catalogue flux vs the image: r-band sum in a 30" aperture of good pixels
            # (neighbours and truncated wings make this approximate).
            yy, xx = np.mgrid[0:160, 0:160]
            ap = good & ((xx - 80) ** 2 + (yy - 80) ** 2 <= 57 ** 2)
            out["flux_ratio"].append(float(img[1][ap].sum()) / float(f["FLUX_R"][i]))
    out["ids"] += list(zip(ids, ra.tolist(), dec.tolist(), [str(path)] * n))


def check_spectrum_file(path, healpix_mod, out):
    with h5py.File(path, "r") as f:
        n = f["spectrum_flux"].shape[0]
        expect(n > 0, f"{path}: empty file")
        lam_ref = (3600.0 + 0.8 * np.arange(N_SPEC)).astype(np.float32)
        for name, dtype in (("flux", "f4"), ("ivar", "f4"), ("lambda", "f4"), ("mask", bool)):
            ds = expect_dataset(f, f"spectrum_{name}", (n, N_SPEC), dtype)
            expect(ds.compression is None and filter_ids(ds) == [], f"{path}:{ds.name}: compressed")
            expect(ds.chunks is None, f"{path}:{ds.name}: not contiguous")
        flux, ivar = f["spectrum_flux"][()], f["spectrum_ivar"][()]
        lam, mask = f["spectrum_lambda"][()], f["spectrum_mask"][()]
        expect(np.all(np.abs(lam - lam_ref[None, :]) <= 1e-3), f"{path}: lambda != 3600 + 0.8 i")
        expect(np.all(np.isfinite(flux)) and np.all(np.isfinite(ivar)), f"{path}: non-finite values")
        expect(np.all(ivar >= 0), f"{path}: negative ivar")
        expect(np.all(ivar[mask] == 0), f"{path}: masked pixels (True = bad) must have ivar 0")
        expect(np.all(ivar[~mask] > 1e-6), f"{path}: unmasked pixel with ivar <= 1e-6")
        gap = (lam_ref >= 5765) & (lam_ref <= 5795)
        expect(np.all(mask[:, gap]), f"{path}: camera gap not masked")
        out["spec_pixels"] += mask.size
        out["spec_masked"] += int(mask.sum())
        ids = expect_dataset(f, "object_id", (n,), "i8")[()]
        tid = expect_dataset(f, "TARGETID", (n,), "i8")[()]
        expect(np.array_equal(ids, tid), f"{path}: object_id != TARGETID")
        expect(np.all(ids >= 39620000000000000), f"{path}: TARGETID not DESI-like")
        ra, dec = check_common(f, path, n, healpix_mod)
        z = expect_dataset(f, "Z", (n,), "f8")[()]
        expect_dataset(f, "ZERR", (n,), "f4")
        zwarn = expect_dataset(f, "ZWARN", (n,), "i8")[()]
        spectype = expect_dataset(f, "SPECTYPE", (n,), "S6")[()]
        expect(np.all(spectype == b"GALAXY"), f"{path}: SPECTYPE")
        out["zwarn"] += [int(w) for w in zwarn]
        out["median_flux"].append(float(np.median(flux[~mask])))
    out["ids"] += list(zip([str(int(i)) for i in ids], ra.tolist(), dec.tolist(), [str(path)] * n))
    out["z"].update({str(int(i)): (float(zi), int(w)) for i, zi, w in zip(ids, z, zwarn)})


def new_tally():
    return {"ids": [], "pixels": 0, "masked": 0, "nan_objects": 0, "flux_ratio": [],
            "spec_pixels": 0, "spec_masked": 0, "median_flux": [], "z": {}, "zwarn": []}


# ---------------------------------------------------------------------------
# Whole-set checks
# ---------------------------------------------------------------------------

def read_truth(root):
    with open(root / "truth.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    expect(rows and list(rows[0].keys()) == ["survey", "object_id", "galaxy", "class", "redshift", "log_mass"],
           "truth.csv header")
    return rows


def check_truth(root, img, spec, committed):
    rows = read_truth(root)
    key = [(r["survey"], int(r["galaxy"])) for r in rows]
    expect(key == sorted(key), "truth.csv not sorted by (survey, galaxy)")
    for survey, tally in (("legacysurvey", img), ("desi", spec)):
        truth = {r["object_id"]: r for r in rows if r["survey"] == survey}
        ids = [t[0] for t in tally["ids"]]
        expect(len(ids) == len(set(ids)), f"{survey}: duplicate object_id")
        expect(set(ids) == set(truth), f"{survey}: truth.csv ids differ from the files")
        for r in truth.values():
            expect(r["class"] in CLASSES, f"unknown class {r['class']}")
            z, m = float(r["redshift"]), float(r["log_mass"])
            expect(0.02 <= z <= 0.6 and 9.0 <= m <= 11.8, f"{survey} {r['object_id']}: z/mass out of range")
    # The same galaxy in both surveys: same truth, positions < 0.5" apart.
    by_gal = {}
    for r in rows:
        by_gal.setdefault(int(r["galaxy"]), {})[r["survey"]] = r
    pos = {t[0]: t[1:3] for t in img["ids"] + spec["ids"]}
    shared = [g for g in by_gal.values() if len(g) == 2]
    seps = []
    for g in shared:
        a, b = g["legacysurvey"], g["desi"]
        expect((a["class"], a["redshift"], a["log_mass"]) == (b["class"], b["redshift"], b["log_mass"]),
               f"galaxy {a['galaxy']}: truth differs between surveys")
        seps.append(sep_arcsec(*pos[a["object_id"]], *pos[b["object_id"]]))
    seps = np.array(seps)
    expect(seps.size == 0 or (seps.max() < 0.5 and seps.min() > 0.0),
           f"shared galaxies separated by {seps.min() if seps.size else 0}-{seps.max() if seps.size else 0}\"")
    # DESI redshifts agree with the truth (unless flagged).
    for r in rows:
        if r["survey"] == "desi":
            z, zwarn = spec["z"][r["object_id"]]
            expect(zwarn != 0 or abs(z - float(r["redshift"])) < 0.005, f"desi {r['object_id']}: Z far from truth")
    if committed:
        check_committed_content(rows, img, spec, len(shared))


def check_committed_content(rows, img, spec, n_shared):
    for survey, tally in (("legacysurvey", img), ("desi", spec)):
        classes = [r["class"] for r in rows if r["survey"] == survey]
        missing = CLASSES - set(classes)
        expect(not missing, f"{survey}: classes missing {missing}")
        expect(classes.count("lens") >= 2, f"{survey}: fewer than 2 lenses")
        cells = {Path(t[3]).parent.name for t in tally["ids"]}
        expect(len(cells) >= 3, f"{survey}: only {len(cells)} cells")
    expect(n_shared >= 10, f"only {n_shared} galaxies in both surveys")


def check_image_statistics(img, committed):
    frac = img["masked"] / max(1, img["pixels"])
    expect(frac < 0.10, f"masked image pixel fraction {frac:.4f} not a few %")
    if committed:   # small sets may, by chance, have no artefacts at all
        expect(frac > 0.001, f"masked image pixel fraction {frac:.4f} not a few %")
        expect(img["nan_objects"] >= 1, "no image has NaN in masked pixels")
    ratio = np.median(img["flux_ratio"])
    expect(0.7 < ratio < 1.5, f"median image-sum / FLUX_R = {ratio:.2f}")


def check_spectrum_statistics(spec):
    frac = spec["spec_masked"] / max(1, spec["spec_pixels"])
    expect(0.01 < frac < 0.08, f"masked spectrum pixel fraction {frac:.4f} not a few %")
    med = np.median(spec["median_flux"])
    expect(0.3 < med < 30, f"median spectrum flux {med:.2f} not ~0.5-20")
    flagged = np.mean(np.array(spec["zwarn"]) != 0)
    expect(flagged <= 0.2, f"{flagged:.0%} of the redshifts have ZWARN != 0")


def check_set(checks, root, healpix_mod, committed, label):
    img, spec = new_tally(), new_tally()
    img_files = sorted((root / IMAGE_DIR).glob("healpix=*/001-of-001.hdf5"))
    spec_files = sorted((root / SPEC_DIR).glob("healpix=*/001-of-001.hdf5"))
    checks.run(f"{label}: files exist", lambda: expect(img_files and spec_files, f"no files under {root}"))
    for p in img_files:
        checks.run(f"{label}: image layout {p.relative_to(root)}", check_image_file, p, healpix_mod, img)
    for p in spec_files:
        checks.run(f"{label}: spectrum layout {p.relative_to(root)}", check_spectrum_file, p, healpix_mod, spec)
    checks.run(f"{label}: image statistics", check_image_statistics, img, committed)
    checks.run(f"{label}: spectrum statistics", check_spectrum_statistics, spec)
    checks.run(f"{label}: truth.csv and cross-survey consistency", check_truth, root, img, spec, committed)


# ---------------------------------------------------------------------------
# HEALPix
# ---------------------------------------------------------------------------

def check_ang2pix_real(hp):
    # Real MMU files (docs/MMU-FORMAT.md section 1): NESTED gives the stored cell;
    # RING would give 958 and 1509.
    expect(int(hp.mmu_cell(169.8107147216797, 20.80902862548828)) == 1772, "SN2007bc != 1772")
    expect(int(hp.mmu_cell(30.553207397460938, -0.09763900190591812)) == 1113, "SN2004dt != 1113")


def check_ang2pix_consistency(hp):
    for nside in (1, 2, 16, 256):
        pix = np.arange(12 * nside * nside)
        ra, dec = hp.pix2ang_nest(nside, pix)
        expect(np.array_equal(hp.ang2pix_nest(nside, ra, dec), pix), f"nside {nside}: round trip failed")
    ra = np.array([0.0, 360.0, -1e-9, 359.9999999, 90.0, 180.0, 270.0, 45.0, 0.0, 123.4])
    dec = np.array([90.0, -90.0, 0.0, 0.0, 41.8103149, -41.8103149, 89.999, -89.999, 0.0, 66.0])
    cells = hp.mmu_cell(ra, dec)
    expect(np.all((cells >= 0) & (cells < 3072)), "cell outside 0..3071")
    expect(cells[0] < 4 * 256 and cells[1] >= 8 * 256, "poles must fall in the polar faces")
    expect(cells[1] == hp.mmu_cell(0.0, -90.0), "ra 360 and ra 0 must agree")
    expect(cells[3] == cells[2], "ra -1e-9 and 359.9999999 must agree")
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 200000), np.degrees(np.arcsin(rng.uniform(-1, 1, 200000)))
    counts = np.bincount(hp.mmu_cell(ra, dec), minlength=3072)
    expect(counts.size == 3072 and counts.min() > 20, "cells are not equal-area")


# ---------------------------------------------------------------------------
# Generator determinism
# ---------------------------------------------------------------------------

def file_hashes(root, skip=("README.md",)):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


def run_generator(generator, out, *args):
    cmd = [sys.executable, str(generator), "--out", str(out), *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    expect(res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stderr}")


def check_deterministic(generator, tmp):
    a, b = tmp / "det-a", tmp / "det-b"
    run_generator(generator, a, "--n", "40", "--seed", "3", "--jobs", "1")
    run_generator(generator, b, "--n", "40", "--seed", "3", "--jobs", "2")
    ha, hb = file_hashes(a), file_hashes(b)
    expect(len(ha) > 2, "small set has no files")
    expect(ha == hb, f"two runs differ: {sorted(k for k in ha.keys() | hb.keys() if ha.get(k) != hb.get(k))}")
    # Rerunning into a used folder with other arguments leaves no stale cells.
    run_generator(generator, a, "--n", "12", "--seed", "4", "--jobs", "1")
    run_generator(generator, b, "--n", "12", "--seed", "4", "--jobs", "1")
    expect(file_hashes(a) == file_hashes(b) and file_hashes(a) != ha, "rerun into a used folder")


def check_reproduces_committed(generator, samples, tmp):
    out = tmp / "default"
    run_generator(generator, out)
    committed, fresh = file_hashes(samples), file_hashes(out)
    diff = sorted(k for k in committed.keys() | fresh.keys() if committed.get(k) != fresh.get(k))
    expect(not diff, f"regenerated default set differs from {samples}: {diff[:10]}")


def check_readme_hashes(samples):
    text = (samples / "README.md").read_text()
    listed = dict((p, h) for p, h in re.findall(r"`([^`]+)`\s*\|\s*\d+\s*\|\s*`([0-9a-f]{64})`", text))
    actual = file_hashes(samples)
    expect(listed == actual, "README.md sha256 table does not match the files: "
           f"{sorted(k for k in listed.keys() | actual.keys() if listed.get(k) != actual.get(k))[:10]}")


def main():
    ap = argparse.ArgumentParser(description="MMU sample data layout tests")
    ap.add_argument("--samples", required=True, type=Path)
    ap.add_argument("--generator", required=True, type=Path)
    ap.add_argument("--tmp", required=True, type=Path)
    args = ap.parse_args()
    args.tmp.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(args.generator.resolve().parent))
    import mmu_healpix as hp

    checks = Checks()
    checks.run("ang2pix: real MMU objects", check_ang2pix_real, hp)
    checks.run("ang2pix: round trips, poles and edges", check_ang2pix_consistency, hp)
    check_set(checks, args.samples, hp, True, "samples")
    checks.run("samples: README sha256 table", check_readme_hashes, args.samples)
    checks.run("generator: deterministic, --jobs independent", check_deterministic, args.generator, args.tmp)
    check_set(checks, args.tmp / "det-b", hp, False, "small regenerated set")
    checks.run("generator: reproduces data/samples", check_reproduces_committed,
               args.generator, args.samples, args.tmp)
    print(f"{checks.passed} passed, {len(checks.failed)} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
