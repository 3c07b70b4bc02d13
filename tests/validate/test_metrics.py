"""Metrics on hand-made cases with values computed by hand."""
import numpy as np
import pytest

from m2f.runtime.formats import rle_encode
from m2f.validate.metrics import MeanIoU, PanopticQuality, mask_ap


def test_pq_perfect_and_by_hand():
    gt = np.zeros((4, 6), np.int64)
    gt[:, :3], gt[:, 3:] = 1, 2
    segs = [{"id": 1, "category_id": 0}, {"id": 2, "category_id": 7}]
    pq = PanopticQuality()
    pq.add(gt, segs, gt.copy(), segs)
    assert pq.result([0])["all"]["PQ"] == pytest.approx(100)

    # prediction: thing 0 shifted by one column (IoU 8/16 = 0.5, not > 0.5 -> FP + FN), stuff 7 exact,
    # plus a stray thing segment lying mostly on void
    gt2 = gt.copy()
    gt2[0, :] = 0  # void row
    pred = np.zeros_like(gt)
    pred[:, 1:4] = 10  # thing 0: cols 1..3
    pred[:, 4:] = 11  # stuff 7: cols 4..5
    pred[0, 0] = 12  # on void: ignored
    psegs = [{"id": 10, "category_id": 0}, {"id": 11, "category_id": 7}, {"id": 12, "category_id": 0}]
    pq = PanopticQuality()
    pq.add(gt2, segs, pred, psegs)
    # thing 0: gt cols 0..2 rows 1..3 (9 px); pred 10 covers rows 0..3 cols 1..3 (12 px, 3 on void)
    # inter = rows 1..3 x cols 1..2 = 6; union = 12 + 9 - 6 - 3 = 12 -> IoU 0.5 -> no match: FP 1, FN 1 -> PQ 0
    # stuff 7: gt cols 3..5 rows 1..3 (9); pred 11 cols 4..5 rows 0..3 (8, 2 on void); inter 6;
    # union = 8 + 9 - 6 - 2 = 9 -> IoU 2/3 -> TP -> PQ 2/3
    r = pq.result([0])
    assert r["things"]["PQ"] == pytest.approx(0.0) and r["stuff"]["PQ"] == pytest.approx(100 * 2 / 3)
    assert r["all"]["PQ"] == pytest.approx(100 * (0 + 2 / 3) / 2)
    assert pq.fp[0] == 1 and pq.fn[0] == 1  # the void segment 12 is not an FP


def test_crowd_is_neither_fn_nor_fp():
    gt = np.zeros((2, 4), np.int64)
    gt[:, :2], gt[:, 2:] = 1, 2
    segs = [{"id": 1, "category_id": 3, "iscrowd": 1}, {"id": 2, "category_id": 3}]
    pred = gt.copy()
    pq = PanopticQuality()
    pq.add(gt, segs, pred, [{"id": 1, "category_id": 3}, {"id": 2, "category_id": 3}])
    assert pq.tp[3] == 1 and pq.fn[3] == 0 and pq.fp[3] == 0


def test_miou_by_hand():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    m = MeanIoU(3)
    m.add(gt, pred)
    # class 0: tp 1, gt 2, pred 2 -> 1/3; class 1: tp 3, gt 3, pred 4 -> 3/4; class 2: tp 1, gt 2, pred 1 -> 1/2
    assert m.result()["mIoU"] == pytest.approx(100 * (1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert m.result()["pixel_accuracy"] == pytest.approx(100 * 5 / 7)


def test_mask_ap_perfect_and_wrong_class():
    pytest.importorskip("pycocotools", reason="pycocotools is a test dependency")
    masks = [np.zeros((20, 20), bool) for _ in range(2)]
    masks[0][2:10, 2:10] = True
    masks[1][12:18, 5:15] = True
    gts = [{"image_id": 1, "category_id": c, "segmentation": rle_encode(m)} for c, m in zip((1, 2), masks)]
    perfect = [dict(g, score=0.9) for g in gts]
    assert mask_ap(gts, perfect, {1: (20, 20)})["AP"] == pytest.approx(100)
    wrong = [dict(g, category_id=3 - g["category_id"], score=0.9) for g in gts]
    assert mask_ap(gts, wrong, {1: (20, 20)})["AP"] == pytest.approx(0)
