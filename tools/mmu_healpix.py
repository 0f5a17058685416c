"""HEALPix NESTED indexing in plain numpy, as used by the MMU v1 partitioning.

MMU files live under ``healpix=N`` where N = ang2pix(nside=16, ra, dec, lonlat=True,
nest=True).  Debian's python3 has no healpy, so this module re-implements the
standard HEALPix algorithm (Gorski et al. 2005, as in chealpix's
``ang2pix_nest_z_phi`` / ``pix2ang_nest_z_phi``) for any power-of-two nside.
Only numpy is needed; every function is vectorised.
"""

import numpy as np

MMU_NSIDE = 16

# Face layout of the 12 base pixels: ring index (in units of nside) and
# longitude offset (in units of pi/4) of each face's south-most corner.
_JRLL = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4], dtype=np.int64)
_JPLL = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7], dtype=np.int64)


def _order(nside):
    order = int(nside).bit_length() - 1
    if nside < 1 or (1 << order) != nside or order > 29:
        raise ValueError(f"nside must be a power of two <= 2**29, got {nside}")
    return order


def _spread_bits(v, order):
    """Put bit k of v at bit 2k (the x half of the NESTED bit interleave)."""
    out = np.zeros_like(v)
    for k in range(order):
        out |= ((v >> k) & 1) << (2 * k)
    return out


def _compress_bits(v, order):
    """Inverse of _spread_bits: gather the even bits of v."""
    out = np.zeros_like(v)
    for k in range(order):
        out |= ((v >> (2 * k)) & 1) << k
    return out


def ang2pix_nest(nside, ra_deg, dec_deg):
    """NESTED pixel index of (ra, dec) in degrees, like healpy's
    ``ang2pix(nside, ra, dec, lonlat=True, nest=True)``.  Returns int64."""
    order = _order(nside)
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    z = np.sin(np.radians(dec))                     # z = cos(colatitude)
    za = np.abs(z)
    tt = np.mod(np.radians(ra), 2.0 * np.pi) / (0.5 * np.pi)   # in [0, 4)

    # Equatorial belt |z| <= 2/3: two families of diagonal lines.
    temp1 = nside * (0.5 + tt)
    temp2 = nside * z * 0.75
    jp = (temp1 - temp2).astype(np.int64)           # ascending edge line index
    jm = (temp1 + temp2).astype(np.int64)           # descending edge line index
    ifp = jp // nside
    ifm = jm // nside
    face_eq = np.where(ifp == ifm, ifp | 4, np.where(ifp < ifm, ifp, ifm + 8))
    ix_eq = jm & (nside - 1)
    iy_eq = nside - (jp & (nside - 1)) - 1

    # Polar caps: distance from the pole scales as sqrt(3(1-|z|)).
    ntt = np.minimum(tt.astype(np.int64), 3)
    tp = tt - ntt
    tmp = nside * np.sqrt(3.0 * (1.0 - za))
    jp_c = np.minimum((tp * tmp).astype(np.int64), nside - 1)
    jm_c = np.minimum(((1.0 - tp) * tmp).astype(np.int64), nside - 1)
    north = z >= 0
    face_cap = np.where(north, ntt, ntt + 8)
    ix_cap = np.where(north, nside - jm_c - 1, jp_c)
    iy_cap = np.where(north, nside - jp_c - 1, jm_c)

    eq = za <= 2.0 / 3.0
    face = np.where(eq, face_eq, face_cap)
    ix = np.where(eq, ix_eq, ix_cap)
    iy = np.where(eq, iy_eq, iy_cap)
    pix = (face << (2 * order)) + _spread_bits(ix, order) + (_spread_bits(iy, order) << 1)
    return pix.astype(np.int64)


def pix2ang_nest(nside, pix):
    """Centre (ra, dec) in degrees of NESTED pixels; inverse of ang2pix_nest."""
    order = _order(nside)
    pix = np.asarray(pix, dtype=np.int64)
    npix = 12 * nside * nside
    if np.any((pix < 0) | (pix >= npix)):
        raise ValueError("pixel index out of range")
    face = pix >> (2 * order)
    sub = pix & (nside * nside - 1)
    ix = _compress_bits(sub, order)
    iy = _compress_bits(sub >> 1, order)

    jr = _JRLL[face] * nside - ix - iy - 1          # ring index, 1 .. 4*nside-1
    fact2 = 4.0 / npix
    fact1 = 2.0 * nside * fact2
    north_cap = jr < nside
    south_cap = jr > 3 * nside
    nr = np.where(north_cap, jr, np.where(south_cap, 4 * nside - jr, nside))
    z = np.where(north_cap, 1.0 - nr * nr * fact2,
                 np.where(south_cap, nr * nr * fact2 - 1.0, (2 * nside - jr) * fact1))
    kshift = np.where(north_cap | south_cap, 0, (jr - nside) & 1)
    jp = (_JPLL[face] * nr + ix - iy + 1 + kshift) // 2
    nl4 = 4 * nside
    jp = np.where(jp > nl4, jp - nl4, np.where(jp < 1, jp + nl4, jp))
    phi = (jp - (kshift + 1) * 0.5) * (0.5 * np.pi / nr)
    ra = np.degrees(phi) % 360.0
    dec = np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))
    return ra, dec


def mmu_cell(ra_deg, dec_deg):
    """The MMU partition cell (nside 16, NESTED) of positions in degrees."""
    return ang2pix_nest(MMU_NSIDE, ra_deg, dec_deg)
