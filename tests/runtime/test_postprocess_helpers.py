"""The panoptic post-processing's array helpers against numpy's own functions and a plain per-group loop: they
replace np.nonzero, np.take_along_axis and argmax-per-group for speed, so each must give exactly what those give."""
from __future__ import annotations

import numpy as np
import pytest

from m2f.runtime.postprocess import _along_last, _groups, _nonzero, _rank_major, _running_argmax


@pytest.mark.parametrize("shape", [(7,), (5, 9), (3, 4, 11), (8, 8, 0), (0, 3), (2, 1, 3, 4)])
def test_nonzero_is_numpys(shape):
    mask = np.random.default_rng(len(shape)).random(shape) < 0.3
    for m in (mask, mask.T):  # a transposed (non-contiguous) mask too, as the block pairs are taken
        got, want = _nonzero(m), np.nonzero(m)
        assert len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want))


def test_along_last_is_take_along_axis():
    rng = np.random.default_rng(0)
    values = rng.random((3, 4, 10), dtype=np.float32)
    index = rng.integers(0, 10, (3, 4, 6))
    assert np.array_equal(np.take(values, _along_last(index, 10)), np.take_along_axis(values, index, axis=2))


def test_running_argmax_is_the_first_maximum_of_each_group():
    """Groups of 1 to 5 pairs (consecutive equal keys), values with ties: the first largest pair of each group,
    elementwise over two leading axes, as a loop over groups with np.argmax finds it."""
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 6, 40)
    keys = np.repeat(np.arange(sizes.size) * 3, sizes)  # non-negative, equal keys together
    values = rng.integers(0, 4, (2, 3, keys.size)).astype(np.float32)  # small integers: many ties
    order, slices = _rank_major(*_groups(keys))
    best = order[_running_argmax(values[..., order], slices)]  # [2, 3, groups], pair index in the original order
    first = _groups(keys)[1][np.argsort(-sizes, kind="stable")]  # each group's first pair, in rank 0's order
    for j, start in enumerate(first):
        size = sizes[np.searchsorted(np.cumsum(sizes) - sizes, start)]
        want = start + np.argmax(values[..., start:start + size], axis=-1)
        assert np.array_equal(best[..., j], want), j


def test_along_last_takes_nothing_from_nothing():
    index = np.zeros((2, 3, 0), np.int64)
    assert np.take(np.zeros((2, 3, 5)), _along_last(index, 5)).shape == (2, 3, 0)
