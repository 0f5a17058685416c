"""End-to-end tests of the encoder stage (model packages, `mmu-index build
--model`, `mmu-index preprocess`, --resume, provenance) against independent
Python computations:

  w. the export wrappers (tools/export_astroclip.py) on the replicas: they
     equal the upstream head forwards, keep the batch axis at B = 1 (upstream
     does not), and the packaged TorchScript matches them at B = 1, 2, 7;
  a. `mmu-index preprocess` == tests/py/reference_transforms.py (float64 numpy
     from the published code) for astroclip-image, specformer-spectrum and
     aion-image, on every sample file and on fixtures with NaN/Inf in
     masked / unusable pixels: |cpp - ref| <= 1e-6 * max(1, |ref|) (the npy
     is float32; 1e-6 absolute where values are <= 1);
  b. embeddings: builds with the reduced image and spectrum replicas (and a
     tiny aion-image model) at --batch-size 1, 7, 64; every stored vector has
     cosine >= 0.9999 with torch.jit.load(model.pt) on the reference inputs;
  c. resume: builds SIGKILLed at several points, then --resume: the model
     spaces' vectors.f32 equal an uninterrupted build byte for byte; a plain
     re-run after a kill starts over and gives the same bytes;
  d. bad packages are refused, naming the package, with the store unchanged;
  e. provenance: --list-spaces shows name@version, model, version, sha256
     prefix, dim, count; another version adds a space and keeps the old one;
     --space NAME resolves one version and names the versions when there are two.

Run: /usr/bin/python3 tests/py/test_models.py --bin BUILD --samples data/samples --tmp DIR
(BUILD holds mmu-index and mmu-search). Prints `ok   ...` / `FAIL ...` per
check and ends with `N passed, M failed`. Needs Debian's python3 with numpy,
h5py and python3-torch.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import h5py  # noqa: E402
import torch  # noqa: E402

import export_astroclip  # noqa: E402
import make_replicas  # noqa: E402
import model_fixtures as mfx  # noqa: E402
import package_model  # noqa: E402
import reference_transforms as ref  # noqa: E402
from space_reading import generation  # noqa: E402

PASSED, FAILED = [0], []


def check(cond, what, detail=""):
    detail = " | ".join(l.strip() for l in str(detail).splitlines() if l.strip())
    if cond:
        PASSED[0] += 1
        print("ok   " + what + (" (%s)" % detail if detail else ""))
    else:
        FAILED.append(what)
        print("FAIL " + what + (": " + detail if detail else ""))
    sys.stdout.flush()
    return cond


# The baseline PCA's small LAPACK calls start OpenBLAS OpenMP regions; on a loaded
# 2-core machine that made a 0.6 s baseline build take 10-20 s. The baseline is
# not under test here, so OpenBLAS runs single-threaded (LibTorch is unaffected).
ENV = dict(os.environ)
ENV.setdefault("OPENBLAS_NUM_THREADS", "1")


def run(cmd, timeout=600):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)


def must(cmd, what):
    p = run(cmd)
    if p.returncode != 0:
        raise RuntimeError("%s: command failed (%d): %s\n%s" % (what, p.returncode, " ".join(cmd), p.stderr.strip()))
    return p


def space_bytes(store, space):
    with open(os.path.join(generation(store), "spaces", space, "vectors.f32"), "rb") as f:
        return f.read()


def load_space(store, space):
    """(vectors [count, dim], [(file path, index_in_file, object_id)] by vector row)."""
    gen = generation(store)
    db = sqlite3.connect(os.path.join(gen, "catalog.sqlite"))
    try:
        dim, count = db.execute("SELECT dim, count FROM spaces WHERE name=?", (space,)).fetchone()
        rows = db.execute(
            "SELECT f.path, o.index_in_file, o.object_id FROM space_rows s JOIN objects o ON o.row = s.row "
            "JOIN files f ON f.id = o.file_id WHERE s.space=? ORDER BY s.vrow", (space,)).fetchall()
    finally:
        db.close()
    vecs = np.fromfile(os.path.join(gen, "spaces", space, "vectors.f32"), dtype=np.float32).reshape(count, dim)
    return vecs, rows


def sample_files(samples, modality):
    sub = "legacysurvey" if modality == "image" else "desi"
    return sorted(glob.glob(os.path.join(samples, sub, "**", "*.hdf5"), recursive=True))


def card_of(pkg):
    with open(os.path.join(pkg, "model.json")) as f:
        return json.load(f)


def space_of(pkg):
    c = card_of(pkg)
    return c["name"] + "@" + c["version"]


class Ctx:
    pass


# ---------------------------------------------------------------- setup

def setup(a):
    c = Ctx()
    c.index, c.search = os.path.join(a.bin, "mmu-index"), os.path.join(a.bin, "mmu-search")
    c.samples, c.tmp = a.samples, a.tmp
    shutil.rmtree(a.tmp, ignore_errors=True)
    os.makedirs(a.tmp)
    models = os.path.join(a.tmp, "models")
    t0 = time.time()
    c.image_pkg, c.spectrum_pkg = os.path.join(models, "image"), os.path.join(models, "spectrum")
    make_replicas.make_replica(c.image_pkg, "image", "reduced", seed=0)
    make_replicas.make_replica(c.spectrum_pkg, "spectrum", "reduced", seed=0)
    c.aion_pkg = os.path.join(models, "aion")
    tmp = mfx.tiny_aion_model(os.path.join(models, "aion_tmp", "model.pt"))
    package_model.package(tmp, c.aion_pkg, "tiny-aion-test", "1", "image", "aion-image", [4, 96, 96], 16,
                          license="test model", citation="none")
    c.squeeze_pkg = os.path.join(models, "aion_squeeze")
    tmp = mfx.tiny_aion_squeeze_model(os.path.join(models, "aion_squeeze_tmp", "model.pt"))
    package_model.package(tmp, c.squeeze_pkg, "tiny-aion-squeeze", "1", "image", "aion-image", [4, 96, 96], 12,
                          license="test model", citation="none", check=False)
    print("# packages made in %.1f s: %s" % (time.time() - t0, ", ".join(
        space_of(p) for p in (c.image_pkg, c.spectrum_pkg, c.aion_pkg, c.squeeze_pkg))))
    c.models = {}
    return c


def model(c, pkg):
    if pkg not in c.models:
        m = torch.jit.load(os.path.join(pkg, "model.pt"), map_location="cpu")
        c.models[pkg] = m.eval()
    return c.models[pkg]


def python_embeddings(c, pkg, path):
    """L2-normalised embeddings of every object of one file: reference inputs -> torch."""
    x = ref.transform_file(path, card_of(pkg)).astype(np.float32)
    with torch.no_grad():
        y = model(c, pkg)(torch.from_numpy(x)).double().numpy()
    if y.ndim == 1 and x.shape[0] == 1:  # a model that squeezes the batch axis (mmu-index accepts it)
        y = y[None, :]
    return y / np.linalg.norm(y, axis=1, keepdims=True)


# ---------------------------------------------------------------- w: wrappers

def test_wrappers(c):
    torch.manual_seed(0)
    for tower in ("image", "spectrum"):
        head = make_replicas.build_head(tower, "reduced", seed=0)
        pkg = c.image_pkg if tower == "image" else c.spectrum_pkg
        if tower == "image":
            wrapped, shape = export_astroclip.wrap_image_head(head), export_astroclip.IMAGE_SHAPE
            x = torch.rand((3,) + shape)
            upstream_in = x
        else:
            wrapped, shape = export_astroclip.wrap_spectrum_head(head), export_astroclip.SPECTRUM_SHAPE
            raw = 5 + torch.randn(3, 7781, 1)
            upstream_in, x = raw, head.backbone.preprocess(raw.clone())
        dim = card_of(pkg)["output"]["dim"]
        with torch.no_grad():
            up = head(upstream_in)
            w3 = wrapped(x)
            check(up.shape == (3, dim) and torch.allclose(up, w3, rtol=1e-5, atol=1e-6),
                  "w %s: wrapper == upstream head forward at B=3" % tower,
                  "max diff %.2g" % float((up - w3).abs().max()))
            w1 = wrapped(x[:1])
            check(tuple(w1.shape) == (1, dim) and torch.allclose(w1[0], w3[0], rtol=1e-4, atol=1e-5),
                  "w %s: wrapper keeps the batch axis at B=1 and equals row 0 of B=3" % tower, str(list(w1.shape)))
            try:
                u1 = head(upstream_in[:1])
                upstream_b1 = "shape %s" % list(u1.shape)
                pitfall = u1.dim() == 1
            except IndexError as e:
                upstream_b1, pitfall = "IndexError: %s" % e, True
            check(pitfall, "w %s: the upstream forward loses or breaks B=1 (the pitfall the wrapper avoids)" % tower,
                  upstream_b1)
            ts = model(c, pkg)
            for b in (1, 2, 7):
                xb = torch.cat([x] * 3)[:b]
                got, want = ts(xb), wrapped(xb)
                check(tuple(got.shape) == (b, dim) and torch.allclose(got, want, rtol=1e-4, atol=1e-5),
                      "w %s: packaged TorchScript == wrapper at B=%d" % (tower, b), "shape %s" % list(got.shape))
    # The real-checkpoint export path (export_heads) on replica heads.
    out_i, out_s = os.path.join(c.tmp, "export", "image"), os.path.join(c.tmp, "export", "spectrum")
    cards = export_astroclip.export_heads(make_replicas.build_head("image", "reduced", 0),
                                          make_replicas.build_head("spectrum", "reduced", 0), out_i, out_s, "t1")
    for card, out, pre, shape in zip(cards, (out_i, out_s), ("astroclip-image", "specformer-spectrum"),
                                     ([3, 144, 144], [778, 22])):
        ok = (card["preprocessing"]["name"] == pre and card["input"]["shape"] == shape and
              "MNRAS 531, 4990" in card["citation"] and card["sha256"] ==
              package_model.sha256_file(os.path.join(out, "model.pt")) and card_of(out) == card)
        check(ok, "w export_heads writes a %s package with card, citation and sha256" % pre)
    # Without the astroclip package, the export says what to install.
    dummy = os.path.join(c.tmp, "dummy.ckpt")
    with open(dummy, "wb") as f:
        f.write(b"not a checkpoint")
    p = run([sys.executable, os.path.join(ROOT, "tools", "export_astroclip.py"), "--checkpoint", dummy,
             "--out-image", os.path.join(c.tmp, "export_dummy")])
    check(p.returncode != 0 and "astroclip" in p.stderr and "README" in p.stderr and
          not os.path.exists(os.path.join(c.tmp, "export_dummy")),
          "w export_astroclip.py without the astroclip package says what to install, writes nothing",
          p.stderr.strip()[-200:])
    # The traced graphs use no fused attention op (LibTorch 1.13 has none).
    for pkg in (c.image_pkg, c.spectrum_pkg):
        g = str(model(c, pkg).inlined_graph)
        check(export_astroclip.FUSED_ATTENTION_OP not in g and "aten::softmax" in g,
              "w %s: explicit attention (softmax), no %s" % (space_of(pkg), export_astroclip.FUSED_ATTENTION_OP))
    # Same seed, same bytes (replicas are reproducible). Separate processes:
    # TorchScript mangles class names traced twice in one process.
    shas = []
    for k in (1, 2):
        d = os.path.join(c.tmp, "models", "image_again%d" % k)
        p = run([sys.executable, os.path.join(ROOT, "tools", "make_replicas.py"), "--out", d, "--tower", "image",
                 "--width", "reduced", "--seed", "0"])
        shas.append(card_of(d)["sha256"] if p.returncode == 0 else p.stderr.strip()[-200:])
    check(shas[0] == shas[1], "w replicas are byte-reproducible per seed (two runs of make_replicas.py)", str(shas))


# ---------------------------------------------------------------- a: preprocessing

def compare_inputs(cpp, want, label, extra=""):
    if cpp.shape != want.shape:
        return check(False, label, "shape %s, reference %s" % (cpp.shape, want.shape))
    if not np.all(np.isfinite(cpp)):
        return check(False, label, "non-finite values in the mmu-index output")
    err = np.abs(cpp.astype(np.float64) - want) / np.maximum(1.0, np.abs(want))
    worst = np.unravel_index(np.argmax(err), err.shape)
    detail = "max scaled diff %.2g at %s (cpp %.9g, ref %.9g)%s" % (err[worst], list(worst), cpp[worst], want[worst],
                                                                     extra)
    return check(float(err.max()) <= 1e-6, label, detail)


def preprocess(c, path, pkg, out, limit=10000):
    p = run([c.index, "preprocess", path, "--model", pkg, "--out", out, "--limit", str(limit)])
    if p.returncode != 0:
        return None, p.stderr.strip()
    return np.load(out), ""


def mask_stats(path, modality):
    with h5py.File(path, "r") as f:
        if modality == "image":
            img, m = f["image_array"][:], f["image_mask"][:]
            masked = int(np.sum(~m.reshape(m.shape[0], -1).all(axis=1)))
            nan = int(np.sum(~np.isfinite(img.reshape(img.shape[0], -1)).all(axis=1)))
        else:
            m = f["spectrum_mask"][:]
            masked = int(np.sum(m.any(axis=1)))
            nan = int(np.sum(~np.isfinite(f["spectrum_flux"][:]).all(axis=1)))
    return masked, nan


def crop_diagnosis(cpp, path, card):
    """Which centre-crop offset the C++ output matches (torchvision rounds half to even)."""
    pixels, good, names = ref.read_images(path)
    h, w = pixels.shape[-2:]
    crop = int(card["preprocessing"]["params"].get("crop", 144))
    full = ref.astroclip_image(pixels, good, names, crop=min(h, w))  # uncropped when square
    if h != w:
        return ""
    for top in range(0, h - crop + 1):
        if np.allclose(full[:, :, top:top + crop, top:top + crop], cpp, atol=1e-5):
            return "; mmu-index crops at offset %d, torchvision CenterCrop(%d) on %dx%d at %d (int(round(%g)))" % (
                top, crop, h, w, ref.torchvision_center_offsets(h, w, crop)[0], (h - crop) / 2.0)
    return ""


def test_preprocess(c):
    out = os.path.join(c.tmp, "pre")
    os.makedirs(out, exist_ok=True)
    jobs = []
    for path in sample_files(c.samples, "image"):
        jobs += [(path, c.image_pkg, "image"), (path, c.aion_pkg, "image")]
    for path in sample_files(c.samples, "spectrum"):
        jobs.append((path, c.spectrum_pkg, "spectrum"))
    totals = {}
    for k, (path, pkg, mod) in enumerate(jobs):
        pre = card_of(pkg)["preprocessing"]["name"]
        rel = os.path.relpath(path, c.samples)
        cpp, err = preprocess(c, path, pkg, os.path.join(out, "%d.npy" % k))
        masked, nan = mask_stats(path, mod)
        t = totals.setdefault(pre, [0, 0, 0])
        if cpp is None:
            check(False, "a %s %s" % (pre, rel), err)
            continue
        t[0] += cpp.shape[0]
        t[1] += masked
        t[2] += nan
        compare_inputs(cpp, ref.transform_file(path, card_of(pkg)), "a %s == reference on %s" % (pre, rel),
                       ", %d objects, %d with masked pixels, %d with NaN" % (cpp.shape[0], masked, nan))
    for pre, (n, masked, nan) in sorted(totals.items()):
        check(masked > 0 and (nan > 0 or pre == "specformer-spectrum"),
              "a %s: the samples exercise masks (%d objects, %d with masked pixels, %d with NaN)" %
              (pre, n, masked, nan))
    # --limit: the first N objects in file row order.
    path = sample_files(c.samples, "image")[-1]
    cpp, err = preprocess(c, path, c.image_pkg, os.path.join(out, "limit.npy"), limit=2)
    if cpp is None:
        check(False, "a preprocess --limit 2", err)
    else:
        compare_inputs(cpp, ref.transform_file(path, card_of(c.image_pkg), 0, 2),
                       "a preprocess --limit 2 gives rows 0-1 of the file")
    # Extra fixtures: NaN / Inf in masked and unusable pixels, band order, per-band masks, odd size.
    fx = mfx.write_nan_fixtures(os.path.join(c.tmp, "nan_fixtures"))
    for k, (label, (path, mod)) in enumerate(sorted(fx.items())):
        pkgs = [c.image_pkg, c.aion_pkg] if mod == "image" else [c.spectrum_pkg]
        for pkg in pkgs:
            pre = card_of(pkg)["preprocessing"]["name"]
            cpp, err = preprocess(c, path, pkg, os.path.join(out, "fx%d_%s.npy" % (k, pre)))
            if cpp is None:
                check(False, "a %s on fixture '%s'" % (pre, label), err)
                continue
            want = ref.transform_file(path, card_of(pkg))
            extra = ""
            if pre == "astroclip-image" and cpp.shape == want.shape and not np.allclose(cpp, want, atol=1e-5):
                extra = crop_diagnosis(cpp, path, card_of(pkg))
            compare_inputs(cpp, want, "a %s == reference on fixture '%s'" % (pre, label), extra)
    # The numpy reference agrees with the published torch code (SpecFormer.preprocess
    # as in tools/make_replicas.py) on the sample spectra, after our mask filling.
    spec = make_replicas.SpecFormer(16, 1, 2, 4)
    worst = 0.0
    for path in sample_files(c.samples, "spectrum"):
        flux, ok = ref.read_spectra(path)
        filled = ref.fill_unusable(flux, ok)
        want = ref.specformer_spectrum(filled)
        with torch.no_grad():
            got = spec.preprocess(torch.from_numpy(filled)[:, :, None].clone()).numpy()
        worst = max(worst, float(np.max(np.abs(got - want) / np.maximum(1, np.abs(want)))))
    check(worst < 1e-9, "a reference specformer == published SpecFormer.preprocess (torch, float64)", "max %.2g" % worst)


# ---------------------------------------------------------------- b: embeddings

def test_embeddings(c):
    # The squeezing model returns [dim] for a batch of one: every one-object file
    # and --batch-size 1 give it such batches.
    pkgs = [c.image_pkg, c.spectrum_pkg, c.aion_pkg, c.squeeze_pkg]
    py = {}
    for pkg in pkgs:
        mod = card_of(pkg)["modality"]
        for path in sample_files(c.samples, mod):
            py[(pkg, os.path.abspath(path))] = python_embeddings(c, pkg, path)
    # The check can fail: embeddings of different objects differ.
    for pkg in pkgs:
        allv = np.concatenate([v for (p, _), v in py.items() if p == pkg])
        cos = allv @ allv.T
        off = cos[~np.eye(len(allv), dtype=bool)]
        check(np.median(off) < 0.999, "b %s: Python embeddings of different objects differ" % space_of(pkg),
              "median pairwise cosine %.4f, min %.4f" % (np.median(off), off.min()))
    # 0 = the default, automatic batch size (mixed sizes while it measures).
    for bs in (1, 7, 64, 0):
        store = os.path.join(c.tmp, "emb_bs%d" % bs)
        cmd = [c.index, "build", c.samples, "--store", store, "--batch-size", str(bs), "--quiet"]
        for pkg in pkgs:
            cmd += ["--model", pkg]
        t0 = time.time()
        p = run(cmd)
        if not check(p.returncode == 0, "b build --batch-size %d with %d models" % (bs, len(pkgs)),
                     "%.1f s" % (time.time() - t0) if p.returncode == 0 else p.stderr.strip()):
            continue
        for pkg in pkgs:
            space = space_of(pkg)
            try:
                vecs, rows = load_space(store, space)
            except Exception as e:  # noqa: BLE001
                check(False, "b bs=%d %s: space readable" % (bs, space), str(e))
                continue
            mod = card_of(pkg)["modality"]
            n_files = sum(h5py.File(f, "r")["object_id"].shape[0] for f in sample_files(c.samples, mod))
            cosines, bad = [], []
            for v, (path, idx, oid) in zip(vecs, rows):
                want = py.get((pkg, os.path.abspath(path)))
                if want is None:
                    bad.append("%s: file %s not expected" % (oid, path))
                    continue
                cs = float(np.dot(v.astype(np.float64), want[idx]) / np.linalg.norm(v))
                cosines.append(cs)
                if cs < 0.9999:
                    bad.append("%s (row %d of %s): cos %.6f" % (oid, idx, os.path.relpath(path, c.samples), cs))
            norms = np.linalg.norm(vecs, axis=1)
            check(len(rows) == n_files and not bad,
                  "b bs=%d %s: every stored vector has cos >= 0.9999 with Python" % (bs, space),
                  "%d vectors (files hold %d), min cos %.7f%s" % (len(rows), n_files, min(cosines or [0]),
                                                                  "; " + "; ".join(bad[:5]) if bad else ""))
            check(np.all(np.abs(norms - 1) < 1e-5), "b bs=%d %s: stored vectors are L2-normalised" % (bs, space))
            # Negative control: the same comparison against the wrong object fails.
            shifted = [float(np.dot(vecs[i], py[(pkg, os.path.abspath(rows[(i + 1) % len(rows)][0]))]
                                    [rows[(i + 1) % len(rows)][1]])) for i in range(len(rows))]
            if bs == 64:
                check(np.mean(np.array(shifted) < 0.9999) > 0.9,
                      "b %s: a one-row shift of the mapping would fail the check" % space,
                      "%.0f%% of shifted pairs below 0.9999" % (100 * np.mean(np.array(shifted) < 0.9999)))


# ---------------------------------------------------------------- c: resume

def checkpoints(store):
    return sorted(glob.glob(os.path.join(store, "resume", "*", "*.f32")))


def killed_build(cmd, store, after_s=None, after_ckpt=None, limit_s=120):
    """Starts cmd, SIGKILLs it once after_s passed or after_ckpt checkpoint files
    exist. Returns (killed while running, checkpoints at the kill)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    t0 = time.time()
    try:
        while p.poll() is None and time.time() - t0 < limit_s:
            if after_s is not None and time.time() - t0 >= after_s:
                break
            if after_ckpt is not None and len(checkpoints(store)) >= after_ckpt:
                break
            time.sleep(0.003)
        alive = p.poll() is None
        n = len(checkpoints(store))
        if alive:
            os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait()
    return alive, n


def test_resume(c):
    pkgs = [c.image_pkg, c.spectrum_pkg]
    spaces = [space_of(p) for p in pkgs]
    # Every other sample file of each modality: 13 partitions, about half the objects.
    data = os.path.join(c.tmp, "resume_data")
    files = sample_files(c.samples, "image")[::2] + sample_files(c.samples, "spectrum")[::2]
    for f in files:
        dst = os.path.join(data, os.path.relpath(f, c.samples))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(f, dst)
    n_parts = len(files)

    def cmd(store, *extra):
        out = [c.index, "build", data, "--store", store, "--batch-size", "2", "--threads", "1"]
        for pkg in pkgs:
            out += ["--model", pkg]
        return out + list(extra)

    ref_store = os.path.join(c.tmp, "resume_ref")
    t0 = time.time()
    must(cmd(ref_store, "--quiet"), "uninterrupted build")
    full_s = time.time() - t0
    want = {s: space_bytes(ref_store, s) for s in spaces}
    print("# uninterrupted build (2 models, batch 2, 1 thread): %.1f s, %d partitions" % (full_s, n_parts))
    # Determinism first: without it, byte equality after a resume means nothing.
    again = os.path.join(c.tmp, "resume_ref2")
    must(cmd(again, "--quiet"), "second uninterrupted build")
    check(all(space_bytes(again, s) == want[s] for s in spaces), "c two uninterrupted builds give identical bytes")

    def finish(store, label, resume=True, expect_resumed=None):
        p = run(cmd(store, *(["--resume"] if resume else [])))
        if not check(p.returncode == 0, "c %s: %s completes" % (label, "--resume" if resume else "plain re-run"),
                     p.stderr.strip()[-300:] if p.returncode else ""):
            return
        same = all(space_bytes(store, s) == want[s] for s in spaces)
        check(same, "c %s: model vectors.f32 equal the uninterrupted build byte for byte" % label)
        resumed = [l for l in p.stdout.splitlines() if "resumed:" in l]
        if expect_resumed is not None:
            check(bool(resumed) == expect_resumed, "c %s: %s" % (label, "reuses checkpoints" if expect_resumed
                                                               else "starts over (no checkpoint reused)"),
                  resumed[0].strip() if resumed else "no 'resumed:' line")
        check(not checkpoints(store), "c %s: checkpoints removed after the build" % label)

    half = n_parts // 2
    plans = [("kill at 0.3 s", dict(after_s=0.3)),
             ("kill after 1 checkpoint", dict(after_ckpt=1)),
             ("kill after %d checkpoints" % half, dict(after_ckpt=half)),
             ("kill after %d checkpoints" % (n_parts - 2), dict(after_ckpt=n_parts - 2))]
    for k, (label, when) in enumerate(plans):
        store = os.path.join(c.tmp, "resume_%d" % k)
        alive, n = killed_build(cmd(store), store, **when)
        check(alive, "c %s: the build was still running when killed" % label, "%d checkpoints at the kill" % n)
        finish(store, label, expect_resumed=n > 0 if alive else None)
    # Killed twice (the resumed build killed too), then resumed.
    store = os.path.join(c.tmp, "resume_twice")
    a1, n1 = killed_build(cmd(store), store, after_ckpt=2)
    a2, n2 = killed_build(cmd(store, "--resume"), store, after_ckpt=half + 2)
    check(a1 and a2 and n2 >= n1, "c killed twice (after 2, then after %d checkpoints with --resume)" % (half + 2),
          "checkpoints %d then %d" % (n1, n2))
    finish(store, "killed twice", expect_resumed=True)
    # Plain re-run (no --resume) after a kill: starts over.
    store = os.path.join(c.tmp, "resume_plain")
    alive, n = killed_build(cmd(store), store, after_ckpt=half)
    check(alive and n >= half, "c plain re-run case: killed after %d checkpoints" % n)
    finish(store, "plain re-run after a kill", resume=False, expect_resumed=False)
    # A kill while rebuilding an existing store leaves the old generation readable.
    store = os.path.join(c.tmp, "resume_existing")
    must([c.index, "build", data, "--store", store, "--quiet"], "baseline build")
    before = open(os.path.join(store, "CURRENT")).read()
    alive, n = killed_build(cmd(store), store, after_ckpt=3)
    p = run([c.search, "--store", store, "--list-spaces"])
    check(alive and open(os.path.join(store, "CURRENT")).read() == before and p.returncode == 0 and
          "image" in p.stdout, "c kill during a rebuild leaves the old CURRENT and a readable store",
          p.stderr.strip())
    finish(store, "rebuild of an existing store", expect_resumed=True)


# ---------------------------------------------------------------- d: bad packages

def snap_diff(before, after):
    """What changed in a store tree snapshot, for failure messages."""
    keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return "store changed: %s" % ", ".join(("+" if k not in before else "-" if k not in after else "~") + k
                                          for k in keys[:6]) if keys else "store unchanged"


def test_bad_packages(c):
    store = os.path.join(c.tmp, "bad_store")
    must([c.index, "build", c.samples, "--store", store, "--quiet", "--model", c.aion_pkg], "store for bad packages")
    snap = mfx.mf.tree_snapshot(store)
    cases = mfx.bad_packages(os.path.join(c.tmp, "bad"), c.image_pkg, c.spectrum_pkg)
    long_messages = []
    for label, (pkg, words) in cases.items():
        p = run([c.index, "build", c.samples, "--store", store, "--quiet", "--model", pkg])
        msg = p.stderr.strip()
        named = pkg in msg or os.path.basename(pkg) in msg
        missing = [w for w in words if w.lower() not in msg.lower()]
        after = mfx.mf.tree_snapshot(store)
        check(p.returncode == 1 and named and not missing and after == snap,
              "d refused: %s" % label,
              "exit %d, names package: %s, words %s%s, %s; stderr: %s" %
              (p.returncode, named, words, " MISSING %s" % missing if missing else "", snap_diff(snap, after),
               msg[:300]))
        if msg.count("\n") > 1:
            long_messages.append("%s (%d lines)" % (label, msg.count("\n") + 1))
    check(not long_messages, "d refusals are short messages (no LibTorch backtrace)", "; ".join(long_messages))
    # The same package twice.
    p = run([c.index, "build", c.samples, "--store", store, "--quiet", "--model", c.image_pkg, "--model", c.image_pkg])
    check(p.returncode == 1 and space_of(c.image_pkg) in p.stderr and mfx.mf.tree_snapshot(store) == snap,
          "d refused: the same model twice", p.stderr.strip()[:300])
    # Spectra of another length than the card's token count (SDSS-like 5000 pixels).
    odd = os.path.join(c.tmp, "spectra_5000")
    d5 = mfx.mf.spectrum_datasets(n=4, seed=9, length=5000)
    mfx.mf.write_mmu_file(mfx.mf.mmu_path(odd, ("desi", "len5000")), d5)
    store3 = os.path.join(c.tmp, "bad_store3")
    must([c.index, "build", odd, "--store", store3, "--quiet"], "5000-pixel store")
    snap3 = mfx.mf.tree_snapshot(store3)
    p = run([c.index, "build", odd, "--store", store3, "--quiet", "--model", c.spectrum_pkg])
    after = mfx.mf.tree_snapshot(store3)
    check(p.returncode == 1 and "778" in p.stderr and after == snap3,
          "d refused: 5000-pixel spectra under a [778, 22] card, store unchanged",
          "exit %d, %s; stderr: %s" % (p.returncode, snap_diff(snap3, after), p.stderr.strip()[:300]))
    path5 = glob.glob(os.path.join(odd, "**", "*.hdf5"), recursive=True)[0]
    p = run([c.index, "preprocess", path5, "--model", c.spectrum_pkg, "--out", os.path.join(c.tmp, "x5.npy")])
    check(p.returncode == 1 and "778" in p.stderr, "d preprocess refuses 5000-pixel spectra for a [778, 22] card",
          p.stderr.strip()[:300])
    p = run([c.index, "preprocess", sample_files(c.samples, "image")[0], "--model", c.spectrum_pkg, "--out",
             os.path.join(c.tmp, "x6.npy")])
    check(p.returncode == 1 and "spectrum" in p.stderr, "d preprocess refuses an image file for a spectrum model",
          p.stderr.strip()[:300])
    # A model of the wrong modality for every file is refused too: spectra-only data with an image model.
    spec_root = os.path.join(c.tmp, "spectra_only")
    if not os.path.exists(spec_root):
        shutil.copytree(os.path.join(c.samples, "desi"), os.path.join(spec_root, "desi"))
    store2 = os.path.join(c.tmp, "bad_store2")
    must([c.index, "build", spec_root, "--store", store2, "--quiet"], "spectra-only store")
    snap2 = mfx.mf.tree_snapshot(store2)
    p = run([c.index, "build", spec_root, "--store", store2, "--quiet", "--model", c.image_pkg])
    after = mfx.mf.tree_snapshot(store2)
    check(p.returncode == 1 and after == snap2 and "image" in p.stderr,
          "d refused: an image model over spectra only, store unchanged",
          "exit %d, %s; stderr: %s" % (p.returncode, snap_diff(snap2, after), p.stderr.strip()[:300]))


# ---------------------------------------------------------------- e: provenance

def list_spaces(c, store):
    p = must([c.search, "--store", store, "--list-spaces"], "--list-spaces")
    lines = p.stdout.strip().splitlines()
    rows = {}
    for line in lines[1:]:
        f = line.split()
        rows[f[0]] = f
    return lines[0].split(), rows


def test_provenance(c):
    store = os.path.join(c.tmp, "prov")
    must([c.index, "build", c.samples, "--store", store, "--quiet", "--model", c.image_pkg], "build v1")
    header, rows = list_spaces(c, store)
    card = card_of(c.image_pkg)
    sp = space_of(c.image_pkg)
    n_img = sum(h5py.File(f, "r")["object_id"].shape[0] for f in sample_files(c.samples, "image"))
    r = rows.get(sp)
    want = [sp, "image", card["name"], card["version"], str(card["output"]["dim"]), str(n_img), card["sha256"][:12]]
    check(r is not None and r[:7] == want and header[:7] == ["space", "modality", "model", "version", "dim", "count",
                                                               "sha256"],
          "e --list-spaces: name@version, model, version, dim, count, sha256 prefix", "got %s, want %s" % (r, want))
    v1 = space_bytes(store, sp)
    with h5py.File(sample_files(c.samples, "image")[0], "r") as f:
        oid = f["object_id"][0].decode().rstrip("\0")
    like = lambda space: run([c.search, "--store", store, "--like", oid, "--space", space, "--k", "3",  # noqa: E731
                              "--format", "json"])
    p = like(card["name"])
    ok = p.returncode == 0 and json.loads(p.stdout).get("results")
    check(bool(ok), "e --space %s (name without version) works with one version" % card["name"], p.stderr.strip())
    # Another version of the same model (other weights).
    v2_pkg = os.path.join(c.tmp, "models", "image_v2")
    card2 = make_replicas.make_replica(v2_pkg, "image", "reduced", seed=1, version="reduced-seed1")
    must([c.index, "build", c.samples, "--store", store, "--quiet", "--model", v2_pkg], "build v2")
    header, rows = list_spaces(c, store)
    sp2 = space_of(v2_pkg)
    check(sp in rows and sp2 in rows and rows[sp2][6] == card2["sha256"][:12] and rows[sp][6] == card["sha256"][:12],
          "e another version adds a space and keeps the old one", "spaces %s" % sorted(rows))
    check(sp in rows and space_bytes(store, sp) == v1, "e the kept space's vectors are unchanged")
    p = like(card["name"])
    check(p.returncode != 0 and sp in p.stderr and sp2 in p.stderr,
          "e --space %s with two versions errors naming both" % card["name"], p.stderr.strip()[:300])
    for s in (sp, sp2):
        p = like(s)
        check(p.returncode == 0 and bool(json.loads(p.stdout).get("results")), "e --space %s works" % s,
              p.stderr.strip())
    # The store records the card of each model space.
    db = sqlite3.connect(os.path.join(generation(store), "catalog.sqlite"))
    got = dict(db.execute("SELECT name, model || ' ' || version || ' ' || dim FROM spaces").fetchall())
    db.close()
    check(got.get(sp2) == "%s %s %d" % (card2["name"], card2["version"], card2["output"]["dim"]),
          "e catalog spaces row carries model, version, dim", str(got.get(sp2)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="folder with mmu-index and mmu-search")
    ap.add_argument("--samples", required=True, help="the sample set (data/samples)")
    ap.add_argument("--tmp", required=True, help="scratch folder (emptied first)")
    ap.add_argument("--only", default="wabcde", help="sections to run, e.g. 'ad' (default all: wabcde)")
    a = ap.parse_args()
    torch.set_num_threads(1)  # the Python side is small; threads only contend with mmu-index
    t_start = time.time()
    c = setup(a)
    sections = [("w", test_wrappers), ("a", test_preprocess), ("b", test_embeddings), ("c", test_resume),
                ("d", test_bad_packages), ("e", test_provenance)]
    for key, fn in sections:
        if key not in a.only:
            continue
        t0 = time.time()
        try:
            fn(c)
        except Exception as e:  # noqa: BLE001 - a crashed section is a failure, the others still run
            traceback.print_exc()
            check(False, "section %s (%s) crashed" % (key, fn.__name__), str(e).splitlines()[0] if str(e) else "")
        print("# section %s: %.1f s" % (key, time.time() - t0))
    print("# total %.1f s" % (time.time() - t_start))
    print("%d passed, %d failed" % (PASSED[0], len(FAILED)))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
