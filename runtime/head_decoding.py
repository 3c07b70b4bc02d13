"""Host step for the in-graph heads (``m2f.export.heads``): per image, numpy only.

Each function takes one image's head outputs (batch index already taken), the valid (h, w) of the resized image in
the canvas and the output (original) size, and returns what the reference post-processing returns.
"""
from __future__ import annotations

import numpy as np

from .resize import resize_bilinear, resize_nearest


def _to_output(label_map: np.ndarray, valid: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    cropped = label_map[..., : valid[0], : valid[1]]
    if cropped.shape[-2:] == tuple(out_size):
        return cropped
    return resize_nearest(cropped, *out_size)


def semantic(sem_seg: np.ndarray, valid, out_size) -> np.ndarray:
    """sem_seg int32 [H, W] -> class map int32 [H0, W0]."""
    return _to_output(sem_seg, valid, out_size)


def panoptic(outputs: dict[str, np.ndarray], overlap_threshold: float, thing_ids, valid, out_size):
    """pan_* outputs of one image -> (int32 [H0, W0] segment ids, segments) as the reference panoptic_inference:
    kept queries in query order, overlap test on the in-graph areas, stuff classes merged."""
    ids, conf = outputs["pan_ids"], outputs["pan_conf"]
    things = set(int(t) for t in thing_ids)
    seg = np.zeros(ids.shape, np.int32)
    segments: list[dict] = []
    stuff: dict[int, int] = {}
    for q in np.flatnonzero(outputs["pan_keep"]):
        area, orig, both = (int(outputs[k][q]) for k in ("pan_area", "pan_orig_area", "pan_mask_area"))
        if area == 0 or orig == 0 or both == 0 or area / orig < overlap_threshold:
            continue
        label = int(outputs["pan_labels"][q])
        mask = (ids == q) & conf
        if label not in things and label in stuff:
            seg[mask] = stuff[label]
            continue
        new_id = len(segments) + 1
        if label not in things:
            stuff[label] = new_id
        seg[mask] = new_id
        segments.append({"id": new_id, "isthing": label in things, "category_id": label})
    return _to_output(seg, valid, out_size), segments


def instance(outputs: dict[str, np.ndarray], panoptic_on: bool, thing_ids, valid, out_size) -> dict:
    """inst_* outputs of one image -> {"scores", "labels", "query_ids", "masks" bool [n, H0, W0]}; with panoptic on,
    non-thing labels are dropped after the top-k, as the reference."""
    keep = np.ones(len(outputs["inst_labels"]), bool)
    if panoptic_on:
        keep = np.isin(outputs["inst_labels"], np.asarray(list(thing_ids), dtype=np.int64))
    logits = outputs["inst_masks"][keep]
    canvas = (logits.shape[-2] * 4, logits.shape[-1] * 4)
    up = resize_bilinear(logits, *canvas)[..., : valid[0], : valid[1]]
    if up.shape[-2:] != tuple(out_size):
        up = resize_bilinear(up, *out_size)
    return {"scores": outputs["inst_scores"][keep], "labels": outputs["inst_labels"][keep],
            "query_ids": outputs["inst_query"][keep], "masks": up > 0}
