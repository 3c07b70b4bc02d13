"""Masked cross-attention, the op that gives Mask2Former its name (reference §1.4, §5).

Contract:

    q            float [N, M, Q, D]   queries per head (not yet scaled)
    k, v         float [N, M, S, D]   keys / values per head
    mask_logits  float [N, Q, S]      mask logits of the previous prediction, already resized (bilinear,
                                      align_corners=False) to this level and flattened; shared by all heads;
                                      None = no mask
    -> output    float [N, M, Q, D]

A key is blocked for a query where sigmoid(logit) < 0.5, computed in float32 (NOT logit < 0: sigmoid of a tiny
negative logit rounds to exactly 0.5 in float32 and is then not blocked). A query whose keys are all blocked
attends to every key (the "empty-row rule"), so the result is never NaN. Scores are q·k / sqrt(D).
"""
from __future__ import annotations

import math

import torch

PLUGIN_NAME = "M2fMaskedAttention"
PLUGIN_NAMESPACE = "m2f"
PLUGIN_VERSION = "1"


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
    """The PyTorch reference; exact in float64. Shapes are documented in the module docstring."""
    scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-1, -2))  # [N, M, Q, S]
    if mask_logits is not None:
        blocked = blocked_keys(mask_logits)[:, None]  # shared by all heads
        scores = scores.masked_fill(blocked, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)
