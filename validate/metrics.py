"""Task metrics: panoptic quality (panopticapi's definitions), mIoU, and mask AP through pycocotools (numpy).

PQ follows panopticapi (Kirillov et al.): per category, a predicted and a ground-truth segment match when their IoU
exceeds 0.5, where the union leaves out the part of the prediction that falls on void (gt id 0); unmatched
ground truth counts as FN unless crowd; an unmatched prediction counts as FP unless more than half of it lies on void
or on a crowd region of its category. PQ = sum IoU(TP) / (TP + FP/2 + FN/2), averaged over the categories that occur;
SQ and RQ likewise; reported for all, things and stuff, in percent.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

OFFSET = 1 << 32  # pair (gt id, pred id) -> one int64 key


@dataclass
class PanopticQuality:
    """Accumulates images; ``result(things)`` -> PQ/SQ/RQ in percent for all, things and stuff."""

    iou: dict = field(default_factory=lambda: defaultdict(float))
    tp: dict = field(default_factory=lambda: defaultdict(int))
    fp: dict = field(default_factory=lambda: defaultdict(int))
    fn: dict = field(default_factory=lambda: defaultdict(int))

    def add(self, gt: np.ndarray, gt_segments: list[dict], pred: np.ndarray, pred_segments: list[dict]) -> None:
        """gt/pred: int segment-id maps [H, W] (0 = void / none); segments: {"id", "category_id", ["iscrowd"]}."""
        gt_info = {s["id"]: s for s in gt_segments}
        pred_info = {s["id"]: s for s in pred_segments}
        keys, counts = np.unique(gt.astype(np.int64) * OFFSET + pred.astype(np.int64), return_counts=True)
        overlap = dict(zip(keys.tolist(), counts.tolist()))
        gt_area = defaultdict(int)
        pred_area = defaultdict(int)
        for key, n in overlap.items():
            gt_area[key // OFFSET] += n
            pred_area[key % OFFSET] += n
        matched_gt, matched_pred = set(), set()
        crowd_by_cat = {s["category_id"]: i for i, s in gt_info.items() if s.get("iscrowd")}
        for key, inter in overlap.items():
            g, p = key // OFFSET, key % OFFSET
            if g not in gt_info or p not in pred_info or gt_info[g].get("iscrowd"):
                continue
            if gt_info[g]["category_id"] != pred_info[p]["category_id"]:
                continue
            union = pred_area[p] + gt_area[g] - inter - overlap.get(p, 0)  # key of (gt void 0, pred p) is p
            iou = inter / union
            if iou > 0.5:
                cat = gt_info[g]["category_id"]
                self.tp[cat] += 1
                self.iou[cat] += iou
                matched_gt.add(g)
                matched_pred.add(p)
        for g, s in gt_info.items():
            if g not in matched_gt and not s.get("iscrowd"):
                self.fn[s["category_id"]] += 1
        for p, s in pred_info.items():
            if p in matched_pred or pred_area[p] == 0:
                continue
            on_void = overlap.get(p, 0)  # gt id 0
            crowd = crowd_by_cat.get(s["category_id"])
            on_crowd = overlap.get(crowd * OFFSET + p, 0) if crowd is not None else 0
            if (on_void + on_crowd) / pred_area[p] > 0.5:
                continue
            self.fp[s["category_id"]] += 1

    def result(self, thing_ids) -> dict[str, dict[str, float]]:
        things = set(thing_ids)
        cats = set(self.tp) | set(self.fp) | set(self.fn)
        out = {}
        for name, selected in (("all", cats), ("things", cats & things), ("stuff", cats - things)):
            pq = sq = rq = 0.0
            for c in selected:
                tp, fp, fn = self.tp[c], self.fp[c], self.fn[c]
                pq += self.iou[c] / (tp + 0.5 * fp + 0.5 * fn)
                sq += self.iou[c] / tp if tp else 0.0
                rq += tp / (tp + 0.5 * fp + 0.5 * fn)
            n = max(len(selected), 1)
            out[name] = {"PQ": 100 * pq / n, "SQ": 100 * sq / n, "RQ": 100 * rq / n, "n": len(selected)}
        return out


@dataclass
class MeanIoU:
    """Accumulates a confusion matrix over pixels; labels equal to ``ignore`` are skipped."""

    num_classes: int
    ignore: int = 255
    confusion: np.ndarray = None

    def __post_init__(self):
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        keep = gt != self.ignore
        idx = gt[keep].astype(np.int64) * self.num_classes + pred[keep].astype(np.int64)
        self.confusion += np.bincount(idx, minlength=self.num_classes ** 2).reshape(self.num_classes, -1)

    def result(self) -> dict[str, float]:
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        present = union > 0
        iou = np.where(present, tp / np.maximum(union, 1), np.nan)
        return {"mIoU": float(100 * np.nanmean(iou)) if present.any() else 0.0,
                "pixel_accuracy": float(100 * tp.sum() / max(self.confusion.sum(), 1))}


def mask_ap(gt_instances: list[dict], predictions: list[dict], image_sizes: dict) -> dict[str, float]:
    """COCO mask AP with pycocotools. gt_instances: {"image_id", "category_id", "segmentation" (RLE), ["iscrowd"]};
    predictions: COCO results ({"image_id", "category_id", "segmentation", "score"}); image_sizes: id -> (h, w)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    categories = sorted({g["category_id"] for g in gt_instances} | {p["category_id"] for p in predictions})
    dataset = {"images": [{"id": i, "height": h, "width": w} for i, (h, w) in image_sizes.items()],
               "categories": [{"id": c} for c in categories],
               "annotations": [dict(g, id=k + 1, area=float(_rle_area(g["segmentation"])), iscrowd=g.get("iscrowd", 0),
                                    bbox=[0, 0, 0, 0]) for k, g in enumerate(gt_instances)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        if not predictions:
            return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
        dt = gt.loadRes([dict(p) for p in predictions])
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"AP": 100 * float(ev.stats[0]), "AP50": 100 * float(ev.stats[1]), "AP75": 100 * float(ev.stats[2])}


def _rle_area(rle: dict) -> int:
    from pycocotools import mask as mask_utils

    return int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()
                                if isinstance(rle["counts"], str) else rle["counts"]}))
