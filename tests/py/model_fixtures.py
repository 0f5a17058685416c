"""Fixtures for tests/py/test_models.py: small TorchScript models, model
packages (good and bad), and MMU files whose masked / unusable pixels hold NaN
and Inf. Needs Debian's /usr/bin/python3 (numpy, h5py, python3-torch).
"""
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools")
sys.path.insert(0, HERE)
sys.path.insert(0, TOOLS)

import mmu_fixtures as mf  # noqa: E402
import package_model  # noqa: E402


# ---------------------------------------------------------------- models

def _save_traced(module, example, path):
    import torch
    module.eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.jit.save(traced, path)
    return path


def tiny_aion_model(path, dim=16, seed=5):
    """[B, 4, 96, 96] -> 8x8 average pool -> Linear(576, dim): an aion-image stand-in."""
    import torch
    from torch import nn

    class TinyAion(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4 * 12 * 12, dim)

        def forward(self, x):
            return self.proj(nn.functional.avg_pool2d(x, 8).flatten(1))

    torch.manual_seed(seed)
    return _save_traced(TinyAion(), torch.rand(2, 4, 96, 96), path)


def tiny_aion_squeeze_model(path, dim=12, seed=6):
    """Like tiny_aion_model, but ends in .squeeze() as AstroCLIP's heads do: a
    batch of one comes back as [dim] (mmu-index accepts that)."""
    import torch
    from torch import nn

    class TinyAionSqueeze(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4 * 12 * 12, dim)

        def forward(self, x):
            return self.proj(nn.functional.avg_pool2d(x, 8).flatten(1)).squeeze()

    torch.manual_seed(seed)
    return _save_traced(TinyAionSqueeze(), torch.rand(2, 4, 96, 96), path)


def nan_model(path, shape, dim):
    """Returns NaN embeddings of the right shape."""
    import torch
    from torch import nn

    class NaNModel(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :dim] * float("nan")

    return _save_traced(NaNModel(), torch.rand((2,) + tuple(shape)), path)


def package_copy(src_pkg, dst, **card_changes):
    """Copies a package and rewrites fields of its card (None deletes a field)."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src_pkg, dst)
    card = json.load(open(os.path.join(dst, "model.json")))
    for k, v in card_changes.items():
        if v is None:
            card.pop(k, None)
        else:
            card[k] = v
    with open(os.path.join(dst, "model.json"), "w") as f:
        json.dump(card, f, indent=2)
    return dst


def write_raw_card(pkg, text):
    with open(os.path.join(pkg, "model.json"), "w") as f:
        f.write(text)


def bad_packages(root, image_pkg, spectrum_pkg):
    """{case: (package dir, words its refusal must contain)}. Each is refused
    by mmu-index before any store work."""
    os.makedirs(root, exist_ok=True)
    card = json.load(open(os.path.join(image_pkg, "model.json")))
    scard = json.load(open(os.path.join(spectrum_pkg, "model.json")))
    cases = {}

    def p(name):
        return os.path.join(root, name)

    # Card input shape that astroclip-image cannot produce.
    cases["card shape [3,96,96] for astroclip-image"] = (
        package_copy(image_pkg, p("shape96"), input={"shape": [3, 96, 96]}), ["input.shape"])
    # TorchScript whose real input differs from its (valid) card: the spectrum model under an image card.
    d = package_copy(image_pkg, p("model_shape"))
    shutil.copyfile(os.path.join(spectrum_pkg, "model.pt"), os.path.join(d, "model.pt"))
    c = dict(card, sha256=package_model.sha256_file(os.path.join(d, "model.pt")), output={"dim": scard["output"]["dim"],
                                                                                          "l2_normalized": False})
    with open(os.path.join(d, "model.json"), "w") as f:
        json.dump(c, f)
    cases["TorchScript input [778,22] under a [3,144,144] card"] = (d, ["[3, 144, 144]"])
    # No model.json.
    d = package_copy(image_pkg, p("no_card"))
    os.remove(os.path.join(d, "model.json"))
    cases["no model.json"] = (d, ["model.json"])
    # No folder at all.
    cases["package folder missing"] = (p("does_not_exist"), ["does not exist"])
    # Invalid JSON.
    d = package_copy(image_pkg, p("bad_json"))
    write_raw_card(d, '{"format": "mmu-model/1", "name": "x",, }')
    cases["model.json not valid JSON"] = (d, ["JSON"])
    # Missing fields.
    for field in ("sha256", "output", "input", "version", "preprocessing"):
        cases["model.json without '%s'" % field] = (package_copy(image_pkg, p("no_" + field), **{field: None}),
                                                     [field])
    # Wrong format.
    cases["format mmu-model/2"] = (package_copy(image_pkg, p("format2"), format="mmu-model/2"), ["mmu-model/2"])
    # Unknown preprocessing.
    cases["unknown preprocessing"] = (
        package_copy(image_pkg, p("unknown_pre"), preprocessing={"name": "astroclip-imagex", "params": {}}),
        ["astroclip-imagex"])
    # Modality that does not fit the preprocessing.
    cases["modality spectrum with astroclip-image"] = (
        package_copy(image_pkg, p("modality"), modality="spectrum"), ["modality"])
    cases["modality nonsense"] = (package_copy(image_pkg, p("modality2"), modality="radio"), ["radio"])
    # Corrupt model.pt: hash mismatch.
    d = package_copy(image_pkg, p("corrupt"))
    mp = os.path.join(d, "model.pt")
    data = bytearray(open(mp, "rb").read())
    for k in range(len(data) // 2, len(data) // 2 + 64):
        data[k] ^= 0xFF
    open(mp, "wb").write(bytes(data))
    cases["corrupt model.pt (sha256 mismatch)"] = (d, ["sha256"])
    # Model file missing.
    d = package_copy(image_pkg, p("no_file"))
    os.remove(os.path.join(d, "model.pt"))
    cases["model.pt missing"] = (d, ["missing"])
    # Hash-correct garbage.
    d = package_copy(image_pkg, p("garbage"))
    mp = os.path.join(d, "model.pt")
    open(mp, "wb").write(np.random.default_rng(3).bytes(4096))
    c = dict(card, sha256=package_model.sha256_file(mp))
    with open(os.path.join(d, "model.json"), "w") as f:
        json.dump(c, f)
    cases["garbage model.pt with a correct sha256"] = (d, ["TorchScript"])
    # Output dim differs from the card.
    dim = card["output"]["dim"]
    cases["card dim %d, model returns %d" % (dim // 2, dim)] = (
        package_copy(image_pkg, p("dim"), output={"dim": dim // 2, "l2_normalized": False}),
        [str(dim // 2), str(dim)])
    # NaN embeddings.
    d = os.path.join(root, "nan")
    shutil.rmtree(d, ignore_errors=True)
    tmp = nan_model(os.path.join(root, "nan_tmp", "model.pt"), card["input"]["shape"], dim)
    package_model.package(tmp, d, "nan-model", "1", "image", "astroclip-image", card["input"]["shape"], dim,
                          check=False)
    cases["model returning NaN"] = (d, ["NaN"])
    return cases


# ---------------------------------------------------------------- MMU files with NaN / Inf

def nan_image_datasets(n=6, seed=11, size=mf.IMAGE_SIZE, per_band_mask=False, band_order="griz"):
    """Galaxy blobs with: NaN / +-Inf in masked pixels, a masked edge strip of
    NaN, pixels below zero (all bands: the I == 0 branch of ToRGB), values
    beyond AION's clamps, and a fully masked object. Bands stored in
    band_order, named 'des-<b>'."""
    d = mf.image_datasets(n=n, seed=seed)
    img = d["image_array"]
    if size != mf.IMAGE_SIZE:
        c0 = (mf.IMAGE_SIZE - size) // 2
        img = np.ascontiguousarray(img[:, :, c0:c0 + size, c0:c0 + size])
    img = img.copy()
    nb = img.shape[1]
    good = np.ones((n, nb, size, size), dtype=bool)
    c = size // 2
    # 0: a bad column, NaN in every band.
    good[0, :, :, c + 3] = False
    img[0, :, :, c + 3] = np.nan
    # 1: a saturated blob of +Inf / -Inf.
    good[1, :, c - 5:c + 5, c - 5:c + 5] = False
    img[1, :, c - 5:c, c - 5:c + 5] = np.inf
    img[1, :, c:c + 5, c - 5:c + 5] = -np.inf
    # 2: an off-footprint edge strip of NaN (inside the 96 and 144 crops too).
    good[2, :, :, : size // 4 + 10] = False
    img[2, :, :, : size // 4 + 10] = np.nan
    # 3: sky below zero in all bands (I == 0), a very bright core, beyond-clamp values.
    img[3, :, 10:30, 10:30] = -1.0
    img[3, :, c - 2:c + 2, c - 2:c + 2] = 40.0
    img[3, 0, c + 10:c + 14, c + 10:c + 14] = -12.0
    # 4: all masked, values NaN.
    good[4] = False
    img[4] = np.nan
    if n > 5 and per_band_mask:
        # 5: a masked region in one band only.
        good[5, 1, 20:60, 20:60] = False
        img[5, 1, 20:60, 20:60] = np.nan
    order = ["griz".index(b) for b in band_order]
    img = np.ascontiguousarray(img[:, order])
    good = np.ascontiguousarray(good[:, order])
    d["image_array"] = img.astype(np.float32)
    d["image_mask"] = good if per_band_mask else good[:, 0]
    d["image_band"] = np.array([[("des-" + b).encode() for b in band_order]] * n, dtype="S5")
    return d


def nan_spectrum_datasets(n=7, seed=12):
    """Spectra whose unusable pixels (mask set, ivar 0, lambda <= 0) hold NaN /
    Inf: a masked gap, an ivar-0 stretch, unusable ends (SDSS-style lambda -1
    padding), an all-unusable spectrum, a flat one (std floor) and isolated
    cosmic rays."""
    d = mf.spectrum_datasets(n=n, seed=seed)
    flux, ivar, lam, bad = (d["spectrum_flux"].copy(), d["spectrum_ivar"].copy(), d["spectrum_lambda"].copy(),
                            d["spectrum_mask"].copy())
    L = flux.shape[1]
    # 0: camera gap, masked, NaN.
    bad[0, 2700:2760] = True
    flux[0, 2700:2760] = np.nan
    # 1: ivar 0 with Inf flux, mask not set.
    ivar[1, 4000:4030] = 0
    flux[1, 4000:4030] = np.inf
    # 2: unusable at both ends: first 50 masked (NaN), last 120 with lambda -1 (NaN).
    bad[2, :50] = True
    flux[2, :50] = np.nan
    lam[2, -120:] = -1
    flux[2, -120:] = np.nan
    # 3: nothing usable.
    bad[3, :] = True
    flux[3, :] = np.nan
    # 4: flat: the std floor decides.
    flux[4] = 1.0 + 1e-3 * np.sin(np.arange(L))
    # 5: isolated cosmic rays (single bad pixels), NaN / -Inf.
    for k in (11, 500, 501, 3333, L - 2):
        bad[5, k] = True
        flux[5, k] = np.nan if k % 2 else -np.inf
    # 6: negative ivar and lambda 0 in the middle.
    ivar[6, 1000:1010] = -5
    lam[6, 1010:1015] = 0
    flux[6, 1000:1015] = np.nan
    d["spectrum_flux"], d["spectrum_ivar"], d["spectrum_lambda"], d["spectrum_mask"] = flux, ivar, lam, bad
    return d


def write_nan_fixtures(root):
    """{label: (path, modality)} for the extra preprocessing fixtures."""
    out = {}
    ids = lambda n, p: mf.image_ids(n, p)  # noqa: E731
    files = [
        ("images: NaN/Inf in masked pixels, shared mask", 1113, nan_image_datasets(6, 11), "image"),
        ("images: per-band masks, bands stored z,g,i,r", 1113,
         nan_image_datasets(6, 13, per_band_mask=True, band_order="zgir"), "image"),
        ("images 147x147 (odd crop margin)", 1113, nan_image_datasets(5, 15, size=147), "image"),
        ("spectra: NaN/Inf in unusable pixels", 1113, nan_spectrum_datasets(7, 12), "spectrum"),
    ]
    for k, (label, cell, d, mod) in enumerate(files):
        if mod == "image":
            d["object_id"] = ids(len(d["ra"]), "NAN%d" % k)
            path = mf.mmu_path(root, ("legacysurvey", "nan_fixture_%d" % k), cell)
        else:
            path = mf.mmu_path(root, ("desi", "nan_fixture_%d" % k), cell)
        d["healpix"] = np.full(len(d["ra"]), cell, dtype=np.int64)
        mf.write_mmu_file(path, d)
        out[label] = (path, mod)
    return out
