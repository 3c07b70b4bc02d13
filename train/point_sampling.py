"""Point sampling of mask logits and targets (PointRend's ``point_sample``), as Mask2Former's losses use it."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(masks: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """masks [N, H, W] (or [N, C, H, W]), points [N, P, 2] normalised (x, y) in [0, 1] -> values [N, P] (or [N, C, P]).

    Bilinear, align_corners=False, zero outside: grid_sample on the grid 2 * points - 1.
    """
    squeeze = masks.dim() == 3
    if squeeze:
        masks = masks[:, None]
    out = F.grid_sample(masks, 2.0 * points[:, :, None, :] - 1.0, mode="bilinear", align_corners=False)[..., 0]
    return out[:, 0] if squeeze else out


def uncertain_points(logits: torch.Tensor, num_points: int, oversample_ratio: float, importance_ratio: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """PointRend importance sampling: [N, P, 2] points, the most uncertain (smallest |logit|) of
    oversample_ratio * P uniform candidates for importance_ratio * P of them, the rest uniform.

    logits: [N, H, W] mask logits of the matched predictions (no gradient flows through the choice)."""
    n = logits.shape[0]
    candidates = torch.rand(n, int(num_points * oversample_ratio), 2, device=logits.device, generator=generator)
    uncertainty = -point_sample(logits.detach(), candidates).abs()
    num_uncertain = int(importance_ratio * num_points)
    idx = uncertainty.topk(num_uncertain, dim=1).indices
    chosen = torch.gather(candidates, 1, idx[..., None].expand(-1, -1, 2))
    uniform = torch.rand(n, num_points - num_uncertain, 2, device=logits.device, generator=generator)
    return torch.cat([chosen, uniform], dim=1)
