#!/usr/bin/python3
"""Package a TorchScript model for `mmu-index build --model DIR`.

A model package is a folder with the TorchScript file and a model card:

    DIR/model.pt     TorchScript: forward(Tensor[B, *input_shape]) -> Tensor[B, output_dim]
    DIR/model.json   {"format": "mmu-model/1", "name", "version", "modality", "file",
                      "sha256", "input": {"shape"}, "preprocessing": {"name", "params"},
                      "output": {"dim", "l2_normalized"}, "license", "citation"}

The card pins the file by SHA-256 and names the preprocessing that mmu-index
runs before the model (see include/mmu/model_package.h):

    astroclip-image       input [3, crop, crop], channels (z, r, g);
                          params crop, Q, m, scale_g, scale_r, scale_z
    specformer-spectrum   input [tokens, section + 2] ([778, 22] for 7781-pixel
                          DESI spectra); params section, stride, std_floor
    aion-image            input [4, crop, crop], bands (g, r, i, z); params crop

Example:

    /usr/bin/python3 tools/package_model.py --model traced.pt --out models/my-image \\
        --name my-image --version 1 --modality image --preprocessing astroclip-image \\
        --input-shape 3,144,144 --output-dim 1024

By default the model is loaded with torch (if importable) and run on batches of
1 and 2 zero-ish objects, so a package whose model rejects the card's input
shape, returns another dimension, or squeezes the batch axis away is refused
here rather than at build time (--no-check skips this).

Needs only the Python standard library; torch for the check.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

FORMAT = "mmu-model/1"

# Parameters of each preprocessing and their published defaults (docs/MODELS.md §1.3,
# §1.4, §2.2). They are written into the card explicitly, so a card says
# exactly what the model was fed.
PREPROCESSING = {
    "astroclip-image": {
        "modality": "image",
        "params": {"crop": 144, "Q": 20.0, "m": 0.03, "scale_g": 6.0, "scale_r": 3.4, "scale_z": 2.2},
    },
    "specformer-spectrum": {
        "modality": "spectrum",
        "params": {"section": 20, "stride": 10, "std_floor": 0.2},
    },
    "aion-image": {
        "modality": "image",
        "params": {"crop": 96},
    },
}

DESI_LENGTH = 7781


def specformer_tokens(length, section, stride):
    """Tokens SpecFormer.preprocess gives for a spectrum of `length` pixels:
    windows start at arange(0, length - overlap, stride), the last window is
    always dropped, and one statistics token is prepended."""
    overlap = section - stride
    starts = len(range(0, max(0, length - overlap), stride))
    return max(0, starts - 1) + 1


def expected_input_shape(preprocessing, params):
    """The per-object input shape the named preprocessing produces."""
    if preprocessing == "astroclip-image":
        c = int(params["crop"])
        return [3, c, c]
    if preprocessing == "aion-image":
        c = int(params["crop"])
        return [4, c, c]
    if preprocessing == "specformer-spectrum":
        s, st = int(params["section"]), int(params["stride"])
        return [specformer_tokens(DESI_LENGTH, s, st), s + 2]
    raise ValueError("unknown preprocessing '%s' (known: %s)" % (preprocessing, ", ".join(sorted(PREPROCESSING))))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_shape(text):
    """'3,144,144', '3x144x144', '[3, 144, 144]' or '3 144 144' -> [3, 144, 144]."""
    t = text.strip()
    if t.startswith("["):
        vals = json.loads(t)
    else:
        for sep in ("x", "X", " "):
            t = t.replace(sep, ",")
        vals = [v for v in t.split(",") if v]
    shape = [int(v) for v in vals]
    if not shape or any(v <= 0 for v in shape):
        raise ValueError("input shape '%s' must be positive integers" % text)
    return shape


def make_card(name, version, modality, preprocessing, input_shape, output_dim, sha256, params=None,
              l2_normalized=False, license="", citation="", file="model.pt"):
    """The model card as a dict (validated like mmu-index validates it)."""
    for label, v in (("name", name), ("version", version)):
        if not v or any(c in v for c in "/\\@ \t\n"):
            raise ValueError("%s '%s' must be non-empty, without spaces, '/' or '@'" % (label, v))
    if preprocessing not in PREPROCESSING:
        raise ValueError("unknown preprocessing '%s' (known: %s)" % (preprocessing, ", ".join(sorted(PREPROCESSING))))
    spec = PREPROCESSING[preprocessing]
    if modality != spec["modality"]:
        raise ValueError("preprocessing '%s' takes %s data, not '%s'" % (preprocessing, spec["modality"], modality))
    full = dict(spec["params"])
    for k, v in (params or {}).items():
        if k not in full:
            raise ValueError("preprocessing '%s' has no parameter '%s' (it has: %s)" % (preprocessing, k, ", ".join(full)))
        full[k] = v
    want = expected_input_shape(preprocessing, full)
    if list(input_shape) != want:
        raise ValueError("input shape %s does not match what '%s' produces: %s" % (list(input_shape), preprocessing, want))
    if int(output_dim) <= 0:
        raise ValueError("output dim must be positive")
    return {
        "format": FORMAT,
        "name": name,
        "version": version,
        "modality": modality,
        "file": file,
        "sha256": sha256,
        "input": {"shape": [int(v) for v in input_shape]},
        "preprocessing": {"name": preprocessing, "params": full},
        "output": {"dim": int(output_dim), "l2_normalized": bool(l2_normalized)},
        "license": license,
        "citation": citation,
    }


def check_model(path, input_shape, output_dim):
    """Loads the TorchScript file and runs batches of 2 and 1. Returns a list of
    warnings; raises ValueError when the model cannot take the card's input or
    gives the wrong output dimension."""
    try:
        import torch
    except ImportError:
        return ["torch is not importable: the model was not checked (run with Debian's /usr/bin/python3)"]
    warnings = []
    try:
        m = torch.jit.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - report whatever torch says
        raise ValueError("'%s' is not a loadable TorchScript file: %s" % (path, str(e).splitlines()[0]))
    m.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for b in (2, 1):
            x = torch.rand((b,) + tuple(input_shape), generator=g)
            try:
                y = m(x)
            except Exception as e:  # noqa: BLE001
                raise ValueError("the model fails on an input of shape %s: %s" % ([b] + list(input_shape),
                                                                                   str(e).strip().splitlines()[-1]))
            if not isinstance(y, torch.Tensor):
                raise ValueError("the model returns %s, not a tensor" % type(y).__name__)
            shape = list(y.shape)
            if b == 1 and shape == [output_dim]:
                warnings.append("the model squeezes the batch axis away for one object (returns [%d]); "
                                "mmu-index accepts it, but wrap forward to return [B, dim]" % output_dim)
                continue
            if shape != [b, output_dim]:
                raise ValueError("the model returns shape %s for %d object(s); the card says [%d, %d]" %
                                 (shape, b, b, output_dim))
            if not bool(torch.isfinite(y).all()):
                raise ValueError("the model returns NaN or Inf on a plain input")
    return warnings


def package(model_file, out_dir, name, version, modality, preprocessing, input_shape, output_dim, params=None,
            l2_normalized=False, license="", citation="", check=True, move=False):
    """Writes out_dir/model.pt (a copy of model_file, or the file itself when
    move) and out_dir/model.json. Returns the card dict."""
    if not os.path.isfile(model_file):
        raise ValueError("model file '%s' does not exist" % model_file)
    # Validate the card fields before touching anything.
    make_card(name, version, modality, preprocessing, input_shape, output_dim, "0" * 64, params,
              l2_normalized, license, citation)
    if check:
        for w in check_model(model_file, input_shape, int(output_dim)):
            print("warning: %s" % w, file=sys.stderr)
    os.makedirs(out_dir, exist_ok=True)
    dst = os.path.join(out_dir, "model.pt")
    if os.path.abspath(model_file) != os.path.abspath(dst):
        tmp = dst + ".tmp"
        if move:
            shutil.move(model_file, tmp)
        else:
            shutil.copyfile(model_file, tmp)
        os.replace(tmp, dst)
    card = make_card(name, version, modality, preprocessing, input_shape, output_dim, sha256_file(dst), params,
                     l2_normalized, license, citation)
    write_card(out_dir, card)
    return card


def write_card(out_dir, card):
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".model.json.")
    with os.fdopen(fd, "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a card is as readable as its model
    os.replace(tmp, os.path.join(out_dir, "model.json"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="TorchScript file (torch.jit.trace/script + save)")
    ap.add_argument("--out", required=True, help="package folder to write (model.pt + model.json)")
    ap.add_argument("--name", required=True, help="model name (no spaces, '/' or '@'); the store space is NAME@VERSION")
    ap.add_argument("--version", required=True, help="model version (no spaces, '/' or '@')")
    ap.add_argument("--modality", required=True, choices=["image", "spectrum"])
    ap.add_argument("--preprocessing", required=True, choices=sorted(PREPROCESSING))
    ap.add_argument("--input-shape", required=True, help="per-object input shape without the batch axis, e.g. 3,144,144")
    ap.add_argument("--output-dim", required=True, type=int, help="embedding dimension the model returns")
    ap.add_argument("--params", default="{}", help='preprocessing parameters as JSON, e.g. \'{"crop": 144}\' '
                    "(missing ones take the published defaults)")
    ap.add_argument("--l2-normalized", action="store_true", help="the model already L2-normalises its output")
    ap.add_argument("--license", default="", help="license of the weights")
    ap.add_argument("--citation", default="", help="what to cite when using the model")
    ap.add_argument("--no-check", action="store_true", help="do not load and run the model before packaging")
    a = ap.parse_args(argv)
    try:
        card = package(a.model, a.out, a.name, a.version, a.modality, a.preprocessing, parse_shape(a.input_shape),
                       a.output_dim, json.loads(a.params), a.l2_normalized, a.license, a.citation,
                       check=not a.no_check)
    except (ValueError, json.JSONDecodeError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    print("%s: %s@%s, %s, input %s, dim %d, sha256 %s" % (a.out, card["name"], card["version"],
                                                         card["preprocessing"]["name"], card["input"]["shape"],
                                                         card["output"]["dim"], card["sha256"][:12]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
