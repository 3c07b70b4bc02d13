"""Multi-scale deformable attention (Deformable DETR), the core of Mask2Former's pixel decoder.

Contract (the signature of the Deformable-DETR CUDA op and of TensorRT's ``MultiscaleDeformableAttnPlugin_TRT``):

    value               float [N, S, M, D]      S = sum over levels of H_l * W_l, M heads, D channels per head
    spatial_shapes      int32 [L, 2]            (H_l, W_l) per level, in the order the levels are flattened in S
    level_start_index   int32 [L]               exclusive cumulative sum of H_l * W_l
    sampling_locations  float [N, Lq, M, L, P, 2]  normalised (x, y) in [0, 1] (outside is allowed: reads zero)
    attention_weights   float [N, Lq, M, L, P]     already softmax-ed jointly over L * P
    -> output           float [N, Lq, M * D]    heads concatenated, head h = channels h*D .. h*D+D-1

Sampling is bilinear with pixel coordinate = loc * size - 0.5 and zero outside the map, i.e. ``grid_sample`` with
``align_corners=False, padding_mode="zeros"`` on the grid 2 * loc - 1 (reference §1.3).
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F

PLUGIN_NAME = "M2fMSDeformAttn"
PLUGIN_NAMESPACE = "m2f"
PLUGIN_VERSION = "1"

Shapes = Union[torch.Tensor, Sequence[Sequence[int]]]


def _level_shapes(value: torch.Tensor, spatial_shapes: Shapes, sampling_locations: torch.Tensor) -> list:
    """(H, W) per level, checked against value's length and the sampling levels. From a list they are kept as given
    (ints, or traced sizes during export, when the length check cannot run)."""
    if isinstance(spatial_shapes, torch.Tensor):
        shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    else:
        shapes = [(h, w) for h, w in spatial_shapes]
    s, num_levels = value.shape[1], sampling_locations.shape[3]
    if len(shapes) != num_levels or (not torch.jit.is_tracing() and sum(h * w for h, w in shapes) != s):
        raise ValueError(f"spatial_shapes {shapes} do not match value length {s} and {num_levels} sampling levels")
    return shapes


def reference(
    value: torch.Tensor,
    spatial_shapes: Shapes,
    level_start_index: torch.Tensor | None,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The PyTorch reference; exact in float64, and in float32 the same arithmetic as Mask2Former's CPU path.

    ``spatial_shapes`` may be the int tensor of the contract or a list of (H, W) pairs. ``level_start_index`` is
    part of the contract's signature (kernels use it) but implied by the shapes, so it is not read here. Shapes are
    documented in the module docstring.
    """
    n, s, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = _level_shapes(value, spatial_shapes, sampling_locations)
    value_per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        # [N, H*W, M, D] -> [N*M, D, H, W]
        v = value_per_level[level].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    # [N, Lq, M, L, P] -> [N*M, 1, Lq, L*P]
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, num_levels * num_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(n, m * d, lq)
    return out.transpose(1, 2).contiguous()


def portable(
    value: torch.Tensor,
    spatial_shapes: Shapes,
    level_start_index: torch.Tensor | None,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The same op from standard ONNX-exportable ops only: gather-based bilinear sampling, no GridSample (which
    TensorRT 10.14/11.1 silently mis-computes for this pattern, NVIDIA/TensorRT #4813).

    Per level, each sample reads its four neighbours with one row Gather (int32 indices) from value viewed as
    [N*M*H*W, D]; neighbours outside the map get weight 0 (index clamped in range). Exact in float64; in float32 it
    differs from ``reference`` only by summation order. Shapes as ``reference``.
    """
    n, s, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = _level_shapes(value, spatial_shapes, sampling_locations)
    value_per_level = value.split([h * w for h, w in shapes], dim=1)
    # [N, Lq, M, L, P, 2] -> [N, M, Lq*P, L, 2]: heads beside batch, samples flattened
    locations = sampling_locations.permute(0, 2, 1, 4, 3, 5).reshape(n, m, lq * num_points, num_levels, 2)
    sampled = []
    for level, (h, w) in enumerate(shapes):
        v = value_per_level[level].permute(0, 2, 1, 3).reshape(-1, d)  # [N*M*H*W, D]
        x = locations[..., level, 0] * w - 0.5  # [N, M, Lq*P]
        y = locations[..., level, 1] * h - 0.5
        x0, y0 = torch.floor(x), torch.floor(y)
        fx, fy = x - x0, y - y0
        # first row of each (batch, head) block in the flattened value
        base = (torch.arange(n * m, device=value.device, dtype=torch.int32) * (h * w)).view(n, m, 1)
        out = None
        for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                               (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
            xi = xi.clamp(min=0).clamp(max=w - 1).to(torch.int32)
            yi = yi.clamp(min=0).clamp(max=h - 1).to(torch.int32)
            rows = torch.index_select(v, 0, (base + yi * w + xi).reshape(-1)).view(n, m, lq * num_points, d)
            term = rows * (weight * inside.to(weight.dtype)).unsqueeze(-1)
            out = term if out is None else out + term
        sampled.append(out)
    # [N, M, Lq*P, D] per level -> [N, M, Lq, L, P, D]
    stacked = torch.stack(sampled, dim=3).view(n, m, lq, num_points, num_levels, d).transpose(3, 4)
    weights = attention_weights.permute(0, 2, 1, 3, 4).unsqueeze(-1)  # [N, M, Lq, L, P, 1]
    out = (stacked * weights).sum(dim=(3, 4))  # [N, M, Lq, D]
    return out.permute(0, 2, 1, 3).reshape(n, lq, m * d)
