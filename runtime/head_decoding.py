"""Host step for the in-graph heads (``m2f.export.heads``): per image, numpy only.

Each function takes one image's head outputs (batch index already taken), the valid (h, w) of the resized image in
the canvas and the output (original) size, and returns what the reference post-processing returns.
"""
from __future__ import annotations

import numpy as np

from .postprocess import assign_segments, masks_at_output
from .resize import resize_nearest


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
    keep = np.flatnonzero(outputs["pan_keep"])
    segment_of, segments = assign_segments(
        outputs["pan_labels"][keep], outputs["pan_area"][keep], outputs["pan_orig_area"][keep],
        outputs["pan_mask_area"][keep], overlap_threshold, thing_ids)
    table = np.zeros(len(outputs["pan_keep"]), np.int32)  # per query: its segment id (0 = none)
    table[keep] = segment_of
    seg = np.where(outputs["pan_conf"], table[outputs["pan_ids"]], 0).astype(np.int32)
    return _to_output(seg, valid, out_size), segments


def instance(outputs: dict[str, np.ndarray], panoptic_on: bool, thing_ids, valid, out_size) -> dict:
    """inst_* outputs of one image -> {"scores", "labels", "query_ids", "masks" bool [n, H0, W0]}; with panoptic on,
    non-thing labels are dropped after the top-k, as the reference."""
    keep = np.ones(len(outputs["inst_labels"]), bool)
    if panoptic_on:
        keep = np.isin(outputs["inst_labels"], np.asarray(list(thing_ids), dtype=np.int64))
    up = masks_at_output(outputs["inst_masks"][keep], valid, out_size)
    return {"scores": outputs["inst_scores"][keep], "labels": outputs["inst_labels"][keep],
            "query_ids": outputs["inst_query"][keep], "masks": up > 0}
