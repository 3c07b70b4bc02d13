"""The array resizes the runtime needs (numpy, no torch); the input geometry itself is ``m2f.geometry``."""
from __future__ import annotations

import numpy as np


def resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Label map [..., H, W] -> [..., height, width], nearest with half-pixel centres."""
    ys = np.minimum(((np.arange(height) + 0.5) * labels.shape[-2] / height).astype(np.int64), labels.shape[-2] - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * labels.shape[-1] / width).astype(np.int64), labels.shape[-1] - 1)
    return labels[..., ys[:, None], xs[None, :]]
