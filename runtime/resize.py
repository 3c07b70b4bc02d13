"""The array resizes the runtime needs (numpy, no torch); the input geometry itself is ``m2f.geometry``."""
from __future__ import annotations

import numpy as np



def _taps(n_out: int, n_in: int):
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """float [..., H, W] -> [..., height, width]; bilinear with half-pixel centres (PyTorch's align_corners=False)."""
    y0, y1, wy = _taps(height, array.shape[-2])
    x0, x1, wx = _taps(width, array.shape[-1])
    rows0, rows1 = array[..., y0, :], array[..., y1, :]
    top = rows0[..., x0] * (1 - wx) + rows0[..., x1] * wx
    bottom = rows1[..., x0] * (1 - wx) + rows1[..., x1] * wx
    return top * (1 - wy)[:, None] + bottom * wy[:, None]


def resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Label map [..., H, W] -> [..., height, width], nearest with half-pixel centres."""
    ys = np.minimum(((np.arange(height) + 0.5) * labels.shape[-2] / height).astype(np.int64), labels.shape[-2] - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * labels.shape[-1] / width).astype(np.int64), labels.shape[-1] - 1)
    return labels[..., ys[:, None], xs[None, :]]
