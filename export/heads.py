"""Optional post-processing heads computed inside the graph, so the host receives small tensors.

Heads work at the canvas resolution, restricted to each image's valid region; the host step
(``m2f.runtime.head_decoding``) crops to the valid size and resizes label maps to the original size (nearest).
At scale 1 (original size = network input size) head + host step equal the reference post-processing; otherwise
they differ only by resampling label maps instead of scores (see README).

semantic -> sem_seg        int32 [N, H, W]   argmax over K of softmax(cls)[:-1] x sigmoid(mask)
instance -> inst_scores    float32 [N, k]    class prob x mask score (mean sigmoid inside mask > 0, valid region)
            inst_labels    int32 [N, k]      class, top-k over Q x K (sorted by class prob), k = min(topk, Q*K)
            inst_query     int32 [N, k]      query of each instance
            inst_masks     float32 [N, k, H/4, W/4]  that query's mask logits (host: upsample x4, crop, > 0)
panoptic -> pan_ids        int32 [N, H, W]   kept query with the highest score x sigmoid(mask) per pixel
            pan_conf       bool [N, H, W]    that query's sigmoid(mask) >= 0.5 there
            pan_keep       bool [N, Q]       label != no-object and score > object_mask_threshold
            pan_scores     float32 [N, Q], pan_labels int32 [N, Q]
            pan_area, pan_orig_area, pan_mask_area  int32 [N, Q]  pixels in the valid region owned by the query;
                           with its sigmoid >= 0.5; both
The overlap threshold and stuff merging run on the host, in query order, exactly as the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from m2f.model.config import Mask2FormerConfig


def _canvas_masks(masks: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Mask logits [N, Q, H/4, W/4] -> bilinear (align_corners=False) to the canvas [N, Q, H, W]."""
    return F.interpolate(masks, size=(inside.shape[1], inside.shape[2]), mode="bilinear", align_corners=False)


def semantic(logits, masks, inside, cfg):
    probs = F.softmax(logits, dim=-1)[..., :-1]
    scores = torch.einsum("nqc,nqhw->nchw", probs, _canvas_masks(masks, inside).sigmoid())
    return (scores.argmax(1).to(torch.int32),)


def instance(logits, masks, inside, cfg):
    # Q and K from the config, not the traced shape: a constant K for TopK (TensorRT wants K < 3840, checkable)
    q, k = cfg.num_queries, cfg.num_classes
    probs = F.softmax(logits, dim=-1)[..., :-1].flatten(1)  # [N, Q*K]
    scores, idx = probs.topk(min(cfg.test_topk_per_image, q * k), dim=1)
    query = torch.div(idx, k, rounding_mode="floor")
    labels = idx - query * k
    picked = torch.gather(masks, 1, query[:, :, None, None].expand(-1, -1, masks.shape[2], masks.shape[3]))
    up = _canvas_masks(picked, inside)
    binary = (up > 0).to(up.dtype) * inside[:, None].to(up.dtype)
    mask_score = (up.sigmoid() * binary).flatten(2).sum(-1) / (binary.flatten(2).sum(-1) + 1e-6)
    return scores * mask_score, labels.to(torch.int32), query.to(torch.int32), picked


def panoptic(logits, masks, inside, cfg):
    n, q, _ = logits.shape
    scores, labels = F.softmax(logits, dim=-1).max(-1)
    keep = (labels != cfg.num_classes) & (scores > cfg.object_mask_threshold)
    probs = _canvas_masks(masks, inside).sigmoid()
    weighted = torch.where(keep[:, :, None, None], scores[:, :, None, None] * probs, torch.full_like(probs, -1.0))
    ids = weighted.argmax(1)  # [N, H, W]; first index on ties, as the reference over kept queries
    owner_conf = torch.gather(probs, 1, ids[:, None])[:, 0] >= 0.5
    inside_q = inside[:, None]
    owned = (ids[:, None] == torch.arange(q, device=ids.device)[None, :, None, None]) & inside_q
    confident = (probs >= 0.5) & inside_q
    area = owned.flatten(2).sum(-1)
    orig_area = confident.flatten(2).sum(-1)
    mask_area = (owned & owner_conf[:, None]).flatten(2).sum(-1)
    i32 = torch.int32
    return (ids.to(i32), owner_conf, keep, scores, labels.to(i32), area.to(i32), orig_area.to(i32),
            mask_area.to(i32))


def run(head: str, logits: torch.Tensor, masks: torch.Tensor, inside: torch.Tensor, cfg: Mask2FormerConfig):
    """The named head's outputs (in the order of m2f.contract.output_names(head)) from raw outputs and the valid
    region [N, H, W]."""
    return {"semantic": semantic, "instance": instance, "panoptic": panoptic}[head](logits, masks, inside, cfg)
