"""The image baseline recomputed in float64 numpy, independently of the C++ code (src/encode/image_rings.cpp):
centre crop, asinh, per band and ring of the inscribed disc the mean of the usable pixels and the moduli of
their angular Fourier modes 1..modes, unit norm; then the stored PCA (fit.bin) and unit norm."""
import numpy as np


def ring_features(img, good, order, scale, rings=24, modes=4, crop_arcsec=25.152, soft=0.01):
    """img, good: (bands, H, W); order: band indices in the space's order (None: a band the file lacks, zeros)."""
    img = img.astype(np.float64)
    h, w = img.shape[1:]
    crop = min(max(int(round(crop_arcsec / scale)), 1), min(h, w))
    y0, x0 = (h - crop) // 2, (w - crop) // 2
    dy, dx = np.mgrid[0:crop, 0:crop] - (crop - 1) / 2.0
    ring = np.floor(np.hypot(dy, dx) / (crop / 2.0) * rings).astype(int)
    theta = np.arctan2(dy, dx)
    feats = np.zeros((len(order), modes + 1, rings))
    for t, b in enumerate(order):
        if b is None:
            continue
        px = np.arcsinh(img[b, y0:y0 + crop, x0:x0 + crop] / soft)
        ok = good[b, y0:y0 + crop, x0:x0 + crop] & (ring < rings)
        n = np.bincount(ring[ok], minlength=rings)
        for m in range(modes + 1):
            wave = px[ok] * np.exp(-1j * m * theta[ok])
            c = np.bincount(ring[ok], weights=wave.real, minlength=rings) + \
                1j * np.bincount(ring[ok], weights=wave.imag, minlength=rings)
            c = np.where(n > 0, c / np.maximum(n, 1), 0)
            feats[t, m] = c.real if m == 0 else np.abs(c)
    x = feats.ravel()
    return x / np.linalg.norm(x)


def read_fit(fit_path):
    """(mean, components) of a baseline space's fit.bin ("MMUPCA01", input and output dims, then float32)."""
    blob = open(fit_path, "rb").read()
    d_in, d_out = np.frombuffer(blob[8:24], dtype=np.int64)
    p = np.frombuffer(blob[24:], dtype=np.float32).astype(np.float64)
    return p[:d_in], p[d_in:d_in + d_in * d_out].reshape(d_out, d_in)


def project(fit_path, x):
    mean, comps = read_fit(fit_path)
    y = comps @ (x - mean)
    return y / np.linalg.norm(y)
