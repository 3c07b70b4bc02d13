"""Masked attention in numpy, float32: what ONNX Runtime runs for the m2f flavor's plugin nodes (registered by
``m2f.runtime.custom_ops``). Written from ``contract``, torch-free."""
from __future__ import annotations

import numpy as np

from .contract import BLOCKED_BELOW

_BLOCKED_BELOW = np.float32(BLOCKED_BELOW)

def masked_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask_logits: np.ndarray | None) -> np.ndarray:
    """softmax(q k^T / sqrt(D)) v with keys blocked where sigmoid(logit) < 0.5 (fp32) and the empty-row rule."""
    q, k, v = (a.astype(np.float32, copy=False) for a in (q, k, v))
    scores = np.matmul(q * np.float32(1.0 / np.sqrt(q.shape[-1])), np.swapaxes(k, -1, -2))  # [N, M, Q, S]
    if mask_logits is not None:
        blocked = mask_logits.astype(np.float32) < _BLOCKED_BELOW  # [N, Q, S]
        blocked &= ~blocked.all(-1, keepdims=True)
        scores = np.where(blocked[:, None], np.float32(-np.inf), scores)
    return np.matmul(_softmax(scores), v).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
