"""Deformable attention in numpy, float32: what ONNX Runtime runs for the plugin nodes of the m2f and trt-builtin
flavors (registered by ``m2f.runtime.custom_ops``). Written from ``contract``, torch-free."""
from __future__ import annotations

import numpy as np


def _sample_level(value_level: np.ndarray, h: int, w: int, locations: np.ndarray) -> np.ndarray:
    """Bilinear samples of one level: value [N, H*W, M, D], locations [N, Lq, M, P, 2] normalised (x, y) ->
    [N, Lq, M, P, D]; pixel = loc * size - 0.5, neighbours outside the map contribute zero."""
    n, _, m, d = value_level.shape
    x = locations[..., 0] * w - np.float32(0.5)
    y = locations[..., 1] * h - np.float32(0.5)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    flat = value_level.transpose(0, 2, 1, 3).reshape(n * m, h * w, d)  # [N*M, H*W, D]
    out = np.zeros(locations.shape[:-1] + (d,), np.float32)
    batch_head = (np.arange(n)[:, None, None, None] * m + np.arange(m)[None, None, :, None])  # [N, 1, M, 1]
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)),
                           (1, 1, fy * fx)):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        index = (np.clip(yi, 0, h - 1) * w + np.clip(xi, 0, w - 1)).astype(np.int64)
        rows = flat[np.broadcast_to(batch_head, index.shape), index]  # [N, Lq, M, P, D]
        out += rows * (weight * inside)[..., None].astype(np.float32)
    return out


def msda_plain(value: np.ndarray, spatial_shapes: np.ndarray, level_start_index: np.ndarray,
               sampling_locations: np.ndarray, attention_weights: np.ndarray) -> np.ndarray:
    """Deformable attention, plain contract: -> [N, Lq, M, D] (float32)."""
    value = value.astype(np.float32, copy=False)
    n, lq, m, num_levels, num_points, _ = sampling_locations.shape
    out = np.zeros((n, lq, m, value.shape[3]), np.float32)
    for level in range(num_levels):
        h, w = (int(v) for v in spatial_shapes[level])
        start = int(level_start_index[level])
        samples = _sample_level(value[:, start:start + h * w], h, w, sampling_locations[:, :, :, level])
        out += (samples * attention_weights[:, :, :, level, :, None]).sum(axis=3)
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def msda_fused(value, spatial_shapes, level_start_index, reference_points, sampling_offsets, attention_logits):
    """Deformable attention, fused contract: locations = reference + offsets / (W_l, H_l), weights = softmax over
    L * P -> [N, Lq, M, D] (float32)."""
    n, lq, m, num_levels, num_points, _ = sampling_offsets.shape
    normalizer = spatial_shapes[:, ::-1].astype(np.float32)  # (W_l, H_l)
    locations = reference_points[:, :, None, :, None, :] + sampling_offsets / normalizer[None, None, None, :, None, :]
    weights = softmax(attention_logits.astype(np.float32)).reshape(n, lq, m, num_levels, num_points)
    return msda_plain(value, spatial_shapes, level_start_index, locations.astype(np.float32), weights)
