"""Swin Transformer backbone as Mask2Former's D2SwinTransformer, with its module names (docs/model.md §1.2).

Window padding amounts and the shifted-window mask are computed from the feature map's runtime shape with tensor
arithmetic (no Python-constant slices), so the same code is right for any input size and traces to a graph with
symbolic H and W. Outputs res2..res5: float32 [N, C*2^i, H/2^(i+2), W/2^(i+2)].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import SwinConfig


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """[B, Hp, Wp, C] (Hp, Wp multiples of ws) -> [B * Hp/ws * Wp/ws, ws*ws, C], windows in row-major order."""
    b, hp, wp, c = x.shape
    x = x.view(b, hp // ws, ws, wp // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, b: int, hp: int, wp: int) -> torch.Tensor:
    """Inverse of window_partition: [B * nW, ws*ws, C] -> [B, Hp, Wp, C]."""
    c = windows.shape[-1]
    x = windows.view(b, hp // ws, wp // ws, ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)


def shifted_window_mask(hp: int, wp: int, ws: int, shift: int, device: torch.device) -> torch.Tensor:
    """float32 [nW, ws*ws, ws*ws]: -100 between tokens of different cyclic-shift regions, else 0.

    Regions per axis of the padded map: [0, size - ws), [size - ws, size - shift), [size - shift, size); the same
    3x3 labelling as the original's slice loop, written as comparisons against arange.
    """
    rows = torch.arange(hp, device=device)
    cols = torch.arange(wp, device=device)
    row_region = (rows >= hp - ws).to(torch.int64) + (rows >= hp - shift).to(torch.int64)
    col_region = (cols >= wp - ws).to(torch.int64) + (cols >= wp - shift).to(torch.int64)
    region = (row_region[:, None] * 3 + col_region[None, :]).to(torch.float32)
    region_windows = window_partition(region[None, :, :, None], ws)[..., 0]  # [nW, ws*ws]; not squeeze (If in ONNX)
    differ = region_windows[:, None, :] != region_windows[:, :, None]
    return differ.to(torch.float32) * -100.0


def relative_position_index(ws: int) -> torch.Tensor:
    """int64 [ws*ws, ws*ws]: index into the (2ws-1)^2 bias table for every token pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)  # [2, ws*ws]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    def __init__(self, dim: int, ws: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.ws, self.num_heads = ws, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        # Derived from ws alone; checkpoints store it, the loader checks it equals this.
        self.register_buffer("relative_position_index", relative_position_index(ws), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: [B*nW, ws*ws, C]; mask: [nW, ws*ws, ws*ws] additive or None -> [B*nW, ws*ws, C]."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)  # [B*nW, heads, n, n]
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(-1, nw, self.num_heads, n, n) + mask[None, :, None].to(attn.dtype)
            attn = attn.view(-1, self.num_heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, ws: int, shift: int, mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x: [B, H*W, C] -> [B, H*W, C]. Padded tokens take part in attention as zero vectors (as the original)."""
        b, _, c = x.shape
        ws, shift = self.ws, self.shift
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        mask = None
        if shift > 0:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            mask = shifted_window_mask(hp, wp, ws, shift, x.device)
        x = window_reverse(self.attn(window_partition(x, ws), mask), ws, b, hp, wp)
        if shift > 0:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        x = x[:, :h, :w, :].reshape(b, h * w, c)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[B, H*W, C] -> [B, ceil(H/2)*ceil(W/2), 2C]."""
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, ws: int, mlp_ratio: float, qkv_bias: bool,
                 downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, ws, 0 if i % 2 == 0 else ws // 2, mlp_ratio, qkv_bias) for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int, norm: bool):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, dim, ceil(H/p), ceil(W/p)] (zero-padded bottom/right to a multiple of p)."""
        h, w = x.shape[-2:]
        p = self.patch
        x = self.proj(F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p)))
        if self.norm is not None:
            b, c, hh, ww = x.shape
            x = self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, hh, ww)
        return x


class SwinTransformer(nn.Module):
    def __init__(self, cfg: SwinConfig):
        super().__init__()
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim, cfg.patch_norm)
        n = len(cfg.depths)
        self.layers = nn.ModuleList(
            SwinStage(cfg.embed_dim * 2**i, cfg.depths[i], cfg.num_heads[i], cfg.window_size, cfg.mlp_ratio,
                      cfg.qkv_bias, downsample=i < n - 1)
            for i in range(n)
        )
        self.out_channels = cfg.out_channels
        for i, ch in enumerate(self.out_channels):
            self.add_module(f"norm{i}", nn.LayerNorm(ch))
        self.stage_names = ("res2", "res3", "res4", "res5")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: float32 [N, 3, H, W] normalised -> {res2..res5: [N, C*2^i, H/2^(i+2), W/2^(i+2)]}."""
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        out = {}
        for i, stage in enumerate(self.layers):
            for block in stage.blocks:
                x = block(x, h, w)
            y = getattr(self, f"norm{i}")(x)
            out[self.stage_names[i]] = y.view(-1, h, w, self.out_channels[i]).permute(0, 3, 1, 2).contiguous()
            if stage.downsample is not None:
                x = stage.downsample(x, h, w)
                h, w = (h + 1) // 2, (w + 1) // 2
        return out
