"""Synthetic raw network outputs for post-processing tests and benchmarks (numpy only).

What a trained Mask2Former's head gives for one image, in shape and character: ``confident`` queries predict one
class with a high logit, the rest are near-uniform over the classes (dropped by the 0.8 object-mask threshold as in a
trained model); every query's mask logits are a smooth blob (peak +10) over a smoothly varying negative background
(about -12), plus per-pixel Gaussian noise of ``noise`` (0.05: smooth masks; 1: rough ones).
"""
from __future__ import annotations

import numpy as np


def raw_outputs(low: tuple[int, int], seed: int = 0, noise: float = 0.05, queries: int = 100, classes: int = 133,
                confident: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """-> (class logits float32 [Q, K + 1], mask logits float32 [Q, h, w]) with (h, w) = ``low``."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((queries, classes + 1)).astype(np.float32)
    sure = rng.choice(queries, confident, replace=False)
    logits[sure, rng.integers(0, classes, confident)] += 12
    yy, xx = np.mgrid[0:low[0], 0:low[1]].astype(np.float32)
    cy, cx = rng.uniform(0, low[0], queries), rng.uniform(0, low[1], queries)
    radius = rng.uniform(0.05, 0.3, queries) * min(low)
    blobs = 10 * (1 - ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / radius[:, None, None] ** 2)
    period = rng.uniform(0.1, 0.4, (queries, 1, 1)) * min(low)
    background = -12 + 4 * np.sin(yy / period + rng.uniform(0, 6, (queries, 1, 1))) * np.cos(xx / period)
    masks = np.maximum(blobs, background) + rng.normal(0, noise, blobs.shape)
    return logits, masks.astype(np.float32)
