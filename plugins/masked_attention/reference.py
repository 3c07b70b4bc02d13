"""Masked cross-attention in PyTorch: the reference, exact in float64 (it exports to plain MatMul / masked Softmax
/ MatMul, the portable lowering). Shapes and semantics: ``contract``."""
from __future__ import annotations

import math

import torch


def blocked_keys(mask_logits: torch.Tensor) -> torch.Tensor:
    """bool [N, Q, S]: True where the key may NOT be attended, after the empty-row rule.

    Written without in-place boolean indexing (``mask[where(...)] = False`` in the original) so that it traces to a
    static graph.
    """
    blocked = torch.sigmoid(mask_logits.float()) < 0.5
    every_key_blocked = blocked.all(dim=-1, keepdim=True)
    return blocked & ~every_key_blocked


def reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_logits: torch.Tensor | None
) -> torch.Tensor:
    """The PyTorch reference; exact in float64. Shapes are documented in ``contract``."""
    scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-1, -2))  # [N, M, Q, S]
    if mask_logits is not None:
        blocked = blocked_keys(mask_logits)[:, None]  # shared by all heads
        scores = scores.masked_fill(blocked, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)
