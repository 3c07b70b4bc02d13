"""The comparison statistics against values computed by hand on small arrays."""
import math

import numpy as np
import pytest

from m2f.validate.compare import Comparison, compare


def test_statistics_by_hand():
    ref = np.array([1.0, -2.0, 4.0, 0.0])
    got = np.array([1.1, -2.0, 3.0, 0.001])
    c = compare("x", got, ref, atol=0.01, rtol=0.05)
    # errors 0.1, 0, 1, 0.001
    assert c.max_abs == pytest.approx(1.0) and c.mean_abs == pytest.approx(1.101 / 4)
    assert c.scale == 4.0 and c.drift == pytest.approx(0.25)
    # relative: 0.1/1, 0/2, 1/4, and 0.001 / max(0, 1e-6 * 4)
    assert c.max_rel == pytest.approx(0.001 / 4e-6) and c.mean_rel == pytest.approx((0.1 + 0 + 0.25 + 250) / 4)
    # outside atol + rtol |ref|: 0.1 > 0.01 + 0.05 (yes), 0 (no), 1 > 0.21 (yes), 0.001 > 0.01 (no)
    assert c.mismatch == 0.5
    dot = 1.1 * 1 + 4 + 12
    assert c.cosine == pytest.approx(dot / (math.sqrt(1.21 + 4 + 9 + 1e-6) * math.sqrt(21)))
    assert c.p99_abs == pytest.approx(np.percentile([0.1, 0, 1, 0.001], 99))
    assert c.nan == 0 and c.inf == 0 and sum(c.histogram) == 4


def test_nan_and_inf_are_counted_and_never_look_small():
    c = compare("x", np.array([np.nan, np.inf, 1.0]), np.array([0.0, 0.0, 1.0]))
    assert (c.nan, c.inf) == (1, 1) and c.max_abs == math.inf


def test_mask_iou_and_top1():
    ref = np.zeros((1, 2, 2, 2))
    got = np.zeros((1, 2, 2, 2))
    ref[0, 0, 0, :] = 1  # query 0: 2 pixels on
    got[0, 0, 0, 0] = 1  # got has 1 of them: IoU 1/2
    got[0, 0, 1, 1] = 1  # and one more: IoU 1/3
    ref[0, 1] = -1  # query 1: empty in both, not counted
    got[0, 1] = -5
    c = compare("pred_masks", got, ref, kind="masks")
    assert c.mask_iou == pytest.approx(1 / 3) and c.mask_iou_min == pytest.approx(1 / 3)
    logits = compare("pred_logits", np.array([[[0.1, 0.9], [0.8, 0.2]]]), np.array([[[0.2, 0.7], [0.1, 0.3]]]),
                     kind="logits")
    assert logits.top1 == 0.5


def test_merge_over_images():
    a = compare("x", np.array([1.0, 2.0]), np.array([1.0, 1.0]))  # errors 0, 1
    b = compare("x", np.array([0.0, 0.0, 0.0, 0.5]), np.array([0.0, 0.0, 0.0, 0.0]))  # errors 0, 0, 0, 0.5
    m = Comparison.merge([a, b])
    assert m.elements == 6 and m.max_abs == 1.0 and m.mean_abs == pytest.approx(1.5 / 6)
    assert m.scale == 1.0 and sum(m.histogram) == 6


def test_shape_mismatch_is_one_sentence():
    from m2f.errors import ArgumentError

    with pytest.raises(ArgumentError, match=r"pred_masks: shapes differ, \[2\] vs \[3\]"):
        compare("pred_masks", np.zeros(2), np.zeros(3))
