"""Rotated and flipped copies of legacysurvey-like images, for the
orientation checks (issue 15 point 4). Each original gets its 7 non-trivial
90-degree/flip copies (np.rot90 / mirror about the stamp centre, exact) and one
rotation by an arbitrary angle (bilinear interpolation in numpy about the same
centre; a pixel is usable when its 4 source pixels are). Stamps are cut to
their centre 96 x 96 pixels (the baseline's 25.152" crop at 0.262"/px) so the
files stay small. Written with h5py in the MMU layout under new object ids."""
import glob
import os

import h5py
import numpy as np

SIZE = 96
KINDS = ["rot90", "rot180", "rot270", "flip", "flip-rot90", "flip-rot180", "flip-rot270", "angle"]


def dihedral(img, good, k):
    """Copy k (1..7) of a (bands, H, W) image and its (H, W) mask: k % 4 quarter turns, mirrored when k >= 4."""
    a, g = np.rot90(img, k % 4, axes=(1, 2)), np.rot90(good, k % 4)
    if k >= 4:
        a, g = a[:, :, ::-1], g[:, ::-1]
    return a, g


def rotate(img, good, angle):
    """Bilinear rotation of (bands, H, W) about the stamp centre by angle (radians)."""
    _, h, w = img.shape
    c = (h - 1) / 2.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ca, sa = np.cos(angle), np.sin(angle)
    sy = ca * (yy - c) - sa * (xx - c) + c
    sx = sa * (yy - c) + ca * (xx - c) + c
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    inside = (y0 >= 0) & (x0 >= 0) & (y0 + 1 < h) & (x0 + 1 < w)
    y0, x0 = np.clip(y0, 0, h - 2), np.clip(x0, 0, w - 2)
    fy, fx = sy - y0, sx - x0
    a = np.nan_to_num(img.astype(np.float64))
    out = ((1 - fy) * (1 - fx) * a[:, y0, x0] + (1 - fy) * fx * a[:, y0, x0 + 1]
           + fy * (1 - fx) * a[:, y0 + 1, x0] + fy * fx * a[:, y0 + 1, x0 + 1]) * inside
    g = good[y0, x0] & good[y0, x0 + 1] & good[y0 + 1, x0] & good[y0 + 1, x0 + 1] & inside
    return out.astype(np.float32), g


def centre(a):
    h, w = a.shape[-2:]
    y0, x0 = (h - SIZE) // 2, (w - SIZE) // 2
    return a[..., y0:y0 + SIZE, x0:x0 + SIZE]


def _write(path, src, rows, images, masks, ids):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, d in src.items():
            if name == "image_array":
                f.create_dataset(name, data=np.stack(images).astype(np.float32), chunks=(1, 4, SIZE, SIZE))
            elif name == "image_mask":
                f.create_dataset(name, data=np.stack(masks).astype(bool))
            elif name == "object_id":
                f.create_dataset(name, data=np.array(ids, dtype="S40"))
            else:
                f.create_dataset(name, data=d[:][rows])


def write_copies(samples, out, n_max=200, seed=15):
    """out/originals and out/copies (two roots in the MMU layout) from the first n_max images of
    samples/legacysurvey; returns {copy id: (original id, kind)} (strings)."""
    rng = np.random.default_rng(seed)
    pairs, taken = {}, 0
    for src_path in sorted(glob.glob(os.path.join(samples, "legacysurvey", "*", "healpix=*", "*.hdf5"))):
        if taken >= n_max:
            break
        rel = os.path.relpath(src_path, samples)
        with h5py.File(src_path, "r") as src:
            n = min(src["object_id"].shape[0], n_max - taken)
            taken += n
            ids = [x.decode() for x in src["object_id"][:n]]
            imgs, goods = src["image_array"][:n], src["image_mask"][:n].astype(bool)
            _write(os.path.join(out, "originals", rel), src, np.arange(n), [centre(x) for x in imgs],
                   [centre(g) for g in goods], ids)
            c_rows, c_imgs, c_masks, c_ids = [], [], [], []
            for i in range(n):
                for k, kind in enumerate(KINDS):
                    if kind == "angle":
                        # Away from the quarter turns, which are the exact copies above.
                        angle = np.deg2rad(rng.uniform(5, 85) + 90 * rng.integers(0, 4))
                        a, g = rotate(imgs[i], goods[i], angle)
                    else:
                        a, g = dihedral(imgs[i], goods[i], k + 1)
                    c_rows.append(i)
                    c_imgs.append(centre(a))
                    c_masks.append(centre(g))
                    c_ids.append("%s-%s" % (ids[i], kind))
                    pairs[c_ids[-1]] = (ids[i], kind)
            _write(os.path.join(out, "copies", rel), src, np.array(c_rows), c_imgs, c_masks, c_ids)
    return pairs


def copy_top1(vecs, meta, pairs):
    """{kind: (fraction of copies whose nearest original (cosine; vectors are unit) is their own, copies)}.
    Candidates are the originals only: another copy of the same galaxy is not an answer."""
    row = {m[0]: i for i, m in enumerate(meta)}
    originals = sorted({o for o, _ in pairs.values()})
    o_idx = np.array([row[o] for o in originals])
    result = {}
    for kind in ("dihedral", "angle"):
        copies = [c for c, (_, k) in pairs.items() if (k == "angle") == (kind == "angle") and c in row]
        sims = vecs[[row[c] for c in copies]].astype(np.float64) @ vecs[o_idx].astype(np.float64).T
        best = sims.argmax(axis=1)
        hits = sum(originals[b] == pairs[c][0] for b, c in zip(best, copies))
        result[kind] = (hits / len(copies), len(copies))
    return result
