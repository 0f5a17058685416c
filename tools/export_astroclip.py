#!/usr/bin/python3
"""Export the two AstroCLIP towers (Parker et al. 2024) from the published
Lightning checkpoint to mmu-search model packages (TorchScript + model card).

    python tools/export_astroclip.py --checkpoint astroclip.ckpt \\
        --out-image models/astroclip-image --out-spectrum models/astroclip-spectrum

    mmu-index build DATA --store S --model models/astroclip-image --model models/astroclip-spectrum

REQUIREMENTS (not installed by mmu-search, and not Debian's python3):
  * the `astroclip` package (https://github.com/PolymathicAI/AstroCLIP) with
    its pinned dependencies: torch 2.0, lightning 2.3.3 and DINOv2 at commit
    2302b6bf installed with --no-deps, exactly as its README says. The
    checkpoint is a pickle of the encoder modules themselves, so these classes
    must be importable to read it at all;
  * the checkpoint: https://huggingface.co/polymathic-ai/astroclip/resolve/main/astroclip.ckpt
  * no xFormers in that environment (pip uninstall xformers; newer DINOv2
    versions also honour XFORMERS_DISABLED=1, which this script sets): DINOv2
    must use its plain attention so the model traces and runs on the CPU.
Run it in that environment's python; copy the two package folders anywhere.

What is exported (docs/MODELS.md §1.2, §1.4): the tower forwards exactly as
AstroCLIP's ImageHead / SpectrumHead compute them, with two changes that do not
change the numbers:
  * the batch axis is kept: upstream ends with `.squeeze()`, which turns a
    batch of one into a vector; here the result is `[:, 0, :]`, always [B, 1024];
  * the attention weights are not returned (upstream's `attentions[1]` indexes
    batch element 1 and fails for a batch of one).
The image tower takes [B, 3, 144, 144] (ToRGB channels z, r, g, centre crop
144); the spectrum tower takes SpecFormer.preprocess output [B, 778, 22]:
mmu-index computes both inputs in C++ (preprocessing "astroclip-image" and
"specformer-spectrum"). Outputs are not L2-normalised (upstream normalises
only inside the CLIP loss); mmu-index normalises them.

Before writing, each traced tower is checked against the eager upstream
forward (batch of 3) and against itself at batch sizes 1, 2, 3 and 5, and the
graph must not use aten::scaled_dot_product_attention (torch >= 2.0 only; the
LibTorch that Debian's mmu-index links is 1.13): the wrappers call
nn.MultiheadAttention with need_weights=True and SpecFormer's attention with
uses_flash = False, the explicit (same) formula. `mmu-index build --model`
probes each package when it starts, so a file its LibTorch cannot run is
refused there, by name, before any work.

The wrapper classes below (ImageTower, SpectrumTower) need only torch; they
are also what tools/make_replicas.py uses, so tests/py/test_models.py tests
them on architecture-faithful replicas.
"""
import argparse
import os
import shutil
import sys
import tempfile
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import package_model  # noqa: E402

CITATION = ("Parker L., Lanusse F., Golkar S., et al. 2024, AstroCLIP: a cross-modal foundation model for "
            "galaxies, MNRAS 531, 4990 (arXiv:2310.03024)")
LICENSE = ("AstroCLIP code: MIT (github.com/PolymathicAI/AstroCLIP); image backbone built on DINOv2 (Apache-2.0); "
           "see huggingface.co/polymathic-ai/astroclip for the weights' terms")

IMAGE_SHAPE = (3, 144, 144)
SPECTRUM_SHAPE = (778, 22)


# ATTENTION: mmu-index runs the TorchScript file with the LibTorch it was built
# against (Debian: 1.13), which has no aten::scaled_dot_product_attention
# (torch >= 2.0). Under torch 2.x, nn.MultiheadAttention(need_weights=False)
# and SpecFormer's SelfAttention (uses_flash) would put that op into the traced
# graph; need_weights=True (the weights are discarded) and uses_flash = False
# keep to the explicit softmax(q k^T / sqrt(d)) v, which is the same function.
FUSED_ATTENTION_OP = "scaled_dot_product_attention"


def disable_fused_attention(module):
    """Sets uses_flash = False on every submodule that has it (SpecFormer's
    SelfAttention), so the explicit attention path is traced."""
    n = 0
    for m in module.modules():
        if hasattr(m, "uses_flash"):
            m.uses_flash = False
            n += 1
    return n


def _query(cross_attention):
    # Upstream CrossAttentionHead.query is a (1, 1, E) parameter.
    return cross_attention.query


class ImageTower(nn.Module):
    """AstroCLIP image embedding, as ImageHead.forward computes it:
    backbone.patch_embed -> every backbone block -> backbone.norm (DINOv2's
    prepare_tokens is skipped upstream: no CLS token, no position embedding),
    then the cross-attention head (one learned query, nn.MultiheadAttention,
    dropout (off in eval), LayerNorm), then the MLP with NO residual.
    forward(x[B, 3, H, W]) -> [B, E] for every B, including 1."""

    def __init__(self, backbone, cross_attention, mlp):
        super().__init__()
        self.patch_embed = backbone.patch_embed
        self.blocks = backbone.blocks  # DINOv2 BlockChunks run their blocks in order when called
        self.norm = backbone.norm
        self.query = _query(cross_attention)
        self.attention = cross_attention.multihead_attn
        self.layernorm = cross_attention.layernorm
        self.mlp = mlp

    def forward(self, x):
        b = x.shape[0]
        t = self.patch_embed(x)
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t)
        q = self.query.reshape(1, 1, -1).expand(b, -1, -1)  # upstream: query.repeat(B, 1, 1)
        a = self.attention(q, t, t, need_weights=True)[0]  # see ATTENTION below
        h = self.layernorm(a)
        h = self.mlp(h)  # image side: no residual
        return h[:, 0, :]  # upstream: .squeeze(), which drops the batch axis for B == 1


class SpectrumTower(nn.Module):
    """AstroCLIP spectrum embedding, as SpectrumHead.forward computes it, from
    SpecFormer.preprocess output: SpecFormer.forward_without_preprocessing
    ["embedding"] (data embedding + learned positions, pre-LN blocks, final
    LayerNorm), then the cross-attention head, then x + MLP(x).
    forward(x[B, T, 22]) -> [B, E] for every B, including 1."""

    def __init__(self, backbone, cross_attention, mlp):
        super().__init__()
        self.backbone = backbone
        self.query = _query(cross_attention)
        self.attention = cross_attention.multihead_attn
        self.layernorm = cross_attention.layernorm
        self.mlp = mlp

    def forward(self, x):
        b = x.shape[0]
        e = self.backbone.forward_without_preprocessing(x)["embedding"]
        q = self.query.reshape(1, 1, -1).expand(b, -1, -1)
        a = self.attention(q, e, e, need_weights=True)[0]
        h = self.layernorm(a)
        h = h + self.mlp(h)  # spectrum side: residual
        return h[:, 0, :]


def wrap_image_head(head):
    """ImageTower of an AstroCLIP ImageHead (or a replica with its attributes)."""
    return ImageTower(head.backbone, head.cross_attention, head.mlp).eval()


def wrap_spectrum_head(head):
    """SpectrumTower of an AstroCLIP SpectrumHead (or a replica)."""
    return SpectrumTower(head.backbone, head.cross_attention, head.mlp).eval()


def example_input(shape, batch, seed, kind):
    g = torch.Generator().manual_seed(seed)
    if kind == "image":  # ToRGB output lies in [0, 1]
        return torch.rand((batch,) + tuple(shape), generator=g)
    return torch.randn((batch,) + tuple(shape), generator=g)


def trace_tower(tower, shape, kind, batches=(1, 2, 3, 5), rtol=1e-4, atol=1e-5):
    """torch.jit.trace with a batch of 2, then checks the traced module against
    the eager one at each batch size (a traced constant batch size or a
    squeeze would show here). Returns the traced module."""
    tower.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # Python-side shape checks and constant head sizes are expected to be frozen.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(tower, example_input(shape, 2, 1, kind), check_trace=False)
        for b in batches:
            x = example_input(shape, b, 100 + b, kind)
            want, got = tower(x), traced(x)
            if got.dim() != 2 or got.shape[0] != b or got.shape != want.shape:
                raise RuntimeError("traced %s tower returns %s for a batch of %d (eager: %s)" %
                                   (kind, list(got.shape), b, list(want.shape)))
            if not torch.allclose(got, want, rtol=rtol, atol=atol):
                raise RuntimeError("traced %s tower differs from the eager one at batch %d (max %.3g)" %
                                   (kind, b, float((got - want).abs().max())))
    if FUSED_ATTENTION_OP in str(traced.inlined_graph):
        raise RuntimeError("the traced %s tower uses aten::%s, which LibTorch 1.13 cannot load: trace it with "
                           "the explicit attention path (see ATTENTION in %s)" %
                           (kind, FUSED_ATTENTION_OP, os.path.basename(__file__)))
    return traced


def save_package(traced, out_dir, name, version, kind, shape, dim, license=LICENSE, citation=CITATION):
    """Saves the TorchScript module and writes the model card."""
    os.makedirs(out_dir, exist_ok=True)
    # Saved under the final file name: TorchScript archives are named after
    # their file, so a temporary name would change the bytes (and the hash).
    tmp_dir = tempfile.mkdtemp(dir=out_dir, prefix=".export.")
    tmp = os.path.join(tmp_dir, "model.pt")
    try:
        torch.jit.save(traced, tmp)
        pre = "astroclip-image" if kind == "image" else "specformer-spectrum"
        return package_model.package(tmp, out_dir, name, version, kind, pre, list(shape), dim, license=license,
                                     citation=citation, check=True, move=True)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def check_against_upstream(tower, head, kind, preprocess=None):
    """The wrapper equals the upstream head's own forward on a batch of 3."""
    with torch.no_grad():
        if kind == "image":
            x = example_input(IMAGE_SHAPE, 3, 7, "image")
            want, got = head(x), tower(x)
        else:
            raw = 5.0 + torch.randn(3, 7781, 1, generator=torch.Generator().manual_seed(7))
            want, got = head(raw), tower(preprocess(raw))
    if want.shape != got.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
        raise RuntimeError("%s wrapper differs from upstream %s.forward (max %.3g)" %
                           (kind, type(head).__name__, float((got - want).abs().max())))


def load_astroclip(checkpoint):
    """Returns (image_head, spectrum_head) of the Lightning checkpoint, in eval mode.
    This is what AstroClipModel.load_from_checkpoint does: the hyper-parameters
    hold the encoder modules (save_hyperparameters), the state dict their weights."""
    os.environ.setdefault("XFORMERS_DISABLED", "1")
    try:
        import astroclip.models.astroclip  # noqa: F401 - makes the pickled classes importable
    except ImportError as e:
        raise SystemExit("error: cannot import the astroclip package (%s).\n"
                         "Install AstroCLIP and its pinned DINOv2 as its README says, then run this script "
                         "with that environment's python." % e)
    kw = {"map_location": "cpu"}
    try:
        ckpt = torch.load(checkpoint, weights_only=False, **kw)  # torch >= 2.6 defaults to weights_only=True
    except TypeError:
        ckpt = torch.load(checkpoint, **kw)
    hp, state = ckpt.get("hyper_parameters", {}), ckpt.get("state_dict", {})
    heads = []
    for key in ("image_encoder", "spectrum_encoder"):
        head = hp.get(key)
        if not isinstance(head, nn.Module):
            raise SystemExit("error: '%s' has no %s module in its hyper_parameters: not an AstroClipModel "
                             "checkpoint (astroclip.ckpt)?" % (checkpoint, key))
        prefix = key + "."
        head.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
        heads.append(head.eval().float())
    return heads[0], heads[1]


def export_heads(image_head, spectrum_head, out_image, out_spectrum, version, name_prefix="astroclip",
                 license=LICENSE, citation=CITATION, upstream_check=True):
    """Wraps, checks, traces and packages both towers. Returns the two cards."""
    cards = []
    for head in (image_head, spectrum_head):
        if head is not None:
            disable_fused_attention(head)
    if out_image:
        tower = wrap_image_head(image_head)
        if upstream_check:
            check_against_upstream(tower, image_head, "image")
        dim = int(tower(example_input(IMAGE_SHAPE, 2, 3, "image")).shape[1])
        traced = trace_tower(tower, IMAGE_SHAPE, "image")
        cards.append(save_package(traced, out_image, name_prefix + "-image", version, "image", IMAGE_SHAPE, dim,
                                  license, citation))
    if out_spectrum:
        tower = wrap_spectrum_head(spectrum_head)
        if upstream_check:
            check_against_upstream(tower, spectrum_head, "spectrum", spectrum_head.backbone.preprocess)
        dim = int(tower(example_input(SPECTRUM_SHAPE, 2, 3, "spectrum")).shape[1])
        traced = trace_tower(tower, SPECTRUM_SHAPE, "spectrum")
        cards.append(save_package(traced, out_spectrum, name_prefix + "-spectrum", version, "spectrum",
                                  SPECTRUM_SHAPE, dim, license, citation))
    return cards


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="AstroCLIP Lightning checkpoint (astroclip.ckpt)")
    ap.add_argument("--out-image", help="package folder for the image tower")
    ap.add_argument("--out-spectrum", help="package folder for the spectrum tower")
    ap.add_argument("--version", help="card version (default: ckpt-<first 8 hex of the checkpoint's sha256>)")
    a = ap.parse_args(argv)
    if not a.out_image and not a.out_spectrum:
        ap.error("give --out-image and/or --out-spectrum")
    if not os.path.isfile(a.checkpoint):
        ap.error("checkpoint '%s' does not exist" % a.checkpoint)
    version = a.version or "ckpt-" + package_model.sha256_file(a.checkpoint)[:8]
    image_head, spectrum_head = load_astroclip(a.checkpoint)
    torch.set_grad_enabled(False)
    for card, out in zip(export_heads(image_head, spectrum_head, a.out_image, a.out_spectrum, version),
                         [d for d in (a.out_image, a.out_spectrum) if d]):
        print("%s: %s@%s, input %s, dim %d, sha256 %s" % (out, card["name"], card["version"], card["input"]["shape"],
                                                         card["output"]["dim"], card["sha256"][:12]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
