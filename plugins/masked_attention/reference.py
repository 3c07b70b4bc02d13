"""Masked cross-attention in PyTorch: the reference, exact in float64 (it exports to plain MatMul / Add of a -inf / 0
mask / Softmax / MatMul, the portable lowering). Shapes and semantics: ``contract``."""
from __future__ import annotations

import math

import torch


def blocked_keys(mask_logits: torch.Tensor) -> torch.Tensor:
    """bool [N, Q, S]: True where the key may NOT be attended, after the empty-row rule.

    Written without in-place boolean indexing (``mask[where(...)] = False`` in the original) so that it traces to a
    static graph. A row has every key blocked exactly when its largest sigmoid is < 0.5: one float ReduceMax in the
    graph instead of ``all``'s cast to int64 and ReduceSum over [N, Q, S].
    """
    probabilities = torch.sigmoid(mask_logits.float())
    blocked = probabilities < 0.5
    every_key_blocked = probabilities.amax(dim=-1, keepdim=True) < 0.5
    return blocked & ~every_key_blocked


def reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_logits: torch.Tensor | None
) -> torch.Tensor:
    """The PyTorch reference; exact in float64. Shapes are documented in ``contract``."""
    scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-1, -2))  # [N, M, Q, S]
    if mask_logits is not None:
        # an additive -inf / 0 mask shared by all heads, as PyTorch's MultiheadAttention turns the original's bool
        # mask into: the same values as masked_fill, and ONNX Runtime's broadcast Add over the heads (an outer axis)
        # is faster than its Where
        blocked = blocked_keys(mask_logits)[:, None]  # [N, 1, Q, S]
        scores = scores + torch.zeros((), dtype=scores.dtype).masked_fill(blocked, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)
