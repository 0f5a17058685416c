#!/usr/bin/python3
"""Deterministic generator of physically meaningful MMU-format sample data.

Usage:  /usr/bin/python3 tools/make_samples.py --out DIR [--n N] [--seed S] [--jobs J]

Simulates N galaxies (class, redshift, stellar mass, sky position) and writes

  DIR/legacysurvey/dr10_south_21/healpix=<N>/001-of-001.hdf5   images  (g,r,i,z)
  DIR/desi/edr_sv3/healpix=<N>/001-of-001.hdf5                 spectra (3600-9824 A)
  DIR/truth.csv                                                true class / z / mass

in the layout of Multimodal Universe v1 (see docs/MMU-FORMAT.md, sections 1-3).
The same arguments give byte-identical files: every random number comes from a
seeded numpy Generator, HDF5 object times are not stored, and floats are
quantised before they are written.  Memory stays bounded for any N: only the
small per-galaxy scalar table is held for all galaxies; images and spectra are
rendered and written a block of rows at a time.

Needs only numpy and h5py (Debian's python3-numpy, python3-h5py).
"""

import argparse
import csv
import math
import multiprocessing
import os
import sys
import time
from collections import deque
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mmu_healpix import mmu_cell  # noqa: E402

# ---------------------------------------------------------------------------
# Defaults and survey constants
# ---------------------------------------------------------------------------

# The committed data/samples set: small enough to stay under the size budget,
# large enough to hold every class in both surveys (see data/samples/README.md).
DEFAULT_N = 72
DEFAULT_SEED = 3

CLASSES = ("elliptical", "spiral", "edge_on", "merger", "lens")
ELLIPTICAL, SPIRAL, EDGE_ON, MERGER, LENS = range(5)
CLASS_P = np.array([0.35, 0.35, 0.15, 0.14, 0.01])
P_IMAGE, P_SPECTRUM = 0.6, 0.7

IMAGE_SURVEY, IMAGE_SUBSET = "legacysurvey", "dr10_south_21"
SPEC_SURVEY, SPEC_SUBSET = "desi", "edr_sv3"
FILE_NAME = "001-of-001.hdf5"

STAMP = 160                      # image side, pixels
PIXSCALE = 0.262                 # arcsec / pixel (DECam coadds)
BAND_NAMES = np.array([b"des-g", b"des-r", b"des-i", b"des-z"], dtype="S5")
# Smooth top-hat approximations of the DECam g,r,i,z filters (edges in A).
BAND_EDGES = ((4000.0, 5450.0), (5620.0, 7150.0), (7000.0, 8550.0), (8500.0, 10000.0))
BAND_EFF = np.array([4730.0, 6420.0, 7840.0, 9260.0])
SKY_SIGMA = np.array([0.0035, 0.0045, 0.0065, 0.0085])   # nanomaggies / pixel
GAIN = 400.0                     # effective photo-electrons per nanomaggy (source noise)

N_SPEC = 7781                    # DESI b+r+z coadd grid
LAMBDA = 3600.0 + 0.8 * np.arange(N_SPEC)
CAMERA_GAPS = ((5760.0, 5800.0), (7550.0, 7620.0))
INSTRUMENT_SIGMA = 0.75          # A, Gaussian line-spread sigma of the spectrograph
FIBER_RADIUS = 0.75              # arcsec (1.5" DESI fibre)
DESI_RELEASE = 9010              # Legacy Surveys DR9 south, the top bits of TARGETID

# Quantisation steps.  Real Legacy Surveys coadds are stored quantised too; here the
# point is determinism: a last-bit difference of a libm call on another CPU almost
# never crosses a step this coarse, so the bytes stay the same.  (Quantised images
# also compress ~35% better with LZF.)
IMAGE_QUANTUM = 2.0 ** -14       # nanomaggies, 1/50-1/160 of the sky noise
SPEC_QUANTUM = 2.0 ** -14        # 1e-17 erg/s/cm2/A (flux and variance), < 1e-3 of the noise
POSITION_QUANTUM = 2.0 ** -32    # degrees, ~1 micro-arcsec

BLOCK_IMAGES = 16                # rows rendered and written at once (~6.5 MB)
BLOCK_SPECTRA = 64               # (~6.5 MB)

# Clusters of positions in the south galactic cap: (ra, dec, sigma_deg, weight).
# Each spans parts of 1-4 nside-16 cells; the one at ra ~ 0.6 wraps through 360.
SKY_CLUSTERS = np.array([
    (12.0, 1.5, 0.7, 0.25),
    (30.5, -4.0, 0.6, 0.20),
    (350.0, 8.0, 0.8, 0.20),
    (0.6, 22.0, 0.6, 0.15),
    (40.0, 14.0, 0.7, 0.20),
])

# ---------------------------------------------------------------------------
# Cosmology (flat LCDM, H0 = 70, Om = 0.3)
# ---------------------------------------------------------------------------

C_KMS = 299792.458
C_AA = 2.99792458e18             # speed of light in A/s
MPC_CM = 3.0857e24
_ZTAB = np.linspace(0.0, 3.0, 3001)
_EZ = np.sqrt(0.3 * (1 + _ZTAB) ** 3 + 0.7)
_DC = (C_KMS / 70.0) * np.concatenate(
    [[0.0], np.cumsum(0.5 * (1 / _EZ[1:] + 1 / _EZ[:-1]) * np.diff(_ZTAB))])


def comoving_mpc(z):
    return np.interp(z, _ZTAB, _DC)


def angular_diameter_mpc(z):
    return comoving_mpc(z) / (1 + z)


def luminosity_distance_cm(z):
    return comoving_mpc(z) * (1 + z) * MPC_CM


# ---------------------------------------------------------------------------
# Spectral energy distributions (rest frame, per solar mass)
# ---------------------------------------------------------------------------

L_OLD_5500 = 1.3e29              # erg/s/A per Msun of an old population at 5500 A (M/L_V ~ 4)
YOUNG_BOOST = 8.0                # a young population is ~8x brighter per unit mass

# Stellar absorption features: rest A, depth for old light, intrinsic sigma (A).
ABSORPTION = np.array([
    (3933.7, 0.40, 5.0), (3968.5, 0.35, 5.0),          # Ca II K, H
    (4101.7, 0.08, 3.0), (4304.4, 0.18, 6.0),          # H delta, G band
    (4340.5, 0.08, 3.0), (4861.3, 0.09, 3.0),          # H gamma, H beta
    (5175.0, 0.16, 6.0), (5270.0, 0.07, 3.0), (5335.0, 0.06, 3.0),  # Mg b, Fe
    (5892.9, 0.12, 3.0), (6562.8, 0.05, 3.0),          # Na D, H alpha
    (8498.0, 0.08, 3.0), (8542.0, 0.10, 3.0), (8662.0, 0.09, 3.0),  # Ca triplet
])

# Emission lines: rest A and index into the per-galaxy flux table below.
EMISSION_WAVE = np.array([3726.03, 3728.82, 4101.74, 4340.47, 4861.33, 4958.91, 5006.84,
                          6548.05, 6562.80, 6583.45, 6716.44, 6730.82])
N_LINES = EMISSION_WAVE.size


def _logistic(t):
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def _planck_shape(lam, temp):
    """Black-body f_lambda normalised to 1 at 5500 A."""
    x = 1.4388e8 / (lam * temp)
    x0 = 1.4388e8 / (5500.0 * temp)
    return (5500.0 / lam) ** 5 * (np.expm1(x0) / np.expm1(np.minimum(x, 700.0)))


def old_template(lam):
    """Old stars: red continuum with a ~2x 4000 A break and a steep near-UV decline
    (tuned so that g-r of a red-sequence galaxy runs from ~0.8 at z=0.05 to ~1.7 at
    z=0.4, as for SDSS/DESI luminous red galaxies)."""
    return (_planck_shape(lam, 5000.0)
            * (1 - 0.5 * _logistic((4000.0 - lam) / 35.0))
            * (1 - 0.5 * _logistic((3300.0 - lam) / 150.0)))


def young_template(lam):
    """Young stars: blue continuum with a weak Balmer break."""
    return _planck_shape(lam, 11000.0) * (1 - 0.18 * _logistic((3650.0 - lam) / 25.0))


LN10_04 = 0.4 * math.log(10.0)   # 10**(-0.4 m) == exp(-LN10_04 m)

# Templates tabulated once on a fine rest-frame grid; np.interp is much cheaper
# than re-evaluating the analytic shapes for every spectrum and photometry call.
_TEMPLATE_LAM = np.arange(900.0, 12001.0, 1.0)
_OLD_TAB = old_template(_TEMPLATE_LAM)
_YOUNG_TAB = young_template(_TEMPLATE_LAM)


def dust(lam, a_v):
    """Transmission for a Calzetti-like lambda^-1 attenuation of a_v mag at 5500 A."""
    return np.exp(-LN10_04 * a_v * (5500.0 / lam))


def milky_way_curve(lam_obs):
    """A_lambda / E(B-V) of the Galactic foreground (R_V = 3.1)."""
    return 3.1 * (5500.0 / lam_obs) ** 1.3


def milky_way(lam_obs, ebv):
    """Galactic foreground transmission."""
    return np.exp(-LN10_04 * ebv * milky_way_curve(lam_obs))


def _interp(lam, table):
    return np.interp(lam.ravel(), _TEMPLATE_LAM, table).reshape(lam.shape)


def continuum_parts(lam_rest, fy, a_v):
    """Old and young continuum per unit mass (L_OLD_5500 units), dust applied; the
    old stars see half the dust of the young ones.

    Shapes broadcast: lam_rest (..., G), fy and a_v (..., 1)."""
    half_dust = np.exp(-0.5 * LN10_04 * a_v * (5500.0 / lam_rest))
    old = (1 - fy) * _interp(lam_rest, _OLD_TAB) * half_dust
    young = (fy * YOUNG_BOOST) * _interp(lam_rest, _YOUNG_TAB) * (half_dust * half_dust)
    return old, young


def line_luminosities(g):
    """Emission line luminosities (L_OLD_5500 * A per unit mass), shape (n, N_LINES).

    The H alpha flux is set by its equivalent width against the dust-attenuated
    continuum; the other lines follow from ratios, then gas dust is applied."""
    fy, a_v = g["fy"][:, None], g["a_v"][:, None]
    old, young = continuum_parts(np.full((fy.shape[0], 1), 6562.8), fy, a_v)
    a_gas = 1.5 * g["a_v"]
    ha = g["ew_ha"] * (old + young)[:, 0] * 10.0 ** (0.4 * a_gas * 5500.0 / 6562.8)
    hb = ha / 2.86
    oiii = g["r_o3"] * hb
    nii = g["r_n2"] * ha
    sii = g["r_s2"] * ha
    oii = g["r_o2"] * hb
    table = np.stack([0.43 * oii, 0.57 * oii, 0.259 * hb, 0.468 * hb, hb, oiii / 2.98, oiii,
                      nii / 3.05, ha, nii, 0.57 * sii, 0.43 * sii], axis=1)
    return table * dust(EMISSION_WAVE[None, :], a_gas[:, None])


# Photometry grid in the observed frame and the AB band-averaging weights.
# The continuum is smooth (emission lines are added analytically), so 20 A steps suffice.
_PHOT_STEP = 20.0
_PHOT_LAM = np.arange(3500.0, 10600.0, _PHOT_STEP)


def _band_response(lam):
    return np.stack([_logistic((lam - lo) / 40.0) * _logistic((hi - lam) / 40.0)
                     for lo, hi in BAND_EDGES])


_PHOT_T = _band_response(_PHOT_LAM)
# AB mean f_nu = int f_lam lam T dlam / (c int T / lam dlam); the denominator per band:
_PHOT_NORM = C_AA * (_PHOT_T / _PHOT_LAM).sum(axis=1) * _PHOT_STEP
_PHOT_W = (_PHOT_T * _PHOT_LAM * _PHOT_STEP / _PHOT_NORM[:, None]).T       # (G, 4)
_PHOT_MW = milky_way_curve(_PHOT_LAM)
NMGY_CGS = 3.631e-29             # erg/s/cm2/Hz of one nanomaggy


# The r band alone needs only the grid points where its response is non-zero.
_R_COLS = np.flatnonzero(_PHOT_T[1] > 1e-6)


def _continuum_photometry(z, log_mass, fy, a_v, ebv, cols, weights):
    """Old and young continuum fluxes (nanomaggies) through weights (G', B) on the
    photometry grid points cols.  Works in slices to bound temporaries."""
    lam = _PHOT_LAM[cols]
    out_old = np.empty((z.size, weights.shape[1]))
    out_young = np.empty_like(out_old)
    for s in range(0, z.size, 2048):
        sl = slice(s, s + 2048)
        scale = (10.0 ** log_mass[sl] * L_OLD_5500 / NMGY_CGS
                 / (4 * np.pi * luminosity_distance_cm(z[sl]) ** 2 * (1 + z[sl])))[:, None]
        mw = np.exp(-LN10_04 * ebv[sl, None] * _PHOT_MW[None, cols]) * scale
        old, young = continuum_parts(lam[None, :] / (1 + z[sl, None]), fy[sl, None], a_v[sl, None])
        out_old[sl] = (old * mw) @ weights
        out_young[sl] = (young * mw) @ weights
    return out_old, out_young


class _SelectionTable:
    """r-band continuum flux per solar mass of the old and the young population on a
    (z, A_V) grid, for a typical foreground E(B-V) = 0.04.  The flux-limit selection
    tests millions of candidates for large N; a bilinear look-up makes each O(1)."""

    Z = np.linspace(0.015, 0.65, 255)
    AV = np.linspace(0.0, 2.1, 43)
    _tables = None

    @classmethod
    def tables(cls):
        if cls._tables is None:
            zz, aa = (a.ravel() for a in np.meshgrid(cls.Z, cls.AV, indexing="ij"))
            one = np.ones_like(zz)
            old, young = _continuum_photometry(zz, 0 * one, one * 0.5, aa, 0.04 * one,
                                               _R_COLS, _PHOT_W[_R_COLS, 1:2])
            # fy = 0.5 above: undo the population weights to get per-mass fluxes
            cls._tables = (2 * old[:, 0].reshape(cls.Z.size, cls.AV.size),
                           2 * young[:, 0].reshape(cls.Z.size, cls.AV.size))
        return cls._tables

    @classmethod
    def r_flux(cls, z, log_mass, fy, a_v):
        old, young = cls.tables()
        fz = np.clip((z - cls.Z[0]) / (cls.Z[1] - cls.Z[0]), 0, cls.Z.size - 1.000001)
        fa = np.clip((a_v - cls.AV[0]) / (cls.AV[1] - cls.AV[0]), 0, cls.AV.size - 1.000001)
        i, j = fz.astype(int), fa.astype(int)
        u, v = fz - i, fa - j

        def bilinear(t):
            return ((1 - u) * (1 - v) * t[i, j] + u * (1 - v) * t[i + 1, j]
                    + (1 - u) * v * t[i, j + 1] + u * v * t[i + 1, j + 1])
        return 10.0 ** log_mass * ((1 - fy) * bilinear(old) + fy * bilinear(young))


def band_fluxes(z, log_mass, fy, a_v, ebv, lines=None):
    """Observed g,r,i,z fluxes (nanomaggies) of the old part and of the young part,
    the emission lines (luminosities from line_luminosities) added to the young part.
    All inputs are arrays of length n."""
    out_old, out_young = _continuum_photometry(z, log_mass, fy, a_v, ebv,
                                               slice(None), _PHOT_W)
    if lines is not None:
        zz = z[:, None]
        scale = (10.0 ** log_mass * L_OLD_5500 / NMGY_CGS
                 / (4 * np.pi * luminosity_distance_cm(z) ** 2))[:, None]
        lam_obs = EMISSION_WAVE[None, :] * (1 + zz)
        f_line = lines * scale * milky_way(lam_obs, ebv[:, None])     # integrated line fluxes
        resp = np.stack([np.interp(lam_obs, _PHOT_LAM, _PHOT_T[b]) * lam_obs / _PHOT_NORM[b]
                         for b in range(4)], axis=-1)                  # (n, L, 4)
        out_young += np.einsum("nl,nlb->nb", f_line, resp)
    return out_old, out_young


def r_mag(flux_nmgy):
    return 22.5 - 2.5 * np.log10(np.maximum(flux_nmgy, 1e-6))


# ---------------------------------------------------------------------------
# Catalogue: every galaxy's scalar properties, drawn for all N at once
# ---------------------------------------------------------------------------

R_LIMIT = 19.5                    # total r magnitude limit (DESI BGS bright), both surveys


def _draw_classes(rng, n):
    cls = rng.choice(len(CLASSES), size=n, p=CLASS_P)
    # Strong lenses are rare; force a few so that even small sets hold some.
    n_lens = min(n, max(2, int(round(0.01 * n))))
    missing = n_lens - int((cls == LENS).sum())
    if missing > 0:
        candidates = np.flatnonzero(cls != LENS)
        cls[rng.choice(candidates, size=missing, replace=False)] = LENS
    return cls


def _volume_z_sampler():
    """Inverse CDF of p(z) ~ dV/dz on [0.02, 0.6] (uniform in comoving volume)."""
    zg = np.linspace(0.02, 0.6, 2000)
    dvdz = comoving_mpc(zg) ** 2 / np.interp(zg, _ZTAB, _EZ)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dvdz[1:] + dvdz[:-1]) * np.diff(zg))])
    cdf /= cdf[-1]
    return lambda u: np.interp(u, cdf, zg)


# Per class: mean and sigma of log M, its clip range, and physical parameter ranges.
MASS_MODEL = {
    ELLIPTICAL: (10.95, 0.35, 9.8, 11.8),
    SPIRAL: (10.3, 0.5, 9.0, 11.4),
    EDGE_ON: (10.3, 0.5, 9.0, 11.4),
    MERGER: (10.7, 0.4, 9.5, 11.6),
    LENS: (11.35, 0.2, 11.0, 11.8),
}
# young fraction, A_V, EW(H alpha), [OIII]/Hb, [NII]/Ha, sigma_v (km/s): (low, high)
STAR_MODEL = {
    ELLIPTICAL: ((0.0, 0.03), (0.0, 0.1), (0.0, 1.5), (1.0, 2.0), (1.0, 2.0), None),
    SPIRAL: ((0.08, 0.25), (0.2, 0.8), (10.0, 45.0), (0.3, 1.0), (0.3, 0.5), (70.0, 150.0)),
    EDGE_ON: ((0.06, 0.2), (0.8, 2.0), (5.0, 25.0), (0.3, 1.0), (0.3, 0.5), (70.0, 150.0)),
    MERGER: ((0.2, 0.5), (0.4, 1.5), (40.0, 150.0), (0.8, 4.0), (0.3, 0.6), (90.0, 200.0)),
    LENS: ((0.0, 0.02), (0.0, 0.1), (0.0, 1.0), (1.0, 2.0), (1.0, 2.0), None),
}


def _draw_physics(rng, cls, z_of_u):
    """Redshift, mass and stellar-population parameters for galaxies of classes cls."""
    n = cls.size
    g = {"cls": cls}
    g["z"] = z_of_u(rng.random(n))
    lens = cls == LENS
    g["z"][lens] = rng.uniform(0.3, 0.6, lens.sum())
    g["log_mass"] = np.empty(n)
    for key in ("fy", "a_v", "ew_ha", "r_o3", "r_n2"):
        g[key] = np.empty(n)
    g["sigma_v"] = np.empty(n)
    for c in range(len(CLASSES)):
        sel = cls == c
        k = int(sel.sum())
        mu, sd, lo, hi = MASS_MODEL[c]
        g["log_mass"][sel] = np.clip(rng.normal(mu, sd, k), lo, hi)
        for key, rng_lim in zip(("fy", "a_v", "ew_ha", "r_o3", "r_n2"), STAR_MODEL[c][:5]):
            g[key][sel] = rng.uniform(*rng_lim, k)
        if STAR_MODEL[c][5] is None:           # pressure supported: Faber-Jackson
            g["sigma_v"][sel] = 10.0 ** (2.3 + 0.3 * (g["log_mass"][sel] - 11.0)
                                         + rng.normal(0, 0.05, k))
        else:
            g["sigma_v"][sel] = rng.uniform(*STAR_MODEL[c][5], k)
    g["r_s2"] = rng.uniform(0.2, 0.4, n)
    g["r_o2"] = rng.uniform(1.5, 3.5, n)
    return g


def _draw_structure(rng, g):
    """Half-light radius (mass-size relations), Sersic index, axis ratio, angle."""
    cls, m = g["cls"], g["log_mass"]
    n = cls.size
    early = (cls == ELLIPTICAL) | (cls == LENS)
    log_re = np.where(early, 0.65 + 0.6 * (m - 11.0),
                      np.where(cls == MERGER, 0.6 + 0.3 * (m - 10.7), 0.55 + 0.22 * (m - 10.5)))
    re_kpc = 10.0 ** (log_re + rng.normal(0, 0.11, n))
    kpc_per_arcsec = angular_diameter_mpc(g["z"]) * 1e3 / 206264.8
    g["theta_e"] = np.clip(re_kpc / kpc_per_arcsec, 0.3, 12.0)
    g["sersic_n"] = np.where(early, rng.uniform(3.5, 5.0, n), rng.uniform(0.8, 1.5, n))
    g["sersic_n"][cls == MERGER] = rng.uniform(1.0, 3.0, int((cls == MERGER).sum()))
    q = np.where(early, rng.uniform(0.6, 1.0, n), rng.uniform(0.35, 1.0, n))
    q[cls == EDGE_ON] = rng.uniform(0.08, 0.18, int((cls == EDGE_ON).sum()))
    g["q"] = q
    g["pa"] = rng.uniform(0, np.pi, n)


def _draw_lensing(rng, g):
    """Einstein radius, source redshift and source brightness of the lenses."""
    n = g["z"].size
    lens = g["cls"] == LENS
    g["theta_ein"] = np.where(lens, rng.uniform(1.3, 2.0, n), 0.0)
    g["z_src"] = np.where(lens, np.minimum(g["z"] + rng.uniform(0.35, 0.9, n), 1.4), 0.0)
    g["arc_ratio"] = rng.uniform(1.2, 3.0, n)     # arcs' g flux / deflector g flux


def _ebv(ra, dec):
    """A smooth made-up dust map: 0.02-0.09 mag over the footprint."""
    return 0.02 + 0.07 * (0.5 + 0.5 * np.sin(np.radians(3 * ra)) * np.cos(np.radians(4 * dec))) ** 2


def draw_catalog(n, seed):
    """All per-galaxy scalars.  Rejection sampling against the r < R_LIMIT flux limit
    makes the mass-redshift relation a selection effect (lenses bypass it)."""
    rng = np.random.default_rng([seed, 0])
    z_of_u = _volume_z_sampler()
    cls = _draw_classes(rng, n)
    cat = None
    todo = np.arange(n)
    while todo.size:
        cand = np.repeat(todo, 4)
        g = _draw_physics(rng, cls[cand], z_of_u)
        # Selection on the continuum r flux with a typical foreground E(B-V); the
        # emission lines add little to r, and lenses are found by other means.
        r_flux = _SelectionTable.r_flux(g["z"], g["log_mass"], g["fy"], g["a_v"])
        ok = (r_mag(r_flux) < R_LIMIT) | (g["cls"] == LENS)
        # keep the first accepted candidate of each slot
        first = np.flatnonzero(ok)
        _, pick = np.unique(cand[first], return_index=True)
        pick = first[pick]
        if cat is None:
            cat = {k: np.empty(n, dtype=v.dtype) for k, v in g.items()}
        for k, v in g.items():
            cat[k][cand[pick]] = v[pick]
        todo = np.setdiff1d(todo, cand[pick])
    _draw_structure(rng, cat)
    _draw_lensing(rng, cat)
    _draw_sky(rng, cat)
    cat["ebv"] = _ebv(cat["ra"], cat["dec"])
    lines = line_luminosities(cat)
    cat["lines"] = lines
    cat["phot_old"], cat["phot_young"] = band_fluxes(
        cat["z"], cat["log_mass"], cat["fy"], cat["a_v"], cat["ebv"], lines)
    _source_photometry(cat)
    _draw_membership(rng, cat)
    _draw_image_artefacts(rng, cat)
    cat["galaxy"] = np.arange(n)
    return cat


# Background source of a lens: a pure young, strongly star-forming galaxy.
SOURCE = {"fy": 1.0, "a_v": 0.3, "ew_ha": 150.0, "r_o3": 2.5, "r_n2": 0.15,
          "r_s2": 0.2, "r_o2": 3.0}


def _source_params(k):
    return {key: np.full(k, val) for key, val in SOURCE.items()}


def _source_photometry(cat):
    """Band fluxes of the lensed arcs, scaled so that g(arcs) = arc_ratio * g(deflector);
    src_mass is the matching (magnified) source mass for the spectrum."""
    n = cat["z"].size
    cat["phot_src"] = np.zeros((n, 4))
    cat["src_mass"] = np.zeros(n)
    lens = np.flatnonzero(cat["cls"] == LENS)
    if lens.size == 0:
        return
    sp = _source_params(lens.size)
    lines = line_luminosities(sp)
    zeros = np.zeros(lens.size)
    old, young = band_fluxes(cat["z_src"][lens], zeros, sp["fy"], sp["a_v"],
                             cat["ebv"][lens], lines)
    unit = old + young                                   # per 1 Msun of source
    target = cat["arc_ratio"][lens] * (cat["phot_old"][lens, 0] + cat["phot_young"][lens, 0])
    scale = target / unit[:, 0]
    cat["phot_src"][lens] = unit * scale[:, None]
    cat["src_mass"][lens] = np.log10(scale)


def _offset(ra, dec, sep_arcsec, angle):
    """Move (ra, dec) by sep_arcsec towards position angle angle (small angles)."""
    d = sep_arcsec / 3600.0
    dec2 = dec + d * np.cos(angle)
    ra2 = (ra + d * np.sin(angle) / np.cos(np.radians(dec))) % 360.0
    return ra2, dec2


def _draw_sky(rng, cat):
    n = cat["z"].size
    k = rng.choice(len(SKY_CLUSTERS), size=n, p=SKY_CLUSTERS[:, 3] / SKY_CLUSTERS[:, 3].sum())
    ra0, dec0, sig = SKY_CLUSTERS[k, 0], SKY_CLUSTERS[k, 1], SKY_CLUSTERS[k, 2]
    dec = np.clip(dec0 + sig * rng.standard_normal(n), -10.0, 30.0)
    ra = (ra0 + sig * rng.standard_normal(n) / np.cos(np.radians(dec))) % 360.0
    cat["ra"], cat["dec"] = ra, dec


def _cell_border_along_ra(ra, dec):
    """Points on the nearest cell border east of each (ra, dec): step east until the
    cell changes, then bisect (vectorised over all points)."""
    cell = mmu_cell(ra, dec)
    step = 0.02                                  # deg; cells are > 0.5 deg wide here
    k = np.zeros(ra.size)
    moving = np.ones(ra.size, dtype=bool)
    for _ in range(1000):
        k[moving] += 1
        moving &= mmu_cell((ra + k * step) % 360.0, dec) == cell
        if not moving.any():
            break
    lo, hi = ra + (k - 1) * step, ra + k * step
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        same = mmu_cell(mid % 360.0, dec) == cell
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    return 0.5 * (lo + hi)


def _draw_membership(rng, cat):
    """Which survey observes which galaxy, and each survey's own position.

    Image ~0.6 and spectrum ~0.7, independently; a galaxy drawn in neither is given
    to one of them.  Shared galaxies get a 0.05-0.4" astrometric offset, and a few
    are put right on a cell border so that the two entries land in different cells
    (MMU's own cross-match drops such pairs)."""
    n = cat["z"].size
    img = rng.random(n) < P_IMAGE
    spec = rng.random(n) < P_SPECTRUM
    neither = ~img & ~spec
    to_img = rng.random(n) < P_IMAGE / (P_IMAGE + P_SPECTRUM)
    img |= neither & to_img
    spec |= neither & ~to_img
    # The forced lenses are observed by both, so both surveys hold lenses.
    lens = np.flatnonzero(cat["cls"] == LENS)[:2]
    img[lens] = spec[lens] = True
    cat["in_image"], cat["in_spec"] = img, spec

    sep = rng.uniform(0.05, 0.4, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    ra_s, dec_s = _offset(cat["ra"], cat["dec"], sep, angle)
    both = np.flatnonzero(img & spec)
    straddle = np.sort(both[rng.permutation(both.size)[:max(2, both.size // 50)]])
    border = _cell_border_along_ra(cat["ra"][straddle], cat["dec"][straddle])
    half = 0.5 * sep[straddle] / 3600.0 / np.cos(np.radians(cat["dec"][straddle]))
    cat["ra"][straddle] = (border - half) % 360.0
    ra_s[straddle], dec_s[straddle] = (border + half) % 360.0, cat["dec"][straddle]
    def snap(x):
        return np.round(x / POSITION_QUANTUM) * POSITION_QUANTUM

    cat["ra_img"], cat["dec_img"] = snap(cat["ra"]) % 360.0, snap(cat["dec"])
    cat["ra_spec"], cat["dec_spec"] = snap(ra_s) % 360.0, snap(dec_s)
    cat["cell_img"] = mmu_cell(cat["ra_img"], cat["dec_img"])
    cat["cell_spec"] = mmu_cell(cat["ra_spec"], cat["dec_spec"])


# Image artefacts: (name, fraction of images); at least one of each whenever the
# image survey holds 8 or more objects, so that every set exercises the masks.
ARTEFACTS = (("bad_column", 0.12), ("saturated_star", 0.08), ("edge", 0.10), ("nan_edge", 0.05))


def _draw_image_artefacts(rng, cat):
    n = cat["z"].size
    members = np.flatnonzero(cat["in_image"])
    for name, frac in ARTEFACTS:
        u = rng.random(n)
        flag = cat["in_image"] & (u < frac)
        if members.size >= 8 and not flag.any():
            flag[members[np.argmin(u[members])]] = True
        cat[name] = flag
    cat["edge"] &= ~cat["nan_edge"]


# ---------------------------------------------------------------------------
# Object identifiers
# ---------------------------------------------------------------------------

def legacy_object_ids(ra, dec, galaxy):
    """f"{BRICKNAME}-{OBJID}" as MMU writes Legacy Surveys ids (<= 16 bytes)."""
    out = []
    for r, d, g in zip(ra, dec, galaxy):
        brick = f"{int(r * 10):04d}{'p' if d >= 0 else 'm'}{int(abs(d) * 10):03d}"
        out.append(f"{brick}-{g}".encode("ascii"))
    return np.array(out, dtype="S16")


# Legacy Surveys DR9-like brick grid: 0.25 deg rows in dec, ~0.25 deg wide bricks.
_BRICK_ROW_DEC = -90.0 + 0.25 * (np.arange(720) + 0.5)
_BRICK_NCOL = np.maximum(1, np.round(1440 * np.cos(np.radians(_BRICK_ROW_DEC)))).astype(np.int64)
_BRICK_FIRST = np.concatenate([[1], 1 + np.cumsum(_BRICK_NCOL)[:-1]])


def desi_target_ids(ra, dec, galaxy):
    """TARGETID = RELEASE << 42 | BRICKID << 22 | OBJID, as DESI builds it."""
    row = np.clip(((np.asarray(dec) + 90.0) / 0.25).astype(np.int64), 0, 719)
    col = np.minimum((np.asarray(ra) / 360.0 * _BRICK_NCOL[row]).astype(np.int64),
                     _BRICK_NCOL[row] - 1)
    brickid = _BRICK_FIRST[row] + col
    return (np.int64(DESI_RELEASE) << 42) | (brickid << 22) | np.asarray(galaxy, np.int64)


# ---------------------------------------------------------------------------
# Image rendering
# ---------------------------------------------------------------------------

_GY, _GX = np.mgrid[0:STAMP, 0:STAMP].astype(np.float64)
_KY = np.fft.fftfreq(STAMP)[:, None]
_KX = np.fft.rfftfreq(STAMP)[None, :]
_K2 = _KX ** 2 + _KY ** 2
SOFTEN_PX = 0.35                 # removes the pixel-centre cusp of steep profiles
FIT_RADIUS = STAMP / 2 - 1.0     # largest elliptical radius that fits in the stamp


def sersic_b(n):
    return 2 * n - 1.0 / 3 + 4.0 / (405 * n) + 46.0 / (25515 * n * n)


def gamma_p(s, x):
    """Regularised lower incomplete gamma P(s, x) by its power series."""
    if x <= 0:
        return 0.0
    if x > 600:
        return 1.0
    term = total = 1.0 / s
    k = 1
    while k < 2000:
        term *= x / (s + k)
        total += term
        if term < 1e-17 * total:
            break
        k += 1
    return min(1.0, math.exp(-x + s * math.log(x) - math.lgamma(s)) * total)


def sersic_enclosed(n, a_over_re):
    """Fraction of a Sersic profile's light inside elliptical radius a."""
    return gamma_p(2 * n, sersic_b(n) * a_over_re ** (1.0 / n))


class Frame:
    """Pixel coordinates rotated into a component's frame (x' along the major axis)."""

    def __init__(self, x0, y0, pa):
        c, s = math.cos(pa), math.sin(pa)
        dx, dy = _GX - x0, _GY - y0
        self.xp = dx * c + dy * s
        self.yp = -dx * s + dy * c


def sersic_shape(frame, re_px, n, q):
    """Sersic surface brightness normalised to unit total light (light beyond the
    stamp is counted: the sum inside the largest fitting ellipse equals the
    analytic enclosed fraction)."""
    r2 = frame.xp ** 2 + (frame.yp / q) ** 2
    r = np.sqrt(r2 + SOFTEN_PX ** 2)
    prof = np.exp(-sersic_b(n) * (r / re_px) ** (1.0 / n))
    inside = prof[r2 <= FIT_RADIUS ** 2].sum()
    return prof * (sersic_enclosed(n, FIT_RADIUS / re_px) / inside)


def add_gaussian(canvas, flux4, xc, yc, sigma):
    """Add a circular Gaussian of total flux flux4 (per band) to canvas (4, H, W)."""
    half = int(math.ceil(4 * sigma)) + 1
    x0, x1 = max(0, int(xc) - half), min(STAMP, int(xc) + half + 1)
    y0, y1 = max(0, int(yc) - half), min(STAMP, int(yc) + half + 1)
    if x0 >= x1 or y0 >= y1:
        return
    g = np.exp(-0.5 * ((_GX[y0:y1, x0:x1] - xc) ** 2 + (_GY[y0:y1, x0:x1] - yc) ** 2) / sigma ** 2)
    canvas[:, y0:y1, x0:x1] += flux4[:, None, None] * g / (2 * np.pi * sigma ** 2)


class Model:
    """The noiseless pre-PSF image and the catalogue flux of the target."""

    def __init__(self):
        self.image = np.zeros((4, STAMP, STAMP))
        self.flux = np.zeros(4)

    def add(self, shape, flux4):
        self.image += shape[None] * flux4[:, None, None]
        self.flux += flux4


def _spiral_arms(frame, re_px, q, rng):
    """Two narrow logarithmic spiral arms in the disk plane: a pattern with mean ~0
    and minimum -1, faded out towards the centre where the bulge dominates."""
    x, y = frame.xp, frame.yp / q
    r = np.sqrt(x * x + y * y) + 1e-3
    theta = np.arctan2(y, x)
    pitch = math.radians(rng.uniform(12, 25))
    wave = 0.5 * (1 + np.cos(2 * (theta - np.log(r / re_px) / math.tan(pitch) - rng.uniform(0, np.pi))))
    pattern = wave ** 3 / 0.3125 - 1          # <wave^3> = 5/16 over a period
    return pattern * (1 - np.exp(-(r / (0.6 * re_px)) ** 2))


def draw_elliptical(model, g, x0, y0, rng):
    frame = Frame(x0, y0, g["pa"])
    model.add(sersic_shape(frame, g["theta_e"] / PIXSCALE, g["sersic_n"], g["q"]),
              g["phot_old"] + g["phot_young"])


def draw_disk(model, g, x0, y0, rng, edge_on):
    """Bulge (part of the old light) + exponential disk; the young light of the disk
    follows spiral arms (face-on) or sits behind a dust lane (edge-on)."""
    re_px = g["theta_e"] / PIXSCALE
    frame = Frame(x0, y0, g["pa"])
    bulge_frac = rng.uniform(0.3, 0.7) if not edge_on else rng.uniform(0.15, 0.4)
    bulge = sersic_shape(frame, rng.uniform(0.15, 0.3) * re_px, rng.uniform(2.5, 4.0),
                         max(g["q"], rng.uniform(0.6, 0.9)))
    disk = sersic_shape(frame, re_px, g["sersic_n"], g["q"])
    old, young = g["phot_old"], g["phot_young"]
    if edge_on:
        width = max(0.8, 0.35 * g["q"] * re_px)
        lane = np.exp(-((frame.yp - rng.uniform(-0.3, 0.3) * width) / width) ** 2)
        tau = rng.uniform(0.8, 2.0) * (4800.0 / BAND_EFF)
        atten = np.exp(-tau[:, None, None] * lane[None])            # (4, H, W)
        light = (bulge_frac * old)[:, None, None] * bulge + \
            ((1 - bulge_frac) * old + young)[:, None, None] * disk
        model.image += light * atten
        model.flux += (old + young) * (light * atten).sum(axis=(1, 2)) / light.sum(axis=(1, 2))
        return
    pattern = _spiral_arms(frame, re_px, g["q"], rng)
    strength = rng.uniform(0.6, 0.9)
    model.add(bulge, bulge_frac * old)
    for light, amp in (((1 - bulge_frac) * old, 0.3 * strength), (young, strength)):
        arm_disk = disk * (1 + amp * pattern)
        model.add(arm_disk * (disk.sum() / arm_disk.sum()), light)


def draw_merger(model, g, x0, y0, rng):
    """Two overlapping galaxies plus a blue tidal tail."""
    re = g["theta_e"] / PIXSCALE
    mu = rng.uniform(0.5, 0.8)
    sep = rng.uniform(1.0, 3.0) * re * rng.uniform(0.6, 0.9)
    ang = rng.uniform(0, 2 * np.pi)
    x1, y1 = x0 + sep * math.cos(ang), y0 + sep * math.sin(ang)
    tail_young, tail_old = rng.uniform(0.08, 0.15), 0.03
    tot_old = g["phot_old"] * (1 - tail_old)
    tot_young = g["phot_young"] * (1 - tail_young)
    for (xc, yc, frac, scale) in ((x0, y0, mu, rng.uniform(0.6, 0.9)),
                                  (x1, y1, 1 - mu, rng.uniform(0.4, 0.8))):
        frame = Frame(xc, yc, rng.uniform(0, np.pi))
        shape = sersic_shape(frame, max(scale * re, 0.8), rng.uniform(1.0, 4.0), rng.uniform(0.4, 1.0))
        model.add(shape, frac * (tot_old + tot_young))
    # Tail: Gaussian knots along a widening arc that starts at the secondary.
    tail = np.zeros((1, STAMP, STAMP))
    r0, r1 = 0.5 * re + 2, rng.uniform(2.0, 4.0) * re + 4
    phi0, sweep = rng.uniform(0, 2 * np.pi), rng.choice([-1, 1]) * rng.uniform(1.0, 2.0)
    for t in np.linspace(0, 1, 28):
        rad, phi = r0 + (r1 - r0) * t, phi0 + sweep * t
        add_gaussian(tail, np.array([1.0 - 0.6 * t]), x1 + rad * math.cos(phi),
                     y1 + rad * math.sin(phi), 1.5 + 2.0 * t)
    total = tail[0].sum()
    if total > 0:
        model.add(tail[0] / total, g["phot_old"] * tail_old + g["phot_young"] * tail_young)


def draw_lens(model, g, x0, y0, rng):
    """Red elliptical deflector plus a blue Einstein ring or 2-4 arcs."""
    draw_elliptical(model, g, x0, y0, rng)
    frame = Frame(x0, y0, 0.0)
    r = np.hypot(frame.xp, frame.yp)
    phi = np.arctan2(frame.yp, frame.xp)
    ring = np.exp(-0.5 * ((r - g["theta_ein"] / PIXSCALE) / rng.uniform(0.5, 0.9)) ** 2)
    if rng.random() < 0.3:
        az = 1 + 0.6 * np.cos(phi - rng.uniform(0, 2 * np.pi))
    else:
        az = np.zeros_like(phi)
        for _ in range(rng.integers(2, 5)):
            d = np.angle(np.exp(1j * (phi - rng.uniform(0, 2 * np.pi))))
            az += rng.uniform(0.5, 1.0) * np.exp(-0.5 * (d / rng.uniform(0.25, 0.6)) ** 2)
    arcs = ring * az
    model.add(arcs / arcs.sum(), g["phot_src"])


DRAW = {ELLIPTICAL: draw_elliptical, MERGER: draw_merger, LENS: draw_lens,
        SPIRAL: lambda m, g, x, y, r: draw_disk(m, g, x, y, r, False),
        EDGE_ON: lambda m, g, x, y, r: draw_disk(m, g, x, y, r, True)}


def add_neighbours(canvas, rng):
    """A few faint field stars and small galaxies away from the target."""
    for _ in range(min(5, rng.poisson(1.5))):
        while True:
            x, y = rng.uniform(3, STAMP - 3, 2)
            if math.hypot(x - STAMP / 2, y - STAMP / 2) > 14:
                break
        f_r = 10 ** rng.uniform(-0.3, 1.7)
        gr = rng.uniform(0.2, 1.5)
        colour = 10 ** (-0.4 * np.array([gr, 0.0, -0.4 * gr, -0.6 * gr]))
        sigma = 0.3 if rng.random() < 0.4 else rng.uniform(0.7, 2.2)
        add_gaussian(canvas, f_r * colour, x, y, sigma)


def convolve_psf(image, fwhm_px):
    """Per-band Gaussian PSF, applied as a transfer function in Fourier space."""
    sigma = fwhm_px / 2.3548
    transfer = np.exp(-2 * np.pi ** 2 * sigma[:, None, None] ** 2 * _K2[None])
    return np.fft.irfft2(np.fft.rfft2(image) * transfer, s=(STAMP, STAMP))


SATURATION = 250.0               # nanomaggies / pixel at which a star saturates


def draw_bright_star(rng):
    """Position and g,r,i,z flux of a star bright enough to saturate."""
    while True:
        x, y = rng.uniform(10, STAMP - 10, 2)
        if math.hypot(x - STAMP / 2, y - STAMP / 2) > 30:
            break
    flux = 10 ** rng.uniform(3.5, 4.5) * np.array([0.6, 1.0, 1.2, 1.3])
    return x, y, flux


def apply_artefacts(image, g, rng, star, psf_sigma_px):
    """Mask (True = good) a saturated star, bad columns and off-footprint edges."""
    mask = np.ones((STAMP, STAMP), dtype=bool)
    if star is not None:
        x, y, flux = star
        # Like the Legacy Surveys bright-star mask, the radius grows with brightness:
        # ~6 px at 3e3 nanomaggies (r ~ 14) to ~16 px at 3e4 (r ~ 11.3).
        peak = flux[1] / (2 * np.pi * psf_sigma_px ** 2)
        radius = 6.0 + 10.0 * (math.log10(flux[1]) - 3.5)
        blob = np.hypot(_GX - x, _GY - y) <= radius
        length = int(radius + peak / SATURATION * 2)
        xi, yi = int(round(x)), int(round(y))
        trail = np.zeros_like(mask)
        trail[max(0, yi - length):yi + length + 1, max(0, xi - 1):xi + 2] = True
        image[:, blob] = np.minimum(image[:, blob], SATURATION)
        image[:, trail] = SATURATION * rng.uniform(0.6, 1.0)
        mask &= ~(blob | trail)
    if g["bad_column"]:
        for _ in range(rng.integers(1, 3)):
            col, width = rng.integers(0, STAMP - 2), rng.integers(1, 3)
            start = rng.integers(0, STAMP // 2) if rng.random() < 0.5 else 0
            image[:, start:, col:col + width] += rng.uniform(0.05, 0.5)
            mask[start:, col:col + width] = False
    if g["edge"] or g["nan_edge"]:
        width = rng.integers(6, 30)
        side = rng.integers(0, 4)
        strip = np.zeros_like(mask)
        if side == 0:
            strip[:width] = True
        elif side == 1:
            strip[-width:] = True
        elif side == 2:
            strip[:, :width] = True
        else:
            strip[:, -width:] = True
        image[:, strip] = np.nan if g["nan_edge"] else 0.0
        mask &= ~strip
    return mask


def render_image(g, seed):
    """One galaxy's (4,160,160) image, its mask and its catalogue row."""
    rng = np.random.default_rng([seed, 1, int(g["galaxy"])])
    model = Model()
    x0, y0 = STAMP / 2 + rng.uniform(-0.5, 0.5, 2)
    DRAW[int(g["cls"])](model, g, x0, y0, rng)
    add_neighbours(model.image, rng)
    star = draw_bright_star(rng) if g["saturated_star"] else None
    if star is not None:
        add_gaussian(model.image, star[2] * 0.97, star[0], star[1], 0.3)
        add_gaussian(model.image, star[2] * 0.03, star[0], star[1], 8.0)   # scattered-light halo
    seeing = rng.uniform(1.0, 1.45)
    psf_fwhm = np.clip(seeing * np.array([1.08, 1.0, 0.96, 0.93]), 1.0, 1.6)
    image = convolve_psf(model.image, psf_fwhm / PIXSCALE)
    sky = np.minimum(SKY_SIGMA * rng.uniform(0.85, 1.2, 4), 0.01)
    sigma = np.sqrt(sky[:, None, None] ** 2 + np.maximum(image, 0) / GAIN)
    image += sigma * rng.standard_normal(image.shape, dtype=np.float32)
    mask = apply_artefacts(image, g, rng, star, psf_fwhm[1] / PIXSCALE / 2.3548)
    image = (np.round(image / IMAGE_QUANTUM) * IMAGE_QUANTUM).astype(np.float32)
    return image, mask, psf_fwhm, model.flux, _tractor_type(g, rng)


def _tractor_type(g, rng):
    if g["theta_e"] < 0.4:
        return b"REX"
    cls = int(g["cls"])
    if cls in (ELLIPTICAL, LENS):
        return b"DEV" if g["sersic_n"] >= 3.8 else b"SER"
    if cls == MERGER:
        return b"SER"
    return b"EXP" if cls == EDGE_ON or rng.random() < 0.6 else b"SER"


# ---------------------------------------------------------------------------
# Spectrum rendering
# ---------------------------------------------------------------------------

def _sky_spectrum():
    """Relative night-sky brightness: a continuum plus atomic and OH lines."""
    lines = [(4358.3, 1.0), (5460.7, 0.8), (5577.3, 8.0), (5889.9, 2.0), (5895.9, 1.5),
             (6300.3, 3.0), (6363.8, 1.2)]
    oh = np.random.default_rng(20240601)          # fixed: the same sky for every run
    lines += list(zip(oh.uniform(6800, 9820, 120), 10 ** oh.uniform(-0.5, 0.8, 120)))
    sky = 0.2 + 0.3 * (LAMBDA - 3600.0) / 6200.0
    for lam0, amp in lines:
        sky += amp * np.exp(-0.5 * ((LAMBDA - lam0) / 0.9) ** 2)
    return sky


_SKY = _sky_spectrum()
# Throughput falls at both ends of the spectrograph, so the noise rises there.
_NOISE_SHAPE = (1 + 1.5 * _logistic((4000.0 - LAMBDA) / 120.0)
                + 1.0 * _logistic((LAMBDA - 9300.0) / 150.0)) ** 2 * (1 + _SKY)
_GAP_MASK = np.zeros(N_SPEC, dtype=bool)
for _lo, _hi in CAMERA_GAPS:
    _GAP_MASK |= (LAMBDA >= _lo) & (LAMBDA <= _hi)
_LAMBDA_F32 = LAMBDA.astype(np.float32)
_SPEC_MW = milky_way_curve(LAMBDA)


def _add_gaussians(flux, centres, sigmas, areas):
    """Add unit-area-scaled Gaussians (observed frame), each over +-6 sigma only."""
    for c, s, a in zip(centres, sigmas, areas):
        i0, i1 = np.searchsorted(LAMBDA, (c - 6 * s, c + 6 * s))
        if i1 > i0 and a != 0:
            lam = LAMBDA[i0:i1]
            flux[i0:i1] += a / (math.sqrt(2 * math.pi) * s) * np.exp(-0.5 * ((lam - c) / s) ** 2)


def _absorb(flux, z, sigma_v, old_frac):
    """Multiply in the stellar absorption features, broadened by sigma_v."""
    for lam0, depth, s_int in ABSORPTION:
        c = lam0 * (1 + z)
        s = math.hypot(s_int * (1 + z), c * sigma_v / C_KMS, INSTRUMENT_SIGMA)
        i0, i1 = np.searchsorted(LAMBDA, (c - 6 * s, c + 6 * s))
        if i1 > i0:
            lam = LAMBDA[i0:i1]
            flux[i0:i1] *= 1 - depth * old_frac[i0:i1] * np.exp(-0.5 * ((lam - c) / s) ** 2)


def fiber_fraction(theta_e, n, seeing):
    """Light inside the 1.5" fibre: the Sersic enclosed fraction of a profile whose
    size is smeared by the seeing (approximation)."""
    re = math.hypot(theta_e, 0.6 * seeing)
    return sersic_enclosed(n, FIBER_RADIUS / re)


def galaxy_spectrum(g, seeing):
    """Noiseless observed f_lambda (1e-17 erg/s/cm2/A) seen through the fibre."""
    z = float(g["z"])
    lam_rest = LAMBDA / (1 + z)
    old, young = continuum_parts(lam_rest, g["fy"], g["a_v"])
    flux = old + young
    _absorb(flux, z, float(g["sigma_v"]), old / np.maximum(flux, 1e-30))
    scale = (10.0 ** g["log_mass"] * L_OLD_5500 / (4 * np.pi * luminosity_distance_cm(z) ** 2)
             / (1 + z) * 1e17 * fiber_fraction(g["theta_e"], g["sersic_n"], seeing))
    flux *= scale
    centres = EMISSION_WAVE * (1 + z)
    sigmas = np.hypot(centres * g["sigma_v"] / C_KMS, INSTRUMENT_SIGMA)
    # A line of rest luminosity L lands with observed area L * scale * (1+z).
    _add_gaussians(flux, centres, sigmas, g["lines"] * scale * (1 + z))
    if int(g["cls"]) == LENS:
        _add_lensed_source(flux, g, seeing)
    return flux * np.exp(-LN10_04 * g["ebv"] * _SPEC_MW)


def _add_lensed_source(flux, g, seeing):
    """Faint continuum and emission lines of the lensed source at z_src: only the
    part of the ring that falls in the fibre is seen."""
    zs = float(g["z_src"])
    sp = _source_params(1)
    lines = line_luminosities(sp)[0]
    ring_in_fiber = 0.25 * math.exp(-0.5 * ((g["theta_ein"] - FIBER_RADIUS) / (0.5 * seeing)) ** 2)
    scale = (10.0 ** g["src_mass"] * L_OLD_5500 / (4 * np.pi * luminosity_distance_cm(zs) ** 2)
             / (1 + zs) * 1e17 * ring_in_fiber)
    _, young = continuum_parts(LAMBDA / (1 + zs), 1.0, SOURCE["a_v"])
    flux += young * scale
    centres = EMISSION_WAVE * (1 + zs)
    sigmas = np.hypot(centres * 60.0 / C_KMS, INSTRUMENT_SIGMA)
    _add_gaussians(flux, centres, sigmas, lines * scale * (1 + zs))


def render_spectrum(g, seed):
    """Observed spectrum, inverse variance, bad-pixel mask and redshift fit."""
    rng = np.random.default_rng([seed, 2, int(g["galaxy"])])
    model = galaxy_spectrum(g, rng.uniform(0.9, 1.5))
    var = (rng.uniform(0.25, 0.45) ** 2 * rng.uniform(0.7, 1.5)) * _NOISE_SHAPE \
        + 0.05 * np.maximum(model, 0)
    var = np.round(var / SPEC_QUANTUM) * SPEC_QUANTUM   # so ivar = 1/var is reproducible
    flux = model + np.sqrt(var) * rng.standard_normal(N_SPEC)
    ivar = 1.0 / var
    mask = _GAP_MASK.copy()
    for _ in range(rng.poisson(1.0)):             # cosmic rays
        i = rng.integers(0, N_SPEC - 3)
        w = rng.integers(1, 4)
        flux[i:i + w] += rng.uniform(10, 100)
        mask[i:i + w] = True
    ivar[mask] = 0.0
    flux = np.round(flux / SPEC_QUANTUM) * SPEC_QUANTUM
    zwarn = 4 if rng.random() < 0.03 else 0       # 4 = SMALL_DELTA_CHI2
    zerr = (1 + g["z"]) * rng.uniform(0.5, 2.0) * (1e-5 if zwarn == 0 else 2e-4)
    z_fit = g["z"] + zerr * rng.standard_normal()
    return flux.astype(np.float32), ivar.astype(np.float32), mask, z_fit, zerr, zwarn


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

def _row(cat, i):
    return {k: v[i] for k, v in cat.items()}


def _dataset(f, name, data=None, **kw):
    """Every dataset without timestamps, so files are byte-reproducible."""
    return f.create_dataset(name, data=data, track_times=False, **kw)


def _cells(cat, member_key, cell_key):
    """Member galaxy indices grouped by cell: [(cell, indices in galaxy order)]."""
    idx = np.flatnonzero(cat[member_key])
    cells = cat[cell_key][idx]
    order = np.lexsort((idx, cells))
    idx, cells = idx[order], cells[order]
    bounds = np.flatnonzero(np.diff(cells)) + 1
    return [(int(c[0]), i) for c, i in zip(np.split(cells, bounds), np.split(idx, bounds))]


class CellFile:
    """One healpix=N/001-of-001.hdf5, written to a temporary name and renamed on close."""

    def __init__(self, out, survey, subset, cell, cat, idx):
        folder = out / survey / subset / f"healpix={cell}"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / FILE_NAME
        self.tmp = folder / (FILE_NAME + ".tmp")
        # Pinned format versions: the same object-header layout whatever HDF5 is newer.
        self.file = h5py.File(self.tmp, "w", libver=("earliest", "v110"))
        self.cat, self.idx, self.n = cat, idx, idx.size

    def close(self):
        self.file.close()
        os.replace(self.tmp, self.path)


class ImageCell(CellFile):
    """Legacy Surveys layout: LZF-compressed (1,4,160,160) chunks, as MMU writes them."""

    def __init__(self, out, cell, cat, idx):
        super().__init__(out, IMAGE_SURVEY, IMAGE_SUBSET, cell, cat, idx)
        n = self.n
        self.array = _dataset(self.file, "image_array", shape=(n, 4, STAMP, STAMP), dtype="f4",
                              maxshape=(None, 4, STAMP, STAMP), chunks=(1, 4, STAMP, STAMP),
                              compression="lzf")
        self.mask = _dataset(self.file, "image_mask", shape=(n, STAMP, STAMP), dtype=bool,
                             maxshape=(None, STAMP, STAMP), chunks=(1, STAMP, STAMP),
                             compression="lzf")
        self.psf = np.empty((n, 4), np.float32)
        self.flux = np.empty((n, 4), np.float32)
        self.types = np.empty(n, "S3")

    def write(self, start, results):
        stop = start + len(results)
        self.array[start:stop] = np.stack([r[0] for r in results])
        self.mask[start:stop] = np.stack([r[1] for r in results])
        for k, r in enumerate(results):
            self.psf[start + k], self.flux[start + k], self.types[start + k] = r[2:5]

    def close(self):
        f, cat, idx = self.file, self.cat, self.idx
        _dataset(f, "image_band", data=np.tile(BAND_NAMES, (self.n, 1)))
        _dataset(f, "image_psf_fwhm", data=self.psf)
        _dataset(f, "image_scale", data=np.full((self.n, 4), PIXSCALE, np.float32))
        self.ids = legacy_object_ids(cat["ra_img"][idx], cat["dec_img"][idx], idx)
        _dataset(f, "object_id", data=self.ids.astype(h5py.string_dtype("utf-8", 16)))
        _dataset(f, "ra", data=cat["ra_img"][idx])
        _dataset(f, "dec", data=cat["dec_img"][idx])
        _dataset(f, "healpix", data=cat["cell_img"][idx].astype(np.int64))
        for b, band in enumerate("GRIZ"):
            _dataset(f, f"FLUX_{band}", data=self.flux[:, b])
        _dataset(f, "SHAPE_R", data=cat["theta_e"][idx].astype(np.float32))
        _dataset(f, "EBV", data=cat["ebv"][idx].astype(np.float32))
        _dataset(f, "TYPE", data=self.types)
        super().close()
        return [oid.decode() for oid in self.ids]


class SpectrumCell(CellFile):
    """DESI layout: contiguous, uncompressed (MMU writes it with create_dataset(data=...))."""

    def __init__(self, out, cell, cat, idx):
        super().__init__(out, SPEC_SURVEY, SPEC_SUBSET, cell, cat, idx)
        n = self.n
        self.dsets = {k: _dataset(self.file, f"spectrum_{k}", shape=(n, N_SPEC), dtype=t)
                      for k, t in (("flux", "f4"), ("ivar", "f4"), ("lambda", "f4"), ("mask", bool))}
        self.z_fit = np.empty(n)
        self.zerr = np.empty(n, np.float32)
        self.zwarn = np.empty(n, np.int64)

    def write(self, start, results):
        sl = slice(start, start + len(results))
        for k, name in enumerate(("flux", "ivar")):
            self.dsets[name][sl] = np.stack([r[k] for r in results])
        self.dsets["lambda"][sl] = np.tile(_LAMBDA_F32, (len(results), 1))
        self.dsets["mask"][sl] = np.stack([r[2] for r in results])
        for k, r in enumerate(results):
            self.z_fit[start + k], self.zerr[start + k], self.zwarn[start + k] = r[3:6]

    def close(self):
        f, cat, idx = self.file, self.cat, self.idx
        self.ids = desi_target_ids(cat["ra_spec"][idx], cat["dec_spec"][idx], idx)
        _dataset(f, "object_id", data=self.ids)
        _dataset(f, "TARGETID", data=self.ids)
        _dataset(f, "ra", data=cat["ra_spec"][idx])
        _dataset(f, "dec", data=cat["dec_spec"][idx])
        _dataset(f, "healpix", data=cat["cell_spec"][idx].astype(np.int64))
        _dataset(f, "Z", data=self.z_fit)
        _dataset(f, "ZERR", data=self.zerr)
        _dataset(f, "ZWARN", data=self.zwarn)
        _dataset(f, "SPECTYPE", data=np.full(self.n, b"GALAXY", dtype="S6"))
        super().close()
        return [str(int(oid)) for oid in self.ids]


# What the worker processes render from; set before the pool forks.
_WORK = {}


def _render_block(kind, rows):
    cat, seed = _WORK["cat"], _WORK["seed"]
    render = render_image if kind == "image" else render_spectrum
    return [render(_row(cat, i), seed) for i in rows]


def _render_stream(kind, blocks, pool, jobs):
    """Rendered blocks in order.  At most 2*jobs blocks are in flight, so memory
    stays bounded however fast the writer is."""
    if pool is None:
        for rows in blocks:
            yield _render_block(kind, rows)
        return
    pending = deque()
    for rows in blocks:
        pending.append(pool.apply_async(_render_block, (kind, rows)))
        if len(pending) >= 2 * jobs:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def write_survey(out, cat, kind, pool, jobs):
    """Render and write every cell of one survey; returns its truth.csv rows."""
    member, cell_key, cls_, block, survey = (
        ("in_image", "cell_img", ImageCell, BLOCK_IMAGES, IMAGE_SURVEY) if kind == "image" else
        ("in_spec", "cell_spec", SpectrumCell, BLOCK_SPECTRA, SPEC_SURVEY))
    cells = _cells(cat, member, cell_key)
    tasks = [(k, s, idx[s:s + block]) for k, (_, idx) in enumerate(cells)
             for s in range(0, idx.size, block)]
    truth, writer, current = [], None, -1
    for (k, start, rows), results in zip(tasks, _render_stream(kind, [t[2] for t in tasks], pool, jobs)):
        if k != current:
            if writer is not None:
                truth += _truth_rows(survey, writer.close(), cells[current][1], cat)
            writer, current = cls_(out, cells[k][0], cat, cells[k][1]), k
        writer.write(start, results)
    if writer is not None:
        truth += _truth_rows(survey, writer.close(), cells[current][1], cat)
    return truth


def _truth_rows(survey, ids, idx, cat):
    return [(survey, oid, int(i), CLASSES[cat["cls"][i]], float(cat["z"][i]),
             float(cat["log_mass"][i])) for oid, i in zip(ids, idx)]


def clear_previous(out):
    """Remove the files an earlier run wrote (only its own file names), so that a
    rerun with other arguments leaves no stale cells behind.  truth.csv marks a
    folder as ours: cell files without it may be real MMU data, which is kept."""
    old = []
    for survey, subset in ((IMAGE_SURVEY, IMAGE_SUBSET), (SPEC_SURVEY, SPEC_SUBSET)):
        base = out / survey / subset
        old += list(base.glob(f"healpix=*/{FILE_NAME}")) + list(base.glob(f"healpix=*/{FILE_NAME}.tmp"))
    if old and not (out / "truth.csv").exists():
        sys.exit(f"make_samples.py: {out} holds {len(old)} MMU cell files but no truth.csv, "
                 "so they were not written by this tool; choose another --out")
    for f in old:
        f.unlink()
        if not any(f.parent.iterdir()):
            f.parent.rmdir()
    if (out / "truth.csv").exists():
        (out / "truth.csv").unlink()


def write_truth(path, rows):
    """rows: (survey, object_id text, galaxy, class, z, log_mass), sorted here."""
    rows.sort(key=lambda r: (r[0], r[2]))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["survey", "object_id", "galaxy", "class", "redshift", "log_mass"])
        for survey, oid, gal, cls, z, m in rows:
            w.writerow([survey, oid, gal, cls, f"{z:.6f}", f"{m:.4f}"])


def default_jobs():
    return max(1, min(4, len(os.sched_getaffinity(0))))


def generate(out, n, seed, jobs=None, log=print):
    """Write the whole sample set under out.  The bytes do not depend on jobs."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clear_previous(out)
    write_truth(out / "truth.csv", [])     # marks the folder as ours even if this run dies
    jobs = jobs or default_jobs()
    t0 = time.time()
    cat = draw_catalog(n, seed)
    _WORK.update(cat=cat, seed=seed)
    pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None
    try:
        truth = write_survey(out, cat, "image", pool, jobs)
        truth += write_survey(out, cat, "spectrum", pool, jobs)
    except BaseException:
        if pool is not None:
            pool.terminate()              # do not wait for the queued blocks
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        _WORK.clear()
    write_truth(out / "truth.csv", truth)
    log(summary(cat, time.time() - t0))
    return cat


def summary(cat, seconds):
    lines = [f"generated {cat['z'].size} galaxies in {seconds:.1f} s"]
    for key, name in (("in_image", IMAGE_SURVEY), ("in_spec", SPEC_SURVEY)):
        m = cat[key]
        per = ", ".join(f"{c} {int((m & (cat['cls'] == k)).sum())}" for k, c in enumerate(CLASSES))
        cells = np.unique(cat["cell_img" if key == "in_image" else "cell_spec"][m]).size
        lines.append(f"  {name}: {int(m.sum())} objects in {cells} cells ({per})")
    both = cat["in_image"] & cat["in_spec"]
    split = int((both & (cat["cell_img"] != cat["cell_spec"])).sum())
    lines.append(f"  in both surveys: {int(both.sum())} ({split} split across a cell border)")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output root directory")
    ap.add_argument("--n", type=int, default=DEFAULT_N, help=f"galaxies (default {DEFAULT_N})")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed (default {DEFAULT_SEED})")
    ap.add_argument("--jobs", type=int, default=None,
                    help="rendering processes (default: CPUs, at most 4); output does not depend on it")
    args = ap.parse_args(argv)
    if not 1 <= args.n < 2 ** 22:
        ap.error("--n must be between 1 and 4194303 (the OBJID field of TARGETID)")
    if args.seed < 0:
        ap.error("--seed must be >= 0")
    if args.jobs is not None and args.jobs < 1:
        ap.error("--jobs must be >= 1")
    generate(args.out, args.n, args.seed, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
