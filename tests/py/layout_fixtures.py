"""One small fixture per Multimodal Universe (MMU v1) on-disk layout, written with h5py.

Written independently of the C++ reader, from the facts of docs/MMU-FORMAT.md
(sections 1-3 and 7).  Needs Debian's /usr/bin/python3 (numpy, h5py).

    manifest = write_layout_tree(root)

writes under ``<root>/<dataset>/<subset>/healpix=N/``:

====================  ==============================================================  ===================
dataset/subset        file(s)                                                         layout
====================  ==============================================================  ===================
legacysurvey/dr10_..  healpix=1113, =1116 /001-of-001.hdf5 (LZF, chunked, maxshape)   row table, image
hsc/pdr3_dud_22.5     healpix=1106, =1175 /001-of-001.hdf5 (gzip, big-endian ra/dec)  row table, image
desi/edr_sv3          healpix=1113, =626  /001-of-001.hdf5 (uncompressed, HEALPIX)    row table, spectrum
sdss/sdss, sdss/boss  healpix=583 (L=3800), =1175 (L=4000), PLUG_RA/PLUG_DEC only      row table, spectrum
gaia/gaia             healpix=1631 /001-of-001.hdf5, source_id, no object_id          row table, xp
plasticc/data         healpix=1378 /train_01.hdf5 + test_01.hdf5, no healpix key      row table, lightcurve
cfa/cfa3              healpix=0714 /<id>.hdf5, one object per file, scalars           per-object scalars
csp/csp               healpix=0714 /example_<id>.hdf5                                 per-object scalars
manga/manga           healpix=385 /0001-of-0001.hdf5, one group per plate-IFU         groups per object
desi_provabgs/data..  healpix=669 /001-of-001.h5 (catalog only)                       row table, none
====================  ==============================================================  ===================

Every position lies inside the cell its folder names (checked here with tools/mmu_healpix.py,
nside 16 NESTED), positions are distinct, and the first two legacysurvey objects of cell 1113
have desi counterparts < 0.5" away (cross-match pairs: ``manifest["pairs"]``).  All data are
deterministic (seeded numpy Generators) and differ between objects.

The returned manifest is the expected catalogue: ``objects`` (one dict per object: survey,
subset, object_id in canonical text, ra, dec as stored, ``radec_f32``, healpix, cell, path,
index, modality, layout), ``files`` (path, dataset, subset, healpix_folder, layout, modality,
objects, cells, keys = {name: (dtype name, shape, compression, role)}) and ``pairs``.

Deviations from real MaNGA files, to keep the fixture small and quick (~1 MB per object instead of 841 MB):
``spaxels`` is a 32x32 grid (real: 96x96; writing and reading 3 x 96x96 x 4563 values took ~100 s of
py.layouts on a loaded machine), chunked by one grid row with shuffle + gzip (real files are contiguous,
uncompressed). 1,024 rows still span 16 of the reader's 64-spaxel blocks, the real spaxels three of them.
The content follows the builder: padded spaxels have flux/ivar/lsf 0, mask 1024, the wavelength
grid and the unit strings repeated, sky coordinates 0.
"""

import os
import shutil
import sys

import h5py
import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "..", "tools"))
from mmu_healpix import ang2pix_nest, pix2ang_nest  # noqa: E402

NSIDE = 16
UTF8_16 = h5py.string_dtype("utf-8", 16)
FILE = "001-of-001.hdf5"

# Cells (nside 16 NESTED) used by each dataset.
LS_CELLS = (1113, 1116)
HSC_CELLS = (1106, 1175)
DESI_CELLS = (1113, 626)
SDSS_CELLS = {"sdss": 583, "boss": 1175}
GAIA_CELL = 1631
PLASTICC_CELL = 1378
SN_CELL = 714
MANGA_CELL = 385
PROVABGS_CELL = 669

DESI_LENGTH = 7781
MANGA_NWAVE = 4563
MANGA_SIDE = 32  # real MaNGA cubes are 96x96 (see the module's notes)

# Survey -> modality the tool must give it (and the space name).
MODALITY = {"legacysurvey": "image", "hsc": "image", "desi": "spectrum", "sdss": "spectrum",
            "manga": "spectrum", "gaia": "xp", "plasticc": "lightcurve", "cfa": "lightcurve",
            "csp": "lightcurve", "desi_provabgs": "none"}


# ------------------------------------------------------------------ positions


def cell_positions(cell, n, rng, spread=0.7):
    """n distinct positions inside `cell`, scattered around its centre."""
    ra0, dec0 = (float(v) for v in pix2ang_nest(NSIDE, cell))
    out = []
    while len(out) < n:
        dec = dec0 + rng.uniform(-spread, spread)
        ra = (ra0 + rng.uniform(-spread, spread) / max(np.cos(np.radians(dec)), 0.2)) % 360.0
        if int(ang2pix_nest(NSIDE, ra, dec)) != cell:
            continue
        if any(sep_arcsec(ra, dec, r, d) < 30.0 for r, d in out):
            continue
        out.append((ra, dec))
    ra = np.array([p[0] for p in out], dtype=np.float64)
    dec = np.array([p[1] for p in out], dtype=np.float64)
    return ra, dec


def sep_arcsec(ra1, dec1, ra2, dec2):
    r1, d1, r2, d2 = (np.radians(v) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return float(np.degrees(2 * np.arcsin(np.sqrt(h))) * 3600.0)


def offset(ra, dec, dra_arcsec, ddec_arcsec):
    return ra + dra_arcsec / 3600.0 / np.cos(np.radians(dec)), dec + ddec_arcsec / 3600.0


def cell_dir(root, dataset, subset, cell, width=0):
    return os.path.join(root, dataset, subset, "healpix=%0*d" % (width, cell))


# ------------------------------------------------------------------ physics-ish generators


def galaxy_stamp(rng, size, scale, psf_fwhm, re_arcsec, q, pa, flux, dx=0.0, dy=0.0):
    """Exponential disc (half-light radius re_arcsec, axis ratio q, angle pa) of total `flux`,
    convolved with a Gaussian PSF, sampled at `scale` arcsec/px."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    x = (xx - c - dx) * np.cos(pa) + (yy - c - dy) * np.sin(pa)
    y = -(xx - c - dx) * np.sin(pa) + (yy - c - dy) * np.cos(pa)
    rs = re_arcsec / 1.678 / scale
    r = np.sqrt(x ** 2 + (y / q) ** 2)
    gal = np.exp(-r / rs)
    sig = psf_fwhm / 2.355 / scale
    k = np.fft.fftfreq(size)
    kx, ky = np.meshgrid(k, k)
    otf = np.exp(-2 * (np.pi * sig) ** 2 * (kx ** 2 + ky ** 2))
    img = np.real(np.fft.ifft2(np.fft.fft2(gal) * otf))
    img *= flux / img.sum()
    return img


def galaxy_params(rng, n):
    """Per-object shape and colour (g, r, i, z, y flux in nanomaggies)."""
    out = []
    for _ in range(n):
        red = rng.uniform(0, 1)
        r_flux = 10 ** rng.uniform(0.3, 1.6)
        colours = np.array([0.35 + 0.3 * (1 - red), 1.0, 1.3 + 0.5 * red, 1.5 + 0.9 * red, 1.6 + 1.1 * red])
        out.append(dict(re=rng.uniform(0.6, 3.5), q=rng.uniform(0.3, 1.0), pa=rng.uniform(0, np.pi),
                        flux=r_flux * colours, dx=rng.uniform(-2, 2), dy=rng.uniform(-2, 2)))
    return out


def emission_spectrum(rng, lam, z, amp=None):
    """Continuum (power law + 4000 A break) and a few redshifted emission lines, in 1e-17 units."""
    slope = rng.uniform(-1.5, 1.0)
    brk = rng.uniform(0.0, 0.6)
    cont = rng.uniform(1.0, 6.0) * (lam / 6000.0) ** slope
    cont = cont * np.where(lam < 4000.0 * (1 + z), 1.0 - brk, 1.0)
    lines = np.zeros_like(lam)
    for rest, strength in ((3727.0, 1.0), (4861.0, 0.6), (5007.0, 1.4), (6563.0, 2.0), (6583.0, 0.7)):
        a = rng.uniform(0.5, 8.0) * strength if amp is None else amp * strength
        lines += a * np.exp(-0.5 * ((lam - rest * (1 + z)) / (2.0 * (1 + z))) ** 2)
    absn = np.zeros_like(lam)
    for rest in (3934.0, 3969.0, 5175.0, 5894.0):
        absn += brk * 0.8 * np.exp(-0.5 * ((lam - rest * (1 + z)) / 4.0) ** 2)
    return cont * (1 - absn) + lines


# ------------------------------------------------------------------ writers


def _ds(f, name, data, **kw):
    f.create_dataset(name, data=data, **kw)


def _key(dtype, shape, compression=None, role=None):
    return (dtype, list(shape), compression, role)


def _obj(manifest, survey, subset, oid, ra, dec, healpix, cell, path, index, layout, f32=False):
    manifest["objects"].append(dict(survey=survey, subset=subset, object_id=oid, ra=ra, dec=dec,
                                    radec_f32=f32, healpix=int(healpix), cell=int(cell),
                                    path=os.path.abspath(path), index=index,
                                    modality=MODALITY[survey], layout=layout))


def _file(manifest, path, dataset, subset, cell, layout, n, cells, keys):
    manifest["files"].append(dict(path=os.path.abspath(path), dataset=dataset, subset=subset,
                                  healpix_folder=int(cell), layout=layout, modality=MODALITY[dataset],
                                  objects=int(n), cells=sorted(set(int(c) for c in cells)), keys=keys))


def write_legacysurvey(root, manifest, rng, shared_positions):
    """DR10 south cutouts: (n,4,160,160) f32 LZF, one bool mask for all bands (True = good)."""
    size, scale, bands = 160, 0.262, np.array([b"des-g", b"des-r", b"des-i", b"des-z"], dtype="S5")
    for ci, (cell, n) in enumerate(zip(LS_CELLS, (3, 2))):
        ra, dec = cell_positions(cell, n, rng)
        if ci == 0:
            shared_positions.extend(zip(ra[:2], dec[:2]))
        params = galaxy_params(rng, n)
        psf = rng.uniform(1.0, 1.6, (n, 4)).astype(np.float32)
        img = np.empty((n, 4, size, size), np.float32)
        ivar = np.empty((n, 4, size, size), np.float32)
        mask = np.ones((n, size, size), bool)
        noise = np.array([0.004, 0.006, 0.009, 0.012])
        for i, p in enumerate(params):
            for b in range(4):
                img[i, b] = galaxy_stamp(rng, size, scale, psf[i, b], p["re"], p["q"], p["pa"], p["flux"][b],
                                         p["dx"], p["dy"]) + rng.normal(0, noise[b], (size, size))
                ivar[i, b] = 1.0 / noise[b] ** 2
            # A saturated star's bleed trail: masked (False) and garbage-valued in every band.
            x0, y0 = rng.integers(10, 140, 2)
            mask[i, y0:y0 + 12, x0:x0 + 3] = False
            img[i, :, y0:y0 + 12, x0:x0 + 3] = 500.0
        brick = ["%04d%s%03d" % (int(r * 10), "p" if d >= 0 else "m", int(abs(d) * 10)) for r, d in zip(ra, dec)]
        objid = rng.integers(100, 6000, n).astype(np.int32)
        ids = np.array([("%s-%d" % (b, o)).encode() for b, o in zip(brick, objid)], dtype="S16")
        hp = ang2pix_nest(NSIDE, ra, dec)
        path = os.path.join(cell_dir(root, "legacysurvey", "dr10_south_21", cell), FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lzf = dict(compression="lzf")
        with h5py.File(path, "w") as f:
            f.create_dataset("image_array", data=img, chunks=(1, 4, size, size), maxshape=(None, 4, size, size), **lzf)
            f.create_dataset("image_ivar", data=ivar, chunks=(1, 4, size, size), maxshape=(None, 4, size, size), **lzf)
            f.create_dataset("image_mask", data=mask, chunks=(1, size, size), maxshape=(None, size, size), **lzf)
            f.create_dataset("image_band", data=np.tile(bands, (n, 1)), maxshape=(None, 4), chunks=(1, 4), **lzf)
            f.create_dataset("image_psf_fwhm", data=psf, maxshape=(None, 4), chunks=(1, 4), **lzf)
            f.create_dataset("image_scale", data=np.full((n, 4), scale, np.float32), maxshape=(None, 4),
                             chunks=(1, 4), **lzf)
            f.create_dataset("object_id", data=np.array(list(ids), dtype=UTF8_16), maxshape=(None,), chunks=(1,), **lzf)
            f.create_dataset("ra", data=ra, maxshape=(None,), chunks=(1,), **lzf)
            f.create_dataset("dec", data=dec, maxshape=(None,), chunks=(1,), **lzf)
            f.create_dataset("healpix", data=hp.astype(np.int64), maxshape=(None,), chunks=(1,), **lzf)
            # A few DR10 sweep columns, verbatim (upper case) next to the MMU ones.
            sweep = (("RA", ra), ("DEC", dec), ("BRICKNAME", np.array([b.encode() for b in brick], dtype="S8")),
                     ("OBJID", objid), ("TYPE", np.array([b"EXP", b"DEV", b"SER", b"REX", b"PSF"][:n], dtype="S3")),
                     ("EBV", rng.uniform(0.01, 0.08, n).astype(np.float32)))
            sweep += tuple(("FLUX_" + band, np.array([p["flux"][b] for p in params], np.float32))
                           for b, band in enumerate("GRIZ"))
            for name, col in sweep:
                f.create_dataset(name, data=col, maxshape=(None,), chunks=(1,), **lzf)
        for i in range(n):
            _obj(manifest, "legacysurvey", "dr10_south_21", ids[i].decode(), float(ra[i]), float(dec[i]),
                 hp[i], cell, path, i, "row table")
        _file(manifest, path, "legacysurvey", "dr10_south_21", cell, "row table", n, hp, {
            "image_array": _key("float32", (n, 4, size, size), "lzf", None),
            "image_mask": _key("bool", (n, size, size), "lzf", None),
            "image_band": _key("bytes5", (n, 4), "lzf", None),
            "image_scale": _key("float32", (n, 4), "lzf", None),
            "object_id": _key("bytes16", (n,), "lzf", "object_id"),
            "ra": _key("float64", (n,), "lzf", "ra"),
            "dec": _key("float64", (n,), "lzf", "dec"),
            "healpix": _key("int64", (n,), "lzf", "healpix"),
            "FLUX_G": _key("float32", (n,), "lzf", None),
            "RA": _key("float64", (n,), "lzf", None),
        })


def write_hsc(root, manifest, rng):
    """PDR3 DUD cutouts: (n,5,160,160) f32, per-band masks, everything gzip, big-endian ra/dec."""
    size, scale = 160, 0.168
    bands = np.array([b"hsc-g", b"hsc-r", b"hsc-i", b"hsc-z", b"hsc-y"], dtype="S5")
    next_id = 36407037006245000
    for cell, n in zip(HSC_CELLS, (3, 2)):
        ra, dec = cell_positions(cell, n, rng)
        params = galaxy_params(rng, n)
        psf = rng.uniform(0.5, 0.8, (n, 5)).astype(np.float32)
        img = np.empty((n, 5, size, size), np.float32)
        mask = np.ones((n, 5, size, size), bool)
        noise = np.array([0.02, 0.03, 0.04, 0.06, 0.08])
        for i, p in enumerate(params):
            for b in range(5):
                # HSC coadds are in nJy-like units with zeropoint 27: 1 nanomaggy = 63.1 counts.
                img[i, b] = 63.1 * galaxy_stamp(rng, size, scale, psf[i, b], p["re"], p["q"], p["pa"],
                                                p["flux"][b], p["dx"], p["dy"]) + rng.normal(0, noise[b], (size, size))
                x0, y0 = rng.integers(5, 150, 2)
                mask[i, b, y0:y0 + 6, x0:x0 + 6] = False      # a cosmic ray / bad column per band
                img[i, b, y0:y0 + 6, x0:x0 + 6] = -300.0
        ids = next_id + np.cumsum(rng.integers(1, 5000, n)).astype(np.int64)
        next_id = int(ids[-1])
        hp = ang2pix_nest(NSIDE, ra, dec)
        path = os.path.join(cell_dir(root, "hsc", "pdr3_dud_22.5", cell), FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        gz = dict(compression="gzip")
        with h5py.File(path, "w") as f:
            f.create_dataset("image_array", data=img, chunks=(1, 5, size, size), **gz)
            ivar = np.broadcast_to((1 / noise ** 2)[None, :, None, None].astype(np.float32), img.shape)
            f.create_dataset("image_ivar", data=ivar, chunks=(1, 5, size, size), **gz)
            f.create_dataset("image_mask", data=mask, chunks=(1, 5, size, size), **gz)
            f.create_dataset("image_band", data=np.tile(bands, (n, 1)), **gz)
            f.create_dataset("image_psf_fwhm", data=psf, **gz)
            f.create_dataset("image_scale", data=np.full((n, 5), scale, np.float32), **gz)
            f.create_dataset("object_id", data=ids, **gz)
            f.create_dataset("ra", data=ra.astype(">f8"), **gz)
            f.create_dataset("dec", data=dec.astype(">f8"), **gz)
            f.create_dataset("healpix", data=hp.astype(np.int64), **gz)
            f.create_dataset("tract", data=rng.integers(9000, 10000, n).astype(">i4"), **gz)
            f.create_dataset("patch", data=rng.integers(0, 99, n).astype(">i4"), **gz)
            for b, band in enumerate("grizy"):
                mag = (22.5 - 2.5 * np.log10([p["flux"][b] for p in params])).astype(">f4")
                f.create_dataset("%s_cmodel_mag" % band, data=mag, **gz)
            f.create_dataset("i_extendedness_value", data=np.ones(n, ">f4"), **gz)
        for i in range(n):
            _obj(manifest, "hsc", "pdr3_dud_22.5", str(int(ids[i])), float(ra[i]), float(dec[i]), hp[i], cell,
                 path, i, "row table")
        _file(manifest, path, "hsc", "pdr3_dud_22.5", cell, "row table", n, hp, {
            "image_array": _key("float32", (n, 5, size, size), "gzip", None),
            "image_mask": _key("bool", (n, 5, size, size), "gzip", None),
            "image_band": _key("bytes5", (n, 5), "gzip", None),
            "object_id": _key("int64", (n,), "gzip", "object_id"),
            "ra": _key("float64", (n,), "gzip", "ra"),
            "dec": _key("float64", (n,), "gzip", "dec"),
            "healpix": _key("int64", (n,), "gzip", "healpix"),
        })


def write_desi(root, manifest, rng, shared_positions):
    """EDR SV3 coadds: uncompressed (n,7781) f32 spectra on one grid, mask True = bad;
    both `healpix` (MMU, nside 16) and `HEALPIX` (DESI's own, nside 64)."""
    lam = (3600.0 + 0.8 * np.arange(DESI_LENGTH)).astype(np.float32)
    next_id = 39627000000000000
    for ci, (cell, n) in enumerate(zip(DESI_CELLS, (4, 2))):
        ra, dec = cell_positions(cell, n, rng)
        if ci == 0:
            # The first two share galaxies with legacysurvey (0.2" and 0.35" away).
            for j, ((r, d), off) in enumerate(zip(shared_positions, ((0.12, 0.16), (-0.2, 0.287)))):
                ra[j], dec[j] = offset(r, d, *off)
        z = rng.uniform(0.02, 0.45, n)
        flux = np.empty((n, DESI_LENGTH), np.float32)
        ivar = np.empty((n, DESI_LENGTH), np.float32)
        mask = np.zeros((n, DESI_LENGTH), bool)
        for i in range(n):
            sigma = rng.uniform(0.3, 0.8) * (1 + 0.5 * ((lam - 6700) / 3000) ** 2)
            flux[i] = emission_spectrum(rng, lam.astype(np.float64), z[i]) + rng.normal(0, sigma)
            ivar[i] = 1.0 / sigma ** 2
            s = rng.integers(500, 7000)
            mask[i, s:s + 40] = True           # bad columns: mask True, ivar 0
            ivar[i, s:s + 40] = 0.0
            flux[i, s:s + 40] = rng.normal(0, 50, 40)
        ids = next_id + np.cumsum(rng.integers(1, 10 ** 9, n)).astype(np.int64)
        next_id = int(ids[-1])
        hp = ang2pix_nest(NSIDE, ra, dec)
        desi_hp = ang2pix_nest(64, ra, dec)
        path = os.path.join(cell_dir(root, "desi", "edr_sv3", cell), FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with h5py.File(path, "w") as f:
            _ds(f, "spectrum_flux", flux)
            _ds(f, "spectrum_ivar", ivar)
            _ds(f, "spectrum_lambda", np.tile(lam, (n, 1)))
            _ds(f, "spectrum_mask", mask)
            _ds(f, "spectrum_lsf_sigma", np.full((n, DESI_LENGTH), 0.85, np.float32))
            _ds(f, "object_id", ids)
            _ds(f, "TARGETID", ids)
            _ds(f, "ra", ra)
            _ds(f, "dec", dec)
            _ds(f, "TARGET_RA", ra)
            _ds(f, "TARGET_DEC", dec)
            _ds(f, "healpix", hp.astype(np.int64))
            _ds(f, "HEALPIX", desi_hp.astype(np.int32))
            _ds(f, "Z", z)
            _ds(f, "ZERR", rng.uniform(1e-5, 1e-4, n))
            _ds(f, "ZWARN", np.zeros(n, np.int64))
            _ds(f, "SURVEY", np.array([b"sv3"] * n, dtype="S7"))
            _ds(f, "FLUX_R", rng.uniform(5, 50, n).astype(np.float32))
        for i in range(n):
            _obj(manifest, "desi", "edr_sv3", str(int(ids[i])), float(ra[i]), float(dec[i]), hp[i], cell, path, i,
                 "row table")
        _file(manifest, path, "desi", "edr_sv3", cell, "row table", n, hp, {
            "spectrum_flux": _key("float32", (n, DESI_LENGTH), None, None),
            "spectrum_lambda": _key("float32", (n, DESI_LENGTH), None, None),
            "spectrum_mask": _key("bool", (n, DESI_LENGTH), None, None),
            "object_id": _key("int64", (n,), None, "object_id"),
            "ra": _key("float64", (n,), None, "ra"),
            "dec": _key("float64", (n,), None, "dec"),
            "healpix": _key("int64", (n,), None, "healpix"),
            "HEALPIX": _key("int32", (n,), None, "not healpix"),
        })
        if ci == 0:
            for j in range(2):
                manifest["pairs"].append((("legacysurvey", manifest_id(manifest, "legacysurvey", j)),
                                          ("desi", str(int(ids[j]))),
                                          sep_arcsec(shared_positions[j][0], shared_positions[j][1], ra[j], dec[j])))


def manifest_id(manifest, survey, k):
    return [o for o in manifest["objects"] if o["survey"] == survey][k]["object_id"]


def write_sdss(root, manifest, rng):
    """SDSS/BOSS spPlate spectra: log-lambda grid per plate, native length per object, rows padded
    to the file's longest (lambda -1, ivar 0, mask True, flux/lsf edge-repeated); ra/dec only as
    PLUG_RA/PLUG_DEC; object_id = SPECOBJID as a NUL-padded byte string."""
    specs = {"sdss": (3.5798, (3800, 3712, 3655)), "boss": (3.5525, (4000, 3941, 3874))}
    next_id = 299489677444933632
    for subset in ("sdss", "boss"):
        cell = SDSS_CELLS[subset]
        coeff0, lengths = specs[subset]
        n, L = len(lengths), max(lengths)
        ra, dec = cell_positions(cell, n, rng)
        z = rng.uniform(0.03, 0.3, n)
        flux = np.empty((n, L), np.float32)
        ivar = np.zeros((n, L), np.float32)
        lam = np.full((n, L), -1.0, np.float32)
        lsf = np.empty((n, L), np.float32)
        mask = np.ones((n, L), bool)
        for i, li in enumerate(lengths):
            c0 = coeff0 + rng.integers(-20, 20) * 1e-4      # plate-dependent start
            w = 10 ** (c0 + 1e-4 * np.arange(li))
            sigma = rng.uniform(0.5, 1.2) * np.ones(li)
            f = emission_spectrum(rng, w, z[i]) + rng.normal(0, sigma)
            lam[i, :li] = w
            flux[i, :li] = f
            flux[i, li:] = f[-1]                             # edge-repeated padding
            ivar[i, :li] = 1.0 / sigma ** 2
            mask[i, :li] = False
            s = rng.integers(100, li - 100)
            mask[i, s:s + 15] = True
            ivar[i, s:s + 15] = 0.0
            lsf[i, :li] = np.linspace(1.1, 0.9, li)
            lsf[i, li:] = lsf[i, li - 1]
        ids_txt = []
        for i in range(n):
            next_id += int(rng.integers(1, 10 ** 8)) * 1024
            ids_txt.append(str(next_id))
        ids = np.array([t.encode() for t in ids_txt], dtype="S20")
        hp = ang2pix_nest(NSIDE, ra, dec)
        path = os.path.join(cell_dir(root, "sdss", subset, cell), FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with h5py.File(path, "w") as f:
            _ds(f, "spectrum_flux", flux)
            _ds(f, "spectrum_ivar", ivar)
            _ds(f, "spectrum_lambda", lam)
            _ds(f, "spectrum_mask", mask)
            _ds(f, "spectrum_lsf_sigma", lsf)
            _ds(f, "object_id", ids)
            _ds(f, "SPECOBJID", ids)
            _ds(f, "PLUG_RA", ra)
            _ds(f, "PLUG_DEC", dec)
            _ds(f, "healpix", hp.astype(np.int64))
            _ds(f, "Z", z.astype(">f4"))
            _ds(f, "Z_ERR", rng.uniform(1e-5, 1e-4, n).astype(">f4"))
            _ds(f, "ZWARNING", np.zeros(n, ">i4"))
            _ds(f, "VDISP", rng.uniform(50, 300, n).astype(">f4"))
            _ds(f, "SPECTROFLUX", rng.uniform(1, 100, (n, 5)).astype(">f4"))
            _ds(f, "CLASS", np.array([b"GALAXY"] * n, dtype="S6"))
        for i in range(n):
            _obj(manifest, "sdss", subset, ids_txt[i], float(ra[i]), float(dec[i]), hp[i], cell, path, i,
                 "row table")
        _file(manifest, path, "sdss", subset, cell, "row table", n, hp, {
            "spectrum_flux": _key("float32", (n, L), None, None),
            "spectrum_lambda": _key("float32", (n, L), None, None),
            "object_id": _key("bytes20", (n,), None, "object_id"),
            "PLUG_RA": _key("float64", (n,), None, "ra"),
            "PLUG_DEC": _key("float64", (n,), None, "dec"),
            "healpix": _key("int64", (n,), None, "healpix"),
        })


def write_gaia(root, manifest, rng):
    """Gaia DR3 XP continuous representation: coeff/coeff_error (n,110) f32 (BP 0:55, RP 55:110);
    no object_id (the id is source_id, whose top bits are the level-12 NESTED HEALPix)."""
    cell, n = GAIA_CELL, 5
    ra, dec = cell_positions(cell, n, rng)
    k = np.arange(55)
    coeff = np.empty((n, 110), np.float32)
    for i in range(n):
        teff = rng.uniform(0, 1)                       # cool .. hot
        g = 10 ** rng.uniform(1.5, 3.0)
        env = np.exp(-k / rng.uniform(4, 9))
        bp = g * (0.3 + teff) * env * np.cos(k * rng.uniform(0.3, 1.2) + rng.uniform(0, 3))
        rp = g * (1.3 - teff) * env * np.cos(k * rng.uniform(0.3, 1.2) + rng.uniform(0, 3))
        coeff[i] = np.concatenate([bp, rp]) + rng.normal(0, 0.01 * g, 110)
    err = (np.abs(coeff) * 0.02 + rng.uniform(0.5, 2.0, (n, 110))).astype(np.float32)
    hpx12 = ang2pix_nest(4096, ra, dec)
    source_id = (hpx12 * 2 ** 35 + rng.integers(1, 2 ** 30, n)).astype(np.int64)
    hp = ang2pix_nest(NSIDE, ra, dec)
    path = os.path.join(cell_dir(root, "gaia", "gaia", cell), FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        _ds(f, "source_id", source_id)
        _ds(f, "ra", ra)
        _ds(f, "dec", dec)
        _ds(f, "parallax", rng.uniform(0.1, 5.0, n))
        _ds(f, "pmra", rng.normal(0, 10, n))
        _ds(f, "phot_g_mean_mag", rng.uniform(12, 17.5, n).astype(np.float32))
        _ds(f, "bp_rp", rng.uniform(0.3, 2.5, n).astype(np.float32))
        _ds(f, "ruwe", rng.uniform(0.9, 1.3, n).astype(np.float32))
        _ds(f, "coeff", coeff)
        _ds(f, "coeff_error", err)
        _ds(f, "healpix", hp.astype(np.int64))
    for i in range(n):
        _obj(manifest, "gaia", "gaia", str(int(source_id[i])), float(ra[i]), float(dec[i]), hp[i], cell, path, i,
             "row table")
    _file(manifest, path, "gaia", "gaia", cell, "row table", n, hp, {
        "source_id": _key("int64", (n,), None, "object_id"),
        "coeff": _key("float32", (n, 110), None, None),
        "coeff_error": _key("float32", (n, 110), None, None),
        "ra": _key("float64", (n,), None, "ra"),
        "dec": _key("float64", (n,), None, "dec"),
        "healpix": _key("int64", (n,), None, "healpix"),
    })


def sn_flux(rng, t, t0, amp, rise, fall):
    return amp * np.exp(-(t - t0) / fall) / (1 + np.exp(-(t - t0) / rise))


def write_plasticc(root, manifest, rng):
    """PLAsTiCC: lightcurve (n,6,3,L) float64, axis 2 = [mjd, flux, flux_err], zero padding at the
    end of each band, Y band (index 5) all zeros, no healpix dataset, two files in one cell."""
    cell = PLASTICC_CELL
    ra_all, dec_all = cell_positions(cell, 6, rng)
    files = (("train_01.hdf5", (615, 713, 730), ra_all[:3], dec_all[:3]),
             ("test_01.hdf5", (1920, 2922, 3041), ra_all[3:], dec_all[3:]))
    for name, ids, ra, dec in files:
        n = len(ids)
        nobs = rng.integers(8, 30, (n, 5))
        L = int(nobs.max())
        lc = np.zeros((n, 6, 3, L), np.float64)
        types = rng.choice([90, 42, 52, 62, 16, 65], n, replace=False)
        z = rng.uniform(0.05, 0.9, n)
        for i in range(n):
            t0 = 59580.0 + rng.uniform(20, 120)
            amp = 10 ** rng.uniform(1.5, 3.0)
            rise, fall = rng.uniform(1, 6), rng.uniform(10, 60)
            for b in range(5):
                m = int(nobs[i, b])
                t = np.sort(59580.0 + rng.uniform(0, 200, m))
                err = rng.uniform(2, 15, m)
                colour = (0.4 + 0.3 * b) if types[i] != 16 else 1.0
                lc[i, b, 0, :m] = t
                lc[i, b, 1, :m] = colour * sn_flux(rng, t, t0, amp, rise, fall) + rng.normal(0, err)
                lc[i, b, 2, :m] = err
        path = os.path.join(cell_dir(root, "plasticc", "data", cell), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with h5py.File(path, "w") as f:
            _ds(f, "lightcurve", lc)
            _ds(f, "object_id", np.array(ids, np.int64))
            _ds(f, "ra", ra)
            _ds(f, "dec", dec)
            _ds(f, "hostgal_specz", np.where(rng.uniform(0, 1, n) < 0.3, z, -9.0))
            _ds(f, "hostgal_photoz", z + rng.normal(0, 0.05, n))
            _ds(f, "redshift", z)
            _ds(f, "obj_type", types.astype(np.int64))
        hp = ang2pix_nest(NSIDE, ra, dec)
        for i in range(n):
            _obj(manifest, "plasticc", "data", str(ids[i]), float(ra[i]), float(dec[i]), hp[i], cell, path, i,
                 "row table")
        _file(manifest, path, "plasticc", "data", cell, "row table", n, hp, {
            "lightcurve": _key("float64", (n, 6, 3, L), None, None),
            "object_id": _key("int64", (n,), None, "object_id"),
            "ra": _key("float64", (n,), None, "ra"),
            "dec": _key("float64", (n,), None, "dec"),
        })


def write_sn(root, manifest, rng):
    """CfA3 and CSP per-object files in the zero-padded folder healpix=0714: scalars object_id (S8
    ASCII), ra/dec (f32), healpix (i64), redshift (i64 in cfa, f32 in csp), a label, bands (k,)
    UTF-8 fixed strings, time/mag/mag_err (k,L) f32 with 0.0 trailing padding."""
    cell = SN_CELL
    ra_all, dec_all = cell_positions(cell, 4, rng)
    ra_all, dec_all = ra_all.astype(np.float32), dec_all.astype(np.float32)
    sets = (("cfa", "cfa3", ("SN2006cf", "SN2007kk"), "%s.hdf5", ["B", "V", "R", "I", "U", "r'", "i'"], 2),
            ("csp", "csp", ("SN2005ag", "SN2008fr"), "example_%s.hdf5",
             ["u", "g", "r", "i", "B", "V", "V0", "V1", "Y", "J", "H", "Jd"], 4))
    j = 0
    for dataset, subset, names, pattern, all_bands, width in sets:
        for name in names:
            ra, dec = ra_all[j], dec_all[j]
            j += 1
            k = int(rng.integers(4, len(all_bands) + 1))
            bands = all_bands[:k]
            npts = rng.integers(5, 25, k)
            L = int(npts.max())
            time = np.zeros((k, L), np.float32)
            mag = np.zeros((k, L), np.float32)
            err = np.zeros((k, L), np.float32)
            t0 = (54200.0 if dataset == "cfa" else 250.0) + rng.uniform(0, 300)
            peak = rng.uniform(14.5, 18.0)
            dm15 = rng.uniform(0.8, 1.8)
            for b in range(k):
                m = int(npts[b])
                t = np.sort(t0 + rng.uniform(-10, 60, m))
                ph = t - t0
                shape = dm15 * np.clip(ph, -10, 15) ** 2 / 225 * np.sign(ph) + 0.02 * np.maximum(ph - 15, 0)
                mag[b, :m] = peak + 0.1 * b + shape + rng.normal(0, 0.03, m)
                err[b, :m] = rng.uniform(0.005, 0.05, m)
                time[b, :m] = t
            hp = int(ang2pix_nest(NSIDE, float(ra), float(dec)))
            path = os.path.join(cell_dir(root, dataset, subset, cell, width=4), pattern % name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with h5py.File(path, "w") as f:
                _ds(f, "object_id", np.bytes_(name.encode()), dtype="S8")
                _ds(f, "ra", np.float32(ra))
                _ds(f, "dec", np.float32(dec))
                _ds(f, "healpix", np.int64(hp))
                if dataset == "cfa":
                    _ds(f, "redshift", np.int64(0))
                    _ds(f, "obj_type", np.bytes_(b"?"), dtype="S1")
                else:
                    _ds(f, "redshift", np.float32(rng.uniform(0.005, 0.08)))
                    _ds(f, "spec_class", np.bytes_(b"SN Ia"), dtype="S5")
                _ds(f, "bands", np.array([b.encode() for b in bands], dtype=h5py.string_dtype("utf-8", width)))
                _ds(f, "time", time)
                _ds(f, "mag", mag)
                _ds(f, "mag_err", err)
            _obj(manifest, dataset, subset, name, float(ra), float(dec), hp, cell, path, 0, "per-object scalars",
                 f32=True)
            keys = {
                "object_id": _key("bytes8", (), None, "object_id"),
                "ra": _key("float32", (), None, "ra"),
                "dec": _key("float32", (), None, "dec"),
                "healpix": _key("int64", (), None, "healpix"),
                "redshift": _key("int64" if dataset == "cfa" else "float32", (), None, None),
                "bands": _key("bytes%d" % width, (k,), None, None),
                "time": _key("float32", (k, L), None, None),
                "mag": _key("float32", (k, L), None, None),
            }
            _file(manifest, path, dataset, subset, cell, "per-object scalars", 1, [hp], keys)


def write_manga(root, manifest, rng):
    """MaNGA DR17: one group per plate-IFU; scalars (also as group attrs); compound `spaxels`
    (side*side rows; fields flux, ivar, mask, lsf_sigma, lambda [4563 each], x, y, spaxel_idx, ...),
    compound `images` (4 rows) and `maps`.  Real spaxels sit in a centred square, the rest is
    padding (mask 1024 = DONOTUSE)."""
    cell, names = MANGA_CELL, ("8485-1901", "8485-12703", "7443-3702")
    n = len(names)
    ra, dec = cell_positions(cell, n, rng)
    hp = ang2pix_nest(NSIDE, ra, dec)
    nw, side = MANGA_NWAVE, MANGA_SIDE
    nsp = side * side
    wave = (10 ** (3.5589 + 1e-4 * np.arange(nw))).astype(np.float32)
    sdt = np.dtype([("flux", ">f4", (nw,)), ("ivar", ">f4", (nw,)), ("mask", ">i4", (nw,)),
                    ("lsf_sigma", ">f4", (nw,)), ("lambda", "<f4", (nw,)), ("x", "<i8"), ("y", "<i8"),
                    ("spaxel_idx", "<i8"), ("flux_units", "S27"), ("lambda_units", "S8"),
                    ("skycoo_x", "<f4"), ("skycoo_y", "<f4"), ("ellcoo_r", "<f4"), ("ellcoo_theta", "<f4")])
    idt = np.dtype([("image_band", h5py.string_dtype("utf-8", 5)), ("image_array", "<f4", (side, side)),
                    ("image_array_units", "S17"), ("image_psf", "<f4", (side, side)),
                    ("image_psf_units", "S17"), ("image_scale", "<f8"), ("image_scale_units", "S6")])
    mdt = np.dtype([("group", "S12"), ("label", "S20"), ("array", "<f4", (side, side)),
                    ("ivar", "<f4", (side, side)), ("mask", "<f4", (side, side)), ("array_units", "S12")])
    path = os.path.join(cell_dir(root, "manga", "manga", cell), "0001-of-0001.hdf5")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["project"] = "SDSS"
        f.attrs["survey"] = "MaNGA"
        f.attrs["release"] = "DR17"
        for gi, name in enumerate(names):
            z = float(rng.uniform(0.01, 0.12))
            g = f.create_group(name, track_order=True)
            meta = (("object_id", name), ("ra", float(ra[gi])), ("dec", float(dec[gi])),
                    ("healpix", np.int64(hp[gi])), ("z", np.float32(z)), ("spaxel_size", 0.5),
                    ("spaxel_size_unit", b"arcsec"))
            for key, val in meta:
                g.attrs[key] = val
                g.create_dataset(key, data=val)
            half = (2, 2, 3)[gi]               # 4x4, 4x4, 6x6 real spaxels
            lo, hi = side // 2 - half, side // 2 + half
            block = 6 * side
            # One chunk per row of the grid; shuffle turns the repeated padding rows into byte runs.
            sp = g.create_dataset("spaxels", shape=(nsp,), dtype=sdt, chunks=(side,), shuffle=True,
                                  compression="gzip", compression_opts=1)
            base = emission_spectrum(rng, wave.astype(np.float64), z)
            for start in range(0, nsp, block):
                rows = np.zeros(min(block, nsp - start), sdt)
                idx = np.arange(start, start + len(rows))
                yy, xx = idx // side, idx % side
                rows["x"], rows["y"], rows["spaxel_idx"] = xx, yy, idx
                rows["mask"] = 1024                      # padding: DONOTUSE
                rows["lambda"] = wave                    # the builder repeats the grid for every spaxel
                rows["flux_units"] = b"1E-17 erg/s/cm^2/Ang/spaxel"
                rows["lambda_units"] = b"Angstrom"
                real = (xx >= lo) & (xx < hi) & (yy >= lo) & (yy < hi)
                for r in np.nonzero(real)[0]:
                    rad = np.hypot(xx[r] - side / 2 + 0.5, yy[r] - side / 2 + 0.5)
                    sigma = 0.05 * (1 + rad / 2)
                    rows["flux"][r] = base * np.exp(-rad / (1.0 + gi)) * rng.uniform(0.9, 1.1) + \
                        rng.normal(0, sigma, nw)
                    rows["ivar"][r] = 1 / sigma ** 2
                    rows["mask"][r] = 0
                    rows["lsf_sigma"][r] = np.linspace(1.1, 0.95, nw)
                    rows["skycoo_x"][r] = (xx[r] - side / 2 + 0.5) * 0.5
                    rows["skycoo_y"][r] = (yy[r] - side / 2 + 0.5) * 0.5
                    rows["ellcoo_r"][r] = rad * 0.5
                sp[start:start + len(rows)] = rows
            im = np.zeros(4, idt)
            im["image_band"] = [b"g", b"r", b"i", b"z"]
            yy, xx = np.mgrid[0:side, 0:side]
            rr = np.hypot(xx - side / 2 + 0.5, yy - side / 2 + 0.5)
            for b in range(4):
                im["image_array"][b] = np.where(rr < 2 * half, (1 + b * (0.3 + 0.2 * gi)) * np.exp(-rr / (1.5 + gi)), 0)
                im["image_psf"][b] = np.exp(-0.5 * (rr / 2.5) ** 2)
            im["image_array_units"] = b"nanomaggies/pixel"
            im["image_psf_units"] = b"nanomaggies/pixel"
            im["image_scale"] = 0.5
            im["image_scale_units"] = b"arcsec"
            g.create_dataset("images", data=im)
            mp = np.zeros(2, mdt)
            mp["group"] = b"stellar_vel"
            mp["label"] = [b"stellar_vel", b"stellar_sigma"]
            mp["array"][0] = np.where(rr < 2 * half, (xx - side / 2) * 10.0, 0)
            mp["array"][1] = np.where(rr < 2 * half, 120.0 + gi * 40, 0)
            mp["mask"] = np.where(rr < 2 * half, 0, 1073741824)
            mp["array_units"] = b"km/s"
            g.create_dataset("maps", data=mp)
            # index: position in the file's (name-ordered) group listing.
            _obj(manifest, "manga", "manga", name, float(ra[gi]), float(dec[gi]), hp[gi], cell, path,
                 sorted(names).index(name), "groups per object")
    _file(manifest, path, "manga", "manga", cell, "groups per object", n, hp, {})


def write_provabgs(root, manifest, rng):
    """PROVABGS SV3 catalog, `.h5` extension, no image or spectrum."""
    cell, n = PROVABGS_CELL, 3
    ra, dec = cell_positions(cell, n, rng)
    ids = (39633000000000000 + np.cumsum(rng.integers(1, 10 ** 9, n))).astype(np.int64)
    hp = ang2pix_nest(NSIDE, ra, dec)
    path = os.path.join(cell_dir(root, "desi_provabgs", "datafiles", cell), "001-of-001.h5")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        _ds(f, "object_id", ids)
        _ds(f, "ra", ra)
        _ds(f, "dec", dec)
        _ds(f, "healpix", np.full(n, cell, np.int64))
        _ds(f, "Z_HP", rng.uniform(0.05, 0.4, n))
        _ds(f, "LOG_MSTAR", rng.uniform(9.0, 11.5, n))
        _ds(f, "PROVABGS_MCMC", rng.normal(0, 1, (n, 100, 13)).astype(np.float32))
        _ds(f, "PROVABGS_THETA_BF", rng.normal(0, 1, (n, 13)).astype(np.float32))
        _ds(f, "MAG_R", rng.uniform(16, 19.5, n).astype(np.float32))
        _ds(f, "HPIX_64", ang2pix_nest(64, ra, dec).astype(np.int64))
    for i in range(n):
        _obj(manifest, "desi_provabgs", "datafiles", str(int(ids[i])), float(ra[i]), float(dec[i]), hp[i], cell,
             path, i, "row table")
    _file(manifest, path, "desi_provabgs", "datafiles", cell, "row table", n, hp, {
        "object_id": _key("int64", (n,), None, "object_id"),
        "PROVABGS_MCMC": _key("float32", (n, 100, 13), None, None),
        "ra": _key("float64", (n,), None, "ra"),
        "dec": _key("float64", (n,), None, "dec"),
        "healpix": _key("int64", (n,), None, "healpix"),
    })


def write_layout_tree(root, seed=20260):
    """Writes every layout under root (which is replaced) and returns the manifest."""
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    manifest = {"root": os.path.abspath(root), "objects": [], "files": [], "pairs": []}
    rng = np.random.default_rng(seed)
    shared = []
    write_legacysurvey(root, manifest, rng, shared)
    write_hsc(root, manifest, rng)
    write_desi(root, manifest, rng, shared)
    write_sdss(root, manifest, rng)
    write_gaia(root, manifest, rng)
    write_plasticc(root, manifest, rng)
    write_sn(root, manifest, rng)
    write_manga(root, manifest, rng)
    write_provabgs(root, manifest, rng)
    return manifest


# ------------------------------------------------------------------ corruption


def truncated_copy(src, dst, fraction=0.6):
    """Copy of src cut to `fraction` of its size (HDF5 then sees EOF < end of allocated space)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[:int(len(data) * fraction)])
    return dst


def header_address(path, name):
    """File offset of the object header of dataset `name`."""
    with h5py.File(path, "r") as f:
        info = h5py.h5o.get_info(f[name].id)
        return int(info.addr)


def garbage_copy(src, dst, dataset, nbytes=256, seed=7):
    """Copy of src with `nbytes` of garbage written over the object header of `dataset`
    (metadata, so any reader that opens that dataset must notice)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    addr = header_address(src, dataset)
    shutil.copyfile(src, dst)
    junk = bytearray(np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes())
    junk[0] = 0xEE                                  # never a valid object header version / signature
    with open(dst, "r+b") as f:
        f.seek(addr)
        f.write(bytes(junk))
    return dst


if __name__ == "__main__":
    import json
    m = write_layout_tree(sys.argv[1] if len(sys.argv) > 1 else "/tmp/mmu-layouts")
    print(json.dumps({"objects": len(m["objects"]), "files": len(m["files"]), "pairs": m["pairs"]}, indent=1))
