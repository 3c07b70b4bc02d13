"""Calibration ranges against independent references: numpy's percentile on the raw values, and a direct,
loop-by-loop transcription of TensorRT's entropy calibration (Migacz, GTC 2017; pytorch-quantization's histogram
calibrator flattens the zero bin the same way)."""
import numpy as np
import pytest

from m2f.calib.ranges import threshold
from m2f.calib.statistics import BINS, Statistics


def _histogram(values):
    stats = Statistics()
    stats.add("t", values)
    return stats.amax["t"], stats.counts["t"]


def _kl_reference(counts, stride=4, levels=128):
    """TensorRT's algorithm, written out: for every candidate i, P = first i bins with the outliers added to the
    last, Q = those i bins merged into 128 groups and spread back over each group's non-empty bins."""
    counts = counts.astype(np.float64).copy()
    counts[0] = counts[1]
    best, best_kl = len(counts), float("inf")
    for i in range(levels, len(counts) + 1, stride):
        p = counts[:i].copy()
        p[i - 1] += counts[i:].sum()
        q = np.zeros(i)
        for group in np.array_split(np.arange(i), levels):
            nonzero = [j for j in group if counts[j] > 0]
            for j in nonzero:
                q[j] = counts[group].sum() / len(nonzero)
        p, q = p / p.sum(), q / q.sum()
        q[(p > 0) & (q == 0)] = 1e-12
        q /= q.sum()
        kl = sum(pi * np.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)
        if kl < best_kl:
            best, best_kl = i, kl
    return best


def test_minmax_is_the_largest_magnitude():
    values = np.random.default_rng(0).normal(size=10_000).astype(np.float32)
    amax, counts = _histogram(values)
    assert threshold("minmax", amax, counts) == pytest.approx(float(np.abs(values).max()))


@pytest.mark.parametrize("percentile", [99.0, 99.9, 99.99])
def test_percentile_matches_numpy_within_two_bins(percentile):
    values = np.random.default_rng(1).standard_t(3, size=200_000).astype(np.float32)
    amax, counts = _histogram(values)
    want = np.percentile(np.abs(values), percentile)
    # the upper edge of the bin holding the percentile; numpy interpolates between neighbours that may straddle it
    assert abs(threshold("percentile", amax, counts, percentile) - want) <= 2 * amax / BINS


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entropy_matches_the_written_out_algorithm(seed):
    rng = np.random.default_rng(seed)
    # a ReLU-like tensor with a long tail: half zeros, most mass low, a few outliers
    values = np.maximum(rng.laplace(scale=0.5, size=100_000), 0).astype(np.float32)
    values[:20] = rng.uniform(8, 12, size=20)
    amax, counts = _histogram(values)
    got = threshold("entropy", amax, counts)
    assert got == pytest.approx(_kl_reference(counts) * amax / BINS)
    assert np.percentile(values, 99) < got <= amax, "never the bulk of the values"


def test_histograms_merge_across_batches_with_growing_range():
    rng = np.random.default_rng(3)
    batches = [rng.normal(scale=s, size=50_000).astype(np.float32) for s in (0.5, 1.0, 3.0)]
    stats = Statistics()
    for b in batches:
        stats.add("t", b)
    everything = np.abs(np.concatenate(batches))
    assert stats.amax["t"] == pytest.approx(float(everything.max()))
    assert stats.counts["t"].sum() == everything.size
    got = threshold("percentile", stats.amax["t"], stats.counts["t"], 99.0)
    # rebinning moves a count by at most one new bin
    assert abs(got - np.percentile(everything, 99.0)) <= 2 * stats.amax["t"] / BINS


def test_unknown_method_is_one_sentence():
    from m2f.errors import ArgumentError

    with pytest.raises(ArgumentError, match="not one of"):
        threshold("kl", 1.0, np.ones(BINS, np.int64))
