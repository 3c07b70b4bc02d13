"""Hungarian matching of predictions to ground-truth segments (docs/model.md §3, orig HungarianMatcher).

Per image: cost = w_class * (-p(gt class)) + w_mask * BCE cost + w_dice * dice cost, both mask costs on ONE shared set
of uniformly random points, in float32 without autocast, then scipy's linear_sum_assignment.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .point_sampling import point_sample


@dataclass
class MatcherWeights:
    cost_class: float = 2.0  # orig CLASS_WEIGHT; HF's matcher hard-codes 1.0 (a documented HF deviation)
    cost_mask: float = 5.0
    cost_dice: float = 5.0
    num_points: int = 12544


def pairwise_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits [Q, P], targets [G, P] in {0, 1} -> [Q, G]: mean over points of BCE(logit, target)."""
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits [Q, P], targets [G, P] -> [Q, G]: 1 - (2 sum(sigma t) + 1) / (sum sigma + sum t + 1)."""
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def cost_matrix(class_logits: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
                points: torch.Tensor, weights: MatcherWeights) -> torch.Tensor:
    """One image: class_logits [Q, K+1], mask_logits [Q, h, w], labels [G], masks [G, H, W], points [P, 2] -> [Q, G]."""
    probs = class_logits.float().softmax(-1)
    cost_class = -probs[:, labels]
    pred = point_sample(mask_logits.float(), points[None].expand(mask_logits.shape[0], -1, -1))
    tgt = point_sample(masks.float(), points[None].expand(masks.shape[0], -1, -1))
    return (weights.cost_class * cost_class + weights.cost_mask * pairwise_bce(pred, tgt)
            + weights.cost_dice * pairwise_dice(pred, tgt))


@torch.no_grad()
def hungarian_match(class_logits: torch.Tensor, mask_logits: torch.Tensor, targets: list[dict],
                    weights: MatcherWeights | None = None, generator: torch.Generator | None = None):
    """Batch: class_logits [N, Q, K+1], mask_logits [N, Q, h, w]; targets: per image {"labels" [G] int64,
    "masks" [G, H, W] float/bool}. Returns per image (query indices, target indices), int64, sorted by query."""
    from scipy.optimize import linear_sum_assignment

    weights = weights or MatcherWeights()
    result = []
    for i, target in enumerate(targets):
        if len(target["labels"]) == 0:
            empty = torch.empty(0, dtype=torch.int64)
            result.append((empty, empty))
            continue
        points = torch.rand(weights.num_points, 2, device=mask_logits.device, generator=generator)
        cost = cost_matrix(class_logits[i], mask_logits[i], target["labels"], target["masks"], points, weights)
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        result.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return result

