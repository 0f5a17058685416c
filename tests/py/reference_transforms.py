"""Independent float64 numpy implementation of the model preprocessing that
mmu-index runs before a model ("what the model sees"), written from the
published code as described in docs/MODELS.md, not from our C++:

  astroclip-image      AstroCLIP's AstroClipCollator (docs/MODELS.md §1.3): ToRGB
                       (Legacy Survey viewer) on bands g, r, z, then
                       torchvision CenterCrop; channels (z, r, g).
  specformer-spectrum  SpecFormer.preprocess (docs/MODELS.md §1.4).
  aion-image           AION-1 image codec preprocessing up to the band padding
                       (docs/MODELS.md §2.2): CenterCrop, Clamp, (HSC rescale: not
                       for Legacy Survey), range compression; bands g, r, i, z.

plus our mask rules (the published code has no masks):
  * image pixels that are masked or non-finite become 0 before the transform;
  * spectrum pixels that are unusable (mask set, ivar <= 0, lambda <= 0 or
    non-finite flux) are replaced by linear interpolation between the nearest
    usable neighbours, flat beyond the first/last usable pixel; a spectrum with
    no usable pixel becomes all 0;
  * bands are found by the last letter of their name ("des-g" -> g), else by
    the position g, r, i, z.

Read helpers take MMU files as h5py reads them (legacysurvey: image_mask True =
good, one (H, W) mask for all bands or one per band; desi: spectrum_mask True
= bad). Needs numpy and h5py (Debian's /usr/bin/python3).
"""
import numpy as np

ASTROCLIP_DEFAULTS = {"crop": 144, "Q": 20.0, "m": 0.03, "scale_g": 6.0, "scale_r": 3.4, "scale_z": 2.2}
SPECFORMER_DEFAULTS = {"section": 20, "stride": 10, "std_floor": 0.2}
AION_DEFAULTS = {"crop": 96}
# AION's BAND_CENTER_MAX for the Legacy Survey (DES-*) bands.
AION_CLAMP = {"g": 6.0, "r": 15.0, "i": 20.0, "z": 25.0}
AION_RANGE_COMPRESSION, AION_MULT = 0.01, 10.0


# ---------------------------------------------------------------- inputs

def band_index(band_names, letter, n_bands):
    """Index of band `letter` by the last letter of its name, else its g,r,i,z position."""
    names = [(b.decode() if isinstance(b, bytes) else str(b)).strip().lower() for b in (band_names or [])]
    if names:
        hits = [k for k, n in enumerate(names) if n and n[-1] == letter]
        if not hits:
            raise KeyError("band '%s' not among %s" % (letter, names))
        return hits[0]
    k = "griz".index(letter)
    if k >= n_bands:
        raise KeyError("band '%s' missing (%d bands, no names)" % (letter, n_bands))
    return k


def usable_images(pixels, good=None):
    """(n, bands, H, W) float64 with masked / non-finite pixels set to 0.
    good: None, (n, H, W) shared by all bands, or (n, bands, H, W); True = usable."""
    x = np.asarray(pixels, dtype=np.float64)
    ok = np.isfinite(x)
    if good is not None:
        g = np.asarray(good, dtype=bool)
        if g.ndim == 3:
            g = g[:, None, :, :]
        ok = ok & g
    return np.where(ok, x, 0.0)


def usable_spectra(flux, ivar=None, lam=None, bad=None):
    """Boolean (n, L): usable = mask not set, ivar > 0, lambda > 0, flux finite."""
    f = np.asarray(flux, dtype=np.float64)
    ok = np.isfinite(f)
    if bad is not None:
        ok &= ~np.asarray(bad, dtype=bool)
    if ivar is not None:
        ok &= np.asarray(ivar, dtype=np.float64) > 0
    if lam is not None:
        ok &= np.asarray(lam, dtype=np.float64) > 0
    return ok


def fill_unusable(flux, ok):
    """Linear interpolation over unusable pixels (flat at the ends; none usable -> 0)."""
    f = np.asarray(flux, dtype=np.float64)
    out = np.zeros_like(f)
    idx = np.arange(f.shape[1])
    for i in range(f.shape[0]):
        good = np.flatnonzero(ok[i])
        if good.size == 0:
            continue  # all zeros
        # np.interp: linear inside, fp[0] / fp[-1] beyond the ends.
        out[i] = np.interp(idx, good, f[i, good])
    return out


def torchvision_center_offsets(h, w, crop):
    """torchvision.transforms.functional.center_crop: int(round((size - crop) / 2.0))
    (Python's round: halves go to the even integer)."""
    return int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))


# ---------------------------------------------------------------- transforms

def astroclip_image(pixels, good=None, band_names=None, crop=144, Q=20.0, m=0.03, scale_g=6.0, scale_r=3.4,
                    scale_z=2.2):
    """AstroClipCollator: ToRGB(bands=[g, r, z], m, Q) then CenterCrop(crop).
    Returns (n, 3, crop, crop) float64, planes (z, r, g) (ToRGB's rgb_scales:
    g -> plane 2, r -> plane 1, z -> plane 0)."""
    x = usable_images(pixels, good)
    n, nb, h, w = x.shape
    bands = [("g", scale_g, 2), ("r", scale_r, 1), ("z", scale_z, 0)]
    # ToRGB, per pixel.
    scaled = [(x[:, band_index(band_names, b, nb)] * s + m, plane) for b, s, plane in bands]
    I = sum(np.maximum(0.0, v) for v, _ in scaled) / len(bands)
    fI = np.arcsinh(Q * I) / np.sqrt(Q)  # published code hard-codes Q = 20 here; the card's Q defaults to 20
    I = I + (I == 0.0) * 1e-6
    rgb = np.zeros((n, 3, h, w))
    for v, plane in scaled:
        rgb[:, plane] = v * fI / I  # numerator not clipped at 0
    rgb = np.clip(rgb, 0.0, 1.0)
    # CenterCrop (after ToRGB upstream; the transform is per pixel, so the order does not matter).
    top, left = torchvision_center_offsets(h, w, crop)
    return rgb[:, :, top:top + crop, left:left + crop]


def specformer_tokens(length, section=20, stride=10):
    overlap = section - stride
    return len(np.arange(0, length - overlap, stride)) - 1 + 1


def specformer_spectrum(flux, ok=None, section=20, stride=10, std_floor=0.2):
    """SpecFormer.preprocess on the (mask-filled) flux: standardise by the mean
    and the unbiased std clipped below at std_floor, windows of `section` pixels
    starting at arange(0, L - overlap, stride) with the last window always
    dropped, F.pad(x, (2, 0, 1, 0)), token 0 = [(mean-2)/2, (std-2)/8, 0, ...].
    Returns (n, tokens, section + 2) float64."""
    f = np.asarray(flux, dtype=np.float64)
    x = f if ok is None else fill_unusable(f, ok)
    n, length = x.shape
    mean = x.mean(axis=1, keepdims=True)
    std = np.maximum(x.std(axis=1, ddof=1, keepdims=True), std_floor)  # torch.std is unbiased; .clip_(0.2)
    z = (x - mean) / std
    overlap = section - stride
    starts = np.arange(0, length - overlap, section - overlap)
    windows = [z[:, s:s + section] for s in starts]
    windows.pop(-1)  # upstream: sections[-1].shape[1] (= 1) < section, always true
    assert all(wd.shape[1] == section for wd in windows), "a short window survived"
    tokens = np.stack(windows, axis=1)  # (n, T-1, section)
    out = np.zeros((n, len(windows) + 1, section + 2))
    out[:, 1:, 2:] = tokens
    out[:, 0, 0] = (mean[:, 0] - 2) / 2
    out[:, 0, 1] = (std[:, 0] - 2) / 8
    return out


def aion_image(pixels, good=None, band_names=None, crop=96):
    """AION-1 image codec input for Legacy Survey images: CenterCrop(crop) with
    offsets (size - crop) // 2, per-band clamp to +-{g 6, r 15, i 20, z 25},
    no zero-point rescale (DES bands), asinh(x / 0.01) * 0.01 * 10.
    Returns (n, 4, crop, crop) float64 in band order g, r, i, z."""
    x = usable_images(pixels, good)
    n, nb, h, w = x.shape
    top, left = (h - crop) // 2, (w - crop) // 2
    out = np.empty((n, 4, crop, crop))
    for k, b in enumerate("griz"):
        v = x[:, band_index(band_names, b, nb), top:top + crop, left:left + crop]
        v = np.clip(v, -AION_CLAMP[b], AION_CLAMP[b])
        out[:, k] = np.arcsinh(v / AION_RANGE_COMPRESSION) * AION_RANGE_COMPRESSION * AION_MULT
    return out


# ---------------------------------------------------------------- files and cards

def read_images(path, start=0, count=None):
    """(pixels, good, band_names) of an MMU image file (h5py)."""
    import h5py
    with h5py.File(path, "r") as f:
        end = None if count is None else start + count
        pixels = f["image_array"][start:end]
        good = f["image_mask"][start:end] if "image_mask" in f else None
        names = None
        if "image_band" in f:
            b = f["image_band"]
            names = list(b[0]) if b.ndim == 2 else list(b[:])
    return pixels, good, names


def read_spectra(path, start=0, count=None):
    """(flux, usable) of an MMU spectrum file (h5py)."""
    import h5py
    with h5py.File(path, "r") as f:
        end = None if count is None else start + count
        flux = f["spectrum_flux"][start:end]
        ivar = f["spectrum_ivar"][start:end] if "spectrum_ivar" in f else None
        lam = f["spectrum_lambda"][start:end] if "spectrum_lambda" in f else None
        bad = f["spectrum_mask"][start:end] if "spectrum_mask" in f else None
    return flux, usable_spectra(flux, ivar, lam, bad)


def card_params(card):
    name = card["preprocessing"]["name"]
    defaults = {"astroclip-image": ASTROCLIP_DEFAULTS, "specformer-spectrum": SPECFORMER_DEFAULTS,
                "aion-image": AION_DEFAULTS}[name]
    p = dict(defaults)
    p.update(card["preprocessing"].get("params", {}))
    return name, p


def transform_file(path, card, start=0, count=None):
    """The model inputs of a file's objects under a model card, float64."""
    name, p = card_params(card)
    if name == "specformer-spectrum":
        flux, ok = read_spectra(path, start, count)
        return specformer_spectrum(flux, ok, int(p["section"]), int(p["stride"]), float(p["std_floor"]))
    pixels, good, names = read_images(path, start, count)
    if name == "astroclip-image":
        return astroclip_image(pixels, good, names, int(p["crop"]), float(p["Q"]), float(p["m"]),
                               float(p["scale_g"]), float(p["scale_r"]), float(p["scale_z"]))
    return aion_image(pixels, good, names, int(p["crop"]))
