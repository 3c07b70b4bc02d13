"""Calibration methods: the clipping threshold (amax) of a tensor from its |x| histogram (m2f.calib.statistics).

    minmax       the largest |x| seen
    percentile   the |x| below which ``percentile`` % of the values lie (default 99.99)
    entropy      TensorRT's method: the threshold whose 127-level quantisation of the clipped histogram is closest to
                 it in KL divergence (Migacz, "8-bit Inference with TensorRT", GTC 2017)

The int8 scale of a symmetric quantisation is then amax / 127.
"""
from __future__ import annotations

import numpy as np

from m2f.errors import ArgumentError

METHODS = ("minmax", "percentile", "entropy")
DEFAULT_PERCENTILE = 99.99
QUANT_LEVELS = 128  # |x| levels of a symmetric int8 quantisation (0 .. 127)
ENTROPY_STRIDE = 4  # candidate thresholds every 4 bins (TensorRT checks every bin; the minimum is flat)


def threshold(method: str, amax: float, counts: np.ndarray, percentile: float = DEFAULT_PERCENTILE) -> float:
    """amax of one tensor by ``method``; ``counts``: the |x| histogram over [0, amax]."""
    if amax <= 0.0 or not counts.any():
        return max(amax, 0.0)
    if method == "minmax":
        return amax
    width = amax / len(counts)
    if method == "percentile":
        cdf = np.cumsum(counts) / counts.sum()
        return float((np.searchsorted(cdf, percentile / 100.0) + 1) * width)
    if method == "entropy":
        return float(_entropy_bins(counts) * width)
    raise ArgumentError(f"calibration method {method!r} is not one of {', '.join(METHODS)}")


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    keep = p > 0
    return float(np.sum(p[keep] * np.log(p[keep] / q[keep])))


def _quantized(reference: np.ndarray) -> np.ndarray:
    """``reference`` (i bins) merged into QUANT_LEVELS groups (np.array_split's grouping) and expanded back: each
    group's count spread evenly over its non-empty bins (empty bins stay empty)."""
    i = len(reference)
    sizes = np.full(QUANT_LEVELS, i // QUANT_LEVELS)
    sizes[: i % QUANT_LEVELS] += 1
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    totals = np.add.reduceat(reference, starts)
    filled = np.add.reduceat((reference > 0).astype(np.float64), starts)
    per_bin = np.divide(totals, filled, out=np.zeros_like(totals), where=filled > 0)
    return np.where(reference > 0, np.repeat(per_bin, sizes), 0.0)


def _entropy_bins(counts: np.ndarray) -> int:
    """The number of histogram bins to keep (the threshold is its upper edge)."""
    counts = counts.astype(np.float64)  # a copy
    # Exactly-zero values (ReLU outputs: half of many tensors) would make the first bin dominate the divergence and
    # pull every threshold down to the smallest candidate (measured: -24.6 PQ on the bundled model); TensorRT's
    # pytorch-quantization flattens that bin the same way.
    counts[0] = counts[1]
    best, best_kl = len(counts), np.inf
    for i in range(QUANT_LEVELS, len(counts) + 1, ENTROPY_STRIDE):
        reference = counts[:i].copy()
        reference[-1] += counts[i:].sum()  # clipped values land in the last kept bin
        if reference.sum() == 0:
            continue
        q = _quantized(counts[:i])
        p = reference / reference.sum()
        q_sum = q.sum()
        if q_sum == 0:
            continue
        q = q / q_sum
        # bins P has but Q lacks (the outlier bin can be such): smooth Q so the divergence stays finite
        missing = (p > 0) & (q == 0)
        if missing.any():
            q = np.where(missing, 1e-12, q)
            q /= q.sum()
        kl = _kl(p, q)
        if kl < best_kl:
            best, best_kl = i, kl
    return best
