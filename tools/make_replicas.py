#!/usr/bin/python3
"""Architecture-faithful replicas of the two AstroCLIP towers with random
(seeded) weights, exported to TorchScript and packaged for
`mmu-index build --model DIR`.

    /usr/bin/python3 tools/make_replicas.py --out models/replica-image --tower image --width reduced
    /usr/bin/python3 tools/make_replicas.py --out models/replica-spectrum --tower spectrum --width full --seed 3

They exist to test the encoder stage (inputs, batching, shapes, resume,
provenance) without the 1.7 GB AstroCLIP checkpoint: same layers, same input
and output shapes, same forward path, random weights. Their embeddings mean
nothing astronomically.

Image tower (docs/MODELS.md §1.2): DINOv2 ViT with patch size 12 on [3, 144, 144]
(z, r, g): patch_embed (Conv2d 12x12/12) -> pre-LN blocks (LayerNorm eps 1e-6,
attention with qkv bias, LayerScale, GELU MLP x4, LayerScale) -> LayerNorm;
no CLS token and no position embedding on this path, as in AstroCLIP's
ImageHead. Then CrossAttentionHead (one learned query, nn.MultiheadAttention
with 4 heads, kdim = vdim = backbone width, LayerNorm) -> MLP x4 (GELU), no
residual.
    reduced: width 192, 4 blocks, 3 heads, head/output 128
    full:    ViT-L, width 1024, 24 blocks, 16 heads, MLP 4096, head MLP 1024->4096->1024, output 1024

Spectrum tower (docs/MODELS.md §1.4): SpecFormer on SpecFormer.preprocess output
[778, 22]: Linear(22 -> W) + learned position embedding (800, W) -> pre-LN
blocks (attention, GELU MLP x4) -> final LayerNorm; then CrossAttentionHead
(one query, 4 heads, kdim = vdim = W, LayerNorm) -> x + MLP(x).
    reduced: W 128, 2 blocks, 4 heads, head/output 96
    full:    W 768, 6 blocks, 6 heads, head/output 1024

Module and parameter names follow the upstream classes (DINOv2's ViT,
AstroCLIP's SpecFormer, CrossAttentionHead, MLP), so the same wrappers
(tools/export_astroclip.py: ImageTower, SpectrumTower) export replicas and the
real checkpoint; the wrappers keep the batch axis (upstream's `.squeeze()`
drops it for a batch of one). Attention is written out (softmax(q k^T / sqrt(d)) v):
torch 1.13 has no F.scaled_dot_product_attention; the result is the same.

Random weights: PyTorch's default initialisation, except LayerNorm weights
1 + 0.1 N(0,1), biases 0.02 N(0,1), LayerScale gammas U(0.1, 0.3) (DINOv2 starts
them at 1e-5, which would make the blocks almost inert) and the position
embedding trunc-normal with std 1/sqrt(W) (as SpecFormer initialises it).

Full-width files are large (image ~1.2 GB, spectrum ~0.2 GB): generate them on
demand, never commit them. Needs Debian's /usr/bin/python3 (python3-torch).
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_astroclip  # noqa: E402

WIDTHS = {
    "image": {
        "reduced": dict(width=192, depth=4, heads=3, mlp_ratio=4, embed=128, head_heads=4),
        "full": dict(width=1024, depth=24, heads=16, mlp_ratio=4, embed=1024, head_heads=4),
    },
    "spectrum": {
        "reduced": dict(width=128, depth=2, heads=4, mlp_ratio=4, embed=96, head_heads=4),
        "full": dict(width=768, depth=6, heads=6, mlp_ratio=4, embed=1024, head_heads=4),
    },
}
PATCH = 12
SPEC_INPUT_DIM, SPEC_MAX_LEN = 22, 800


# ---- DINOv2 ViT (dinov2/models/vision_transformer.py, dinov2/layers) ----

class PatchEmbed(nn.Module):
    def __init__(self, patch, width):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch)
        self.norm = nn.Identity()

    def forward(self, x):
        x = self.proj(x)  # B, W, H/p, W/p
        x = x.flatten(2).transpose(1, 2)  # B, N, W
        return self.norm(x)


class DinoAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class DinoMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x):
        return x * self.gamma


class DinoBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DinoAttention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = DinoMlp(dim, dim * mlp_ratio)
        self.ls2 = LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoViT(nn.Module):
    """The parts of DINOv2's DinoVisionTransformer that AstroCLIP's ImageHead uses
    (cls_token, pos_embed and mask_token are never used on that path)."""

    def __init__(self, width, depth, heads, mlp_ratio):
        super().__init__()
        self.patch_embed = PatchEmbed(PATCH, width)
        self.blocks = nn.ModuleList([DinoBlock(width, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(width, eps=1e-6)


# ---- AstroCLIP modules (astroclip/modules.py, astroclip/models/specformer.py) ----

class CrossAttentionHead(nn.Module):
    def __init__(self, embed_dim, n_head, model_embed_dim, dropout=0.1):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, embed_dim))
        self.multihead_attn = nn.MultiheadAttention(embed_dim=embed_dim, num_heads=n_head, batch_first=True,
                                                    kdim=model_embed_dim, vdim=model_embed_dim)
        self.layernorm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):  # upstream, including its attentions[1] (batch element 1)
        attentions = self.multihead_attn(query=self.query.repeat(x.shape[0], 1, 1), key=x, value=x,
                                         average_attn_weights=False)[0]
        x = self.layernorm(self.dropout(attentions))
        return x, attentions[1]


class MLP(nn.Module):
    def __init__(self, in_features, hidden_features, dropout=0.0):
        super().__init__()
        self.encoder = nn.Linear(in_features, hidden_features)
        self.activation = nn.GELU()
        self.decoder = nn.Linear(hidden_features, in_features)
        self.dropout_layer = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x):
        x = self.decoder(self.activation(self.encoder(x)))
        if self.dropout_layer is not None:
            x = self.dropout_layer(x)
        return x


class SelfAttention(nn.Module):
    def __init__(self, dim, heads, dropout=0.1):
        super().__init__()
        self.embedding_dim, self.num_heads = dim, heads
        self.attention = nn.Linear(dim, 3 * dim)
        self.projection = nn.Linear(dim, dim)
        self.attention_dropout = nn.Dropout(dropout)
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.attention(x).split(self.embedding_dim, dim=2)
        nh, hs = self.num_heads, c // self.num_heads
        k = k.view(b, t, nh, hs).transpose(1, 2)
        q = q.view(b, t, nh, hs).transpose(1, 2)
        v = v.view(b, t, nh, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # = F.scaled_dot_product_attention
        att = self.attention_dropout(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.residual_dropout(self.projection(y))


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, dropout=0.1):
        super().__init__()
        self.layernorm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, dropout)
        self.layernorm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio * dim, dropout)

    def forward(self, x):
        x = x + self.attention(self.layernorm1(x))
        return x + self.mlp(self.layernorm2(x))


class SpecFormer(nn.Module):
    def __init__(self, width, depth, heads, mlp_ratio, input_dim=SPEC_INPUT_DIM, max_len=SPEC_MAX_LEN,
                 slice_section_length=20, slice_overlap=10, dropout=0.1):
        super().__init__()
        self.max_len, self.section, self.overlap = max_len, slice_section_length, slice_overlap
        self.data_embed = nn.Linear(input_dim, width)
        self.position_embed = nn.Embedding(max_len, width)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([TransformerBlock(width, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.final_layernorm = nn.LayerNorm(width)
        self.head = nn.Linear(width, input_dim)
        std = 1 / math.sqrt(width)
        for emb in (self.data_embed, self.position_embed):
            nn.init.trunc_normal_(emb.weight, std=std, a=-3 * std, b=3 * std)

    def forward(self, x):
        return self.forward_without_preprocessing(self.preprocess(x))

    def forward_without_preprocessing(self, x):
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError("Cannot forward sequence of length %d, block size is only %d" % (t, self.max_len))
        pos = torch.arange(0, t, dtype=torch.long, device=x.device)
        x = self.dropout(self.data_embed(x) + self.position_embed(pos))
        for block in self.blocks:
            x = block(x)
        x = self.final_layernorm(x)
        return {"reconstructions": self.head(x), "embedding": x}

    def preprocess(self, x):
        """SpecFormer.preprocess as published (x: [B, L, 1] raw flux)."""
        std, mean = x.std(1, keepdim=True).clip_(0.2), x.mean(1, keepdim=True)
        x = (x - mean) / std
        starts = np.arange(0, x.shape[1] - self.overlap, self.section - self.overlap)
        sections = [x[:, s:s + self.section].transpose(1, 2) for s in starts]
        if sections[-1].shape[1] < self.section:  # shape[1] is 1: always true, the last window goes
            sections.pop(-1)
        x = F.pad(torch.cat(sections, 1), pad=(2, 0, 1, 0), mode="constant", value=0)
        x[:, 0, 0] = (mean.squeeze() - 2) / 2
        x[:, 0, 1] = (std.squeeze() - 2) / 8
        return x


class ImageHead(nn.Module):
    """AstroCLIP's ImageHead with its upstream forward (ends in .squeeze())."""

    def __init__(self, c):
        super().__init__()
        self.backbone = DinoViT(c["width"], c["depth"], c["heads"], c["mlp_ratio"])
        self.cross_attention = CrossAttentionHead(c["embed"], c["head_heads"], c["width"])
        self.mlp = MLP(c["embed"], 4 * c["embed"], dropout=0.1)

    def forward(self, x):
        x = self.backbone.patch_embed(x)
        for blk in self.backbone.blocks:
            x = blk(x)
        embedding = self.backbone.norm(x)
        x, _ = self.cross_attention(embedding)
        x = self.mlp(x)
        return x.squeeze()


class SpectrumHead(nn.Module):
    """AstroCLIP's SpectrumHead with its upstream forward (raw spectra in, .squeeze() out)."""

    def __init__(self, c):
        super().__init__()
        self.backbone = SpecFormer(c["width"], c["depth"], c["heads"], c["mlp_ratio"])
        self.cross_attention = CrossAttentionHead(c["embed"], c["head_heads"], c["width"])
        self.mlp = MLP(c["embed"], 4 * c["embed"], dropout=0.1)

    def forward(self, x):
        embedding = self.backbone(x)["embedding"]
        x, _ = self.cross_attention(embedding)
        x = x + self.mlp(x)
        return x.squeeze()


def randomise(module, seed):
    """Non-trivial norms and layer scales (see the module docstring)."""
    g = torch.Generator().manual_seed(seed + 7919)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.02 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, LayerScale):
                m.gamma.copy_(0.1 + 0.2 * torch.rand(m.gamma.shape, generator=g))
            elif isinstance(m, nn.MultiheadAttention):
                for b in (m.in_proj_bias, m.out_proj.bias):
                    if b is not None:
                        b.copy_(0.02 * torch.randn(b.shape, generator=g))


def build_head(tower, width, seed):
    """The replica head (upstream structure) with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    c = WIDTHS[tower][width]
    head = ImageHead(c) if tower == "image" else SpectrumHead(c)
    randomise(head, seed)
    return head.eval()


def make_replica(out, tower, width, seed=0, name=None, version=None):
    """Builds, wraps, traces and packages one replica. Returns the card."""
    head = build_head(tower, width, seed)
    if tower == "image":
        wrapped, shape = export_astroclip.wrap_image_head(head), export_astroclip.IMAGE_SHAPE
        export_astroclip.check_against_upstream(wrapped, head, "image")
    else:
        wrapped, shape = export_astroclip.wrap_spectrum_head(head), export_astroclip.SPECTRUM_SHAPE
        export_astroclip.check_against_upstream(wrapped, head, "spectrum", head.backbone.preprocess)
    traced = export_astroclip.trace_tower(wrapped, shape, tower)
    dim = WIDTHS[tower][width]["embed"]
    name = name or "astroclip-%s-replica" % tower
    version = version or "%s-seed%d" % (width, seed)
    return export_astroclip.save_package(
        traced, out, name, version, tower, shape, dim,
        license="test replica: random weights (no license needed); architecture of AstroCLIP (MIT)",
        citation="architecture replica of AstroCLIP: " + export_astroclip.CITATION)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="package folder to write (model.pt + model.json)")
    ap.add_argument("--tower", required=True, choices=["image", "spectrum"])
    ap.add_argument("--width", required=True, choices=["reduced", "full"])
    ap.add_argument("--seed", type=int, default=0, help="weights seed (default 0)")
    ap.add_argument("--name", help="card name (default astroclip-<tower>-replica)")
    ap.add_argument("--version", help="card version (default <width>-seed<seed>)")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t0 = time.time()
    card = make_replica(a.out, a.tower, a.width, a.seed, a.name, a.version)
    size = os.path.getsize(os.path.join(a.out, card["file"]))
    print("%s: %s@%s, input %s, dim %d, %.1f MB, sha256 %s, %.1f s" % (
        a.out, card["name"], card["version"], card["input"]["shape"], card["output"]["dim"], size / 1e6,
        card["sha256"][:12], time.time() - t0))
    return 0


if __name__ == "__main__":
    # Run through the imported module, so TorchScript names the classes
    # make_replicas.* (not __main__.*) and the CLI writes the same bytes as
    # make_replica() called from a fresh process that imports this file.
    import make_replicas as _self
    sys.exit(_self.main())
