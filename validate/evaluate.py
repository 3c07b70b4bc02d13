"""Scoring a model on a dataset: PQ, mask AP and mIoU of one backend's predictions against the ground truth.

Backends produce results in different types (the PyTorch reference pipeline's dicts of tensors, the runtime's
``Result``); both are reduced to ``Prediction`` first, so every backend is scored by the same code.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import MeanIoU, PanopticQuality, mask_ap


@dataclass
class Prediction:
    """One image's results at its original size (contiguous class ids)."""

    panoptic: np.ndarray | None = None  # int32 [H, W] segment ids, 0 = void
    segments: list[dict] | None = None  # [{"id", "category_id"}]
    semantic: np.ndarray | None = None  # int [H, W] class ids
    instances: list[tuple[int, float, np.ndarray]] | None = None  # (category_id, score, bool mask [H, W])


def from_runtime(result) -> Prediction:
    """m2f.runtime Result -> Prediction."""
    return Prediction(
        panoptic=result.panoptic, semantic=result.semantic,
        segments=None if result.panoptic is None else [{"id": s.id, "category_id": s.category_id}
                                                        for s in result.segments],
        instances=None if result.instances is None else [(i.category_id, i.score, i.mask) for i in result.instances])


def from_reference(result: dict) -> Prediction:
    """m2f.model.reference_pipeline.predict(...) dict -> Prediction."""
    pred = Prediction()
    if "panoptic_seg" in result:
        seg, segments = result["panoptic_seg"]
        pred.panoptic = seg.numpy()
        pred.segments = [{"id": s["id"], "category_id": s["category_id"]} for s in segments]
    if "sem_seg" in result:
        pred.semantic = result["sem_seg"].argmax(0).numpy()
    if "instances" in result:
        inst = result["instances"]
        pred.instances = [(int(c), float(s), m.numpy()) for c, s, m in
                          zip(inst["labels"], inst["scores"], inst["masks"])]
    return pred


class Evaluator:
    """``add(sample, prediction)`` per image, then ``result()`` -> {"PQ", "PQ_things", "PQ_stuff", "SQ", "RQ",
    "AP", "AP50", "AP75", "mIoU", "images"} in percent; a metric is absent when no prediction carried it."""

    def __init__(self, num_classes: int, thing_ids: list[int]):
        self.thing_ids = list(thing_ids)
        self.pq, self.miou = PanopticQuality(), MeanIoU(num_classes)
        self.gt_instances: list[dict] = []
        self.dt_instances: list[dict] = []
        self.sizes: dict[int, tuple[int, int]] = {}
        self.has = set()

    def add(self, sample, pred: Prediction) -> None:
        from pycocotools import mask as mask_utils

        image_id = len(self.sizes)
        h, w = sample.image.shape[:2]
        self.sizes[image_id] = (h, w)
        gt_ids = np.zeros((h, w), np.int32)
        gt_sem = np.full((h, w), 255, np.int64)
        for k, (mask, label) in enumerate(zip(sample.masks, sample.labels)):
            gt_ids[mask] = k + 1
            gt_sem[mask] = label
        gt_segments = [{"id": k + 1, "category_id": int(c)} for k, c in enumerate(sample.labels)]
        if pred.panoptic is not None:
            self.pq.add(gt_ids, gt_segments, pred.panoptic, pred.segments)
            self.has.add("panoptic")
        if pred.semantic is not None:
            self.miou.add(gt_sem, pred.semantic)
            self.has.add("semantic")
        for mask, label in zip(sample.masks, sample.labels):
            if label in self.thing_ids:
                self.gt_instances.append({"image_id": image_id, "category_id": int(label),
                                          "segmentation": _rle(mask, mask_utils)})
        if pred.instances is not None:
            self.has.add("instance")
            self.dt_instances += [{"image_id": image_id, "category_id": int(c), "score": float(s),
                                   "segmentation": _rle(m, mask_utils)} for c, s, m in pred.instances]

    def result(self) -> dict:
        out: dict = {"images": len(self.sizes)}
        if "panoptic" in self.has:
            pq = self.pq.result(self.thing_ids)
            out.update(PQ=pq["all"]["PQ"], SQ=pq["all"]["SQ"], RQ=pq["all"]["RQ"], PQ_things=pq["things"]["PQ"],
                       PQ_stuff=pq["stuff"]["PQ"])
        if "instance" in self.has:
            out.update(mask_ap(self.gt_instances, self.dt_instances, self.sizes))
        if "semantic" in self.has:
            out["mIoU"] = self.miou.result()["mIoU"]
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def _rle(mask: np.ndarray, mask_utils) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def evaluate(predict, dataset, num_classes: int, thing_ids: list[int], limit: int | None = None,
             progress=lambda done, total: None) -> dict:
    """predict: uint8 RGB image -> Prediction. Scores the first ``limit`` images of ``dataset`` (all by default)."""
    total = len(dataset) if limit is None else min(limit, len(dataset))
    ev = Evaluator(num_classes, thing_ids)
    for i in range(total):
        sample = dataset[i]
        ev.add(sample, predict(sample.image))
        progress(i + 1, total)
    return ev.result()


def evaluate_pytorch(model, dataset, limit: int | None = None, **kw) -> dict:
    """The PyTorch reference pipeline (model + reference post-processing) on ``dataset``."""
    from m2f.model.reference_pipeline import predict

    cfg = model.config
    return evaluate(lambda image: from_reference(predict(model, image)), dataset, cfg.num_classes, cfg.thing_ids,
                    limit, **kw)


def evaluate_predictor(predictor, dataset, limit: int | None = None, **kw) -> dict:
    """An m2f.runtime Predictor (ONNX Runtime or TensorRT) on ``dataset``."""
    meta = predictor.meta
    return evaluate(lambda image: from_runtime(predictor.predict(image)), dataset, meta.num_classes,
                    list(meta.thing_ids), limit, **kw)
