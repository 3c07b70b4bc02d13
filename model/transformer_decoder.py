"""MultiScaleMaskedTransformerDecoder: queries refined by masked cross-attention over the 1/32, 1/16, 1/8 maps.

Module names are the original's (``transformer_cross_attention_layers.{i}.multihead_attn.in_proj_weight`` …).
Masked cross-attention itself is ``m2f.plugins.masked_attention``. Sequence-first tensors ([L, N, C]) as the
original; the attention mask is derived from the previous layer's mask prediction (docs/model.md §1.4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from m2f.plugins.masked_attention.lowering import attend

from .config import Mask2FormerConfig
from .position_encoding import sine_position_embedding


class MultiheadAttention(nn.Module):
    """nn.MultiheadAttention's parameters (packed in_proj, out_proj), without its fused code paths.

    Self-attention and masked cross-attention share it; the masked case runs the op in ``plugins``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _heads(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[L, N, C] -> projected [N, M, L, C/M]."""
        length, n, c = x.shape
        return F.linear(x, w, b).view(length, n, self.num_heads, c // self.num_heads).permute(1, 2, 0, 3)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask_logits: torch.Tensor | None = None) -> torch.Tensor:
        """query [Q, N, C], key/value [S, N, C], mask_logits [N, Q, S] or None -> [Q, N, C]."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q, k, v = self._heads(query, w_q, b_q), self._heads(key, w_k, b_k), self._heads(value, w_v, b_v)
        out = attend(q, k, v, mask_logits)  # [N, M, Q, D]
        n, m, length, d = out.shape
        return self.out_proj(out.permute(2, 0, 1, 3).reshape(length, n, m * d))


class CrossAttentionLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, pre_norm: bool):
        super().__init__()
        self.multihead_attn = MultiheadAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm

    def forward(self, tgt, memory, mask_logits, pos, query_pos):
        if self.pre_norm:
            t = self.norm(tgt)
            return tgt + self.multihead_attn(t + query_pos, memory + pos, memory, mask_logits)
        return self.norm(tgt + self.multihead_attn(tgt + query_pos, memory + pos, memory, mask_logits))


class SelfAttentionLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, pre_norm: bool):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm

    def forward(self, tgt, query_pos):
        if self.pre_norm:
            t = self.norm(tgt)
            return tgt + self.self_attn(t + query_pos, t + query_pos, t)
        q = tgt + query_pos
        return self.norm(tgt + self.self_attn(q, q, tgt))


class FFNLayer(nn.Module):
    def __init__(self, dim: int, ffn: int, pre_norm: bool):
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm

    def forward(self, tgt):
        if self.pre_norm:
            return tgt + self.linear2(F.relu(self.linear1(self.norm(tgt))))
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt))))


class MLP(nn.Module):
    """``layers.{0,1,2}`` Linear layers with ReLU between them, none after the last."""

    def __init__(self, dim: int, hidden: int, out: int, num_layers: int):
        super().__init__()
        dims = [dim] + [hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [out]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class MultiScaleMaskedTransformerDecoder(nn.Module):
    def __init__(self, cfg: Mask2FormerConfig, in_channels: int):
        super().__init__()
        d, heads, pre = cfg.hidden_dim, cfg.num_heads, cfg.pre_norm
        self.num_levels = 3
        self.num_layers = cfg.dec_layers
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(d, heads, pre) for _ in range(self.num_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(d, heads, pre) for _ in range(self.num_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(d, cfg.dim_feedforward, pre) for _ in range(self.num_layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.query_feat = nn.Embedding(cfg.num_queries, d)
        self.query_embed = nn.Embedding(cfg.num_queries, d)
        self.level_embed = nn.Embedding(self.num_levels, d)
        self.input_proj = nn.ModuleList(
            nn.Conv2d(in_channels, d, kernel_size=1) if in_channels != d or cfg.enforce_input_proj
            else nn.Sequential()
            for _ in range(self.num_levels)
        )
        self.class_embed = nn.Linear(d, cfg.num_classes + 1)
        self.mask_embed = MLP(d, d, cfg.mask_dim, 3)

    def prediction_heads(self, output: torch.Tensor, mask_features: torch.Tensor):
        """output [Q, N, C] -> class logits [N, Q, K+1], mask logits [N, Q, H/4, W/4]."""
        decoded = self.decoder_norm(output).transpose(0, 1)
        return self.class_embed(decoded), _mask_logits(self.mask_embed(decoded), mask_features)

    def attention_mask_logits(self, output: torch.Tensor, level_features: torch.Tensor) -> torch.Tensor:
        """What the next masked attention reads: the mask logits of output [Q, N, C] at a level's size (h, w) ->
        [N, Q, h, w], from the mask features resized to that level (``_to_level``) [N, mask_dim, h, w].

        The original resizes the [N, Q, H/4, W/4] logits instead. A bilinear resize is linear and the logits are
        linear in the features, so both give the same values up to float rounding (a few ulp, from the order of the
        sums); only a logit within that rounding of 0 could block a key one way and not the other (docs/model.md
        section 1.4). Here the dot products run at the level's size: 1/4, 1/16 and 1/64 of them."""
        embed = self.mask_embed(self.decoder_norm(output).transpose(0, 1))
        return _mask_logits(embed, level_features)

    def forward(self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor,
                return_aux: bool = False) -> dict[str, torch.Tensor | list]:
        """multi_scale: 3 maps [N, C, H_l, W_l] coarse to fine; mask_features [N, mask_dim, H/4, W/4].

        Returns pred_logits [N, Q, K+1] and pred_masks [N, Q, H/4, W/4] of the last layer, and with return_aux the
        earlier prediction sets (0 = from the raw query features) under aux_outputs.
        """
        srcs, pos, sizes = [], [], []
        for i, x in enumerate(multi_scale):
            sizes.append(x.shape[-2:])
            pos.append(sine_position_embedding(x, self.query_feat.weight.shape[1] // 2).flatten(2).permute(2, 0, 1))
            src = self.input_proj[i](x).flatten(2) + self.level_embed.weight[i][None, :, None]
            srcs.append(src.permute(2, 0, 1))
        n = mask_features.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, n, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, n, 1)

        # without aux outputs the earlier predictions only feed the attention masks: their logits come from the
        # mask features at each level's size, resized once per level
        level_features = [] if return_aux else [_to_level(mask_features, size) for size in sizes]
        aux = []
        for i in range(self.num_layers):
            level = i % self.num_levels
            if return_aux:
                logits, masks = self.prediction_heads(output, mask_features)
                aux.append({"pred_logits": logits, "pred_masks": masks})
                level_logits = _to_level(masks, sizes[level])
            else:
                level_logits = self.attention_mask_logits(output, level_features[level])
            output = self.transformer_cross_attention_layers[i](
                output, srcs[level], level_logits.flatten(2).detach(), pos[level], query_pos)
            output = self.transformer_self_attention_layers[i](output, query_pos)
            output = self.transformer_ffn_layers[i](output)

        logits, masks = self.prediction_heads(output, mask_features)
        result = {"pred_logits": logits, "pred_masks": masks}
        if return_aux:
            result["aux_outputs"] = aux
        return result


def _to_level(maps: torch.Tensor, size) -> torch.Tensor:
    """[N, C, H', W'] -> [N, C, h, w]: the original's bilinear resize (align_corners=False) to a level's size, of
    mask logits (C = Q) or of the mask features they are computed from."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def _mask_logits(embed: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """embed [N, Q, C] x features [N, C, H, W] -> [N, Q, H, W]: the einsum "bqc,bchw->bqhw" as one batched matmul
    (ONNX Runtime runs Einsum through transposes, MatMul directly: 54 vs 65 ms at R50 800x1344; same values)."""
    n, c, h, w = features.shape
    return torch.matmul(embed, features.reshape(n, c, h * w)).reshape(n, embed.shape[1], h, w)
