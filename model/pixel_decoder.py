"""MSDeformAttnPixelDecoder: a deformable-attention encoder over res3..res5 plus a one-level FPN to stride 4.

Runs in float32 as the original (docs/model.md §1.3). Module names are the original's so checkpoints load unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from m2f.plugins.ms_deform_attn.lowering import attend

from .config import Mask2FormerConfig
from .position_encoding import sine_position_embedding
from .resnet import ConvNorm


class MSDeformAttn(nn.Module):
    """Deformable attention layer: projections around the op in ``m2f.plugins.ms_deform_attn``."""

    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.n_levels, self.n_heads, self.n_points = n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, src: torch.Tensor,
                shapes: list) -> torch.Tensor:
        """query, src: [N, S, C]; reference_points: [N, S, L, 2] normalised (x, y); shapes: (H_l, W_l) per level
        (ints, or traced sizes during export) -> [N, S, C]."""
        n, s, c = query.shape
        m, nl, p = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(src).view(n, s, m, c // m)
        offsets = self.sampling_offsets(query).view(n, s, m, nl, p, 2)  # pixels of each level
        logits = self.attention_weights(query).view(n, s, m, nl * p)
        # the op's lowering (reference, portable gathers, or a plugin node) is m2f.plugins.lowering's setting
        return self.output_proj(attend(value, shapes, reference_points, offsets, logits))


class EncoderLayer(nn.Module):
    """Post-norm: src = LN1(src + attn(src + pos)); src = LN2(src + FFN(src))."""

    def __init__(self, d_model: int, d_ffn: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, shapes):
        """src, pos [N, S, C] -> [N, S, C]. The residual adds, norms and FFN run on rows [N*S, C] (the same values):
        in ONNX Runtime, 2-D rows let linear1 take its ReLU into one Gemm and keep each Add + LayerNormalization
        from fusing into SkipLayerNormalization, which runs 4x slower on one thread (33 vs 8 ms at 22050 x 256,
        ONNX Runtime 1.31)."""
        rows = src.flatten(0, 1)
        rows = self.norm1(rows + self.self_attn(src + pos, reference_points, src, shapes).flatten(0, 1))
        rows = self.norm2(rows + self.linear2(F.relu(self.linear1(rows))))
        return rows.view_as(src)


class Encoder(nn.Module):
    def __init__(self, num_layers: int, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(**layer_kwargs) for _ in range(num_layers))


class DeformableTransformer(nn.Module):
    """Holds ``level_embed`` and ``encoder`` under the original's name ``transformer``."""

    def __init__(self, d_model: int, n_levels: int, num_layers: int, **layer_kwargs):
        super().__init__()
        self.level_embed = nn.Parameter(torch.zeros(n_levels, d_model))
        self.encoder = Encoder(num_layers, d_model=d_model, n_levels=n_levels, **layer_kwargs)


def reference_points(shapes: list, n: int, device: torch.device) -> torch.Tensor:
    """float32 [N, S, L, 2]: token centres ((j + 0.5) / W_l, (i + 0.5) / H_l), the same for every level
    (valid ratios are 1: nothing is masked)."""
    points = []
    for h, w in shapes:
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        points.append(torch.stack((xs[None, :].expand(h, w), ys[:, None].expand(h, w)), -1).reshape(-1, 2))
    pts = torch.cat(points, 0)
    return pts[None, :, None, :].expand(n, -1, len(shapes), -1)


class MSDeformAttnPixelDecoder(nn.Module):
    def __init__(self, cfg: Mask2FormerConfig, in_channels: tuple[int, int, int, int]):
        super().__init__()
        d = cfg.conv_dim
        self.n_levels = 3  # res3, res4, res5, processed coarse -> fine
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch, d, kernel_size=1), nn.GroupNorm(32, d)) for ch in in_channels[1:][::-1]
        )
        self.transformer = DeformableTransformer(
            d, self.n_levels, cfg.enc_layers, d_ffn=cfg.enc_ffn_dim, n_heads=cfg.num_heads,
            n_points=cfg.enc_n_points,
        )
        self.mask_features = nn.Conv2d(d, cfg.mask_dim, kernel_size=1)
        # One FPN level (res2) for the standard strides: log2(8) - log2(common_stride 4).
        self.num_fpn_levels = int(math.log2(8) - math.log2(cfg.common_stride))
        for i in range(self.num_fpn_levels):
            ch = in_channels[i]
            self.add_module(f"adapter_{i + 1}", ConvNorm(ch, d, 1, bias=False, norm=nn.GroupNorm(32, d)))
            self.add_module(f"layer_{i + 1}",
                            ConvNorm(d, d, 3, padding=1, bias=False, norm=nn.GroupNorm(32, d), relu=True))

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """features res2..res5 -> (mask_features [N, mask_dim, H/4, W/4],
        multi_scale_features [N, conv_dim, H/32|H/16|H/8, ...] coarse to fine)."""
        levels = [features[k].float() for k in ("res5", "res4", "res3")]
        srcs, pos = [], []
        for i, x in enumerate(levels):
            srcs.append(self.input_proj[i](x).flatten(2).transpose(1, 2))
            pe = sine_position_embedding(x, self.transformer.level_embed.shape[1] // 2)
            pos.append(pe.flatten(2).transpose(1, 2) + self.transformer.level_embed[i].view(1, 1, -1))
        shapes = [(x.shape[2], x.shape[3]) for x in levels]
        src, pos_all = torch.cat(srcs, 1), torch.cat(pos, 1)
        ref = reference_points(shapes, src.shape[0], src.device)
        for layer in self.transformer.encoder.layers:
            src = layer(src, pos_all, ref, shapes)
        n, _, c = src.shape
        outs = [y.transpose(1, 2).reshape(n, c, h, w)
                for y, (h, w) in zip(src.split([h * w for h, w in shapes], dim=1), shapes)]
        fpn_inputs = [features[k].float() for k in ("res2", "res3", "res4")[: self.num_fpn_levels]]
        for i, x in reversed(list(enumerate(fpn_inputs))):
            lateral = getattr(self, f"adapter_{i + 1}")(x)
            y = lateral + F.interpolate(outs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(getattr(self, f"layer_{i + 1}")(y))
        return self.mask_features(outs[-1]), outs[: self.n_levels]
