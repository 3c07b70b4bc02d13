"""The sine positional embedding of DETR as Mask2Former uses it (normalize=True, scale 2π, temperature 10000)."""
from __future__ import annotations

import math

import torch


def sine_position_embedding(x: torch.Tensor, num_pos_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """float32 [N, 2*num_pos_feats, H, W] for a map x [N, C, H, W]; only x's shape matters.

    Channels 0..F-1 encode y, F..2F-1 encode x; even channels are sin, odd are cos (interleaved). The op order
    (embed / (last + 1e-6) * 2π, then / dim_t) is the original's, which keeps float32 results bit-faithful.
    """
    n, _, h, w = x.shape
    y_embed = torch.arange(1, h + 1, dtype=torch.float32, device=x.device)
    x_embed = torch.arange(1, w + 1, dtype=torch.float32, device=x.device)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[-1:] + eps) * scale
    x_embed = x_embed / (x_embed[-1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=x.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_y = y_embed[:, None] / dim_t  # [H, F]
    pos_x = x_embed[:, None] / dim_t  # [W, F]
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
    pos = torch.cat(
        (pos_y[:, None, :].expand(h, w, num_pos_feats), pos_x[None, :, :].expand(h, w, num_pos_feats)), dim=2
    )
    return pos.permute(2, 0, 1)[None].expand(n, -1, -1, -1)
