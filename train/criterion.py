"""Mask2Former's SetCriterion (docs/model.md §3): class cross-entropy with a down-weighted no-object class, and point-
sampled mask BCE + dice on matched pairs with PointRend importance sampling, on every prediction set (deep
supervision), each set with its own Hungarian matching.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .matcher import MatcherWeights, hungarian_match
from .point_sampling import point_sample, uncertain_points


@dataclass
class LossConfig:
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    matcher: MatcherWeights = field(default_factory=MatcherWeights)


def class_loss(class_logits: torch.Tensor, matches, targets: list[dict], no_object_weight: float) -> torch.Tensor:
    """Weighted mean cross-entropy over all queries: matched queries take their target's class, the others the
    no-object class K, whose weight is ``no_object_weight`` (1 for real classes)."""
    n, q, k1 = class_logits.shape
    target_classes = torch.full((n, q), k1 - 1, dtype=torch.int64, device=class_logits.device)
    for i, (src, tgt) in enumerate(matches):
        target_classes[i, src] = targets[i]["labels"][tgt]
    weight = torch.ones(k1, device=class_logits.device)
    weight[-1] = no_object_weight
    return F.cross_entropy(class_logits.float().transpose(1, 2), target_classes, weight)


def mask_losses(point_logits: torch.Tensor, point_labels: torch.Tensor, num_masks: float):
    """point_logits / point_labels [M, P] -> (sigmoid BCE: mean over points, summed over masks / num_masks;
    dice: sum over masks of 1 - (2 sum(sigma t) + 1) / (sum sigma + sum t + 1), / num_masks)."""
    bce = F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="none").mean(1).sum() / num_masks
    probs = point_logits.sigmoid()
    numerator = 2 * (probs * point_labels).sum(-1)
    denominator = probs.sum(-1) + point_labels.sum(-1)
    dice = (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks
    return bce, dice


class SetCriterion:
    def __init__(self, config: LossConfig | None = None):
        self.cfg = config or LossConfig()

    def _set_losses(self, class_logits, mask_logits, targets, num_masks, generator):
        cfg = self.cfg
        matches = hungarian_match(class_logits, mask_logits, targets, cfg.matcher, generator)
        loss_ce = class_loss(class_logits, matches, targets, cfg.no_object_weight)
        src = torch.cat([mask_logits[i, s] for i, (s, _) in enumerate(matches)])
        tgt = torch.cat([targets[i]["masks"][t].float() for i, (_, t) in enumerate(matches)])
        if src.shape[0] == 0:  # no ground truth in the batch: mask losses are zero but keep the graph
            zero = mask_logits.sum() * 0
            return loss_ce, zero, zero
        points = uncertain_points(src, cfg.num_points, cfg.oversample_ratio, cfg.importance_sample_ratio, generator)
        loss_mask, loss_dice = mask_losses(point_sample(src, points), point_sample(tgt, points), num_masks)
        return loss_ce, loss_mask, loss_dice

    def __call__(self, outputs: dict, targets: list[dict], generator: torch.Generator | None = None) -> dict:
        """outputs: the model's dict with return_aux=True (pred_logits, pred_masks, aux_outputs); targets: per image
        {"labels" [G] int64 contiguous ids, "masks" [G, H, W] 0/1 at the padded canvas resolution (points are
        normalised to the canvas, so predictions at 1/4 and targets at full size line up)}. Returns every loss
        (suffix _i for aux set i) and "loss", the weighted total."""
        num_masks = max(float(sum(len(t["labels"]) for t in targets)), 1.0)
        sets = [(outputs["pred_logits"], outputs["pred_masks"], "")]
        sets += [(a["pred_logits"], a["pred_masks"], f"_{i}") for i, a in enumerate(outputs.get("aux_outputs", []))]
        losses, total = {}, 0.0
        for logits, masks, suffix in sets:
            ce, bce, dice = self._set_losses(logits, masks, targets, num_masks, generator)
            losses.update({f"loss_ce{suffix}": ce, f"loss_mask{suffix}": bce, f"loss_dice{suffix}": dice})
            total = total + self.cfg.class_weight * ce + self.cfg.mask_weight * bce + self.cfg.dice_weight * dice
        losses["loss"] = total
        return losses
