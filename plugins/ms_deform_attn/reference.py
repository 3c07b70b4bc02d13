"""Multi-scale deformable attention in PyTorch: the reference (exact in float64; in float32 the same arithmetic as
Mask2Former's CPU path), the fused form's reference, and the contract's int32 shape tensors. Shapes and semantics:
``contract``."""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F

from m2f.errors import ArgumentError

Shapes = Union[torch.Tensor, Sequence[Sequence[int]]]


def level_shapes(value: torch.Tensor, spatial_shapes: Shapes, sampling_locations: torch.Tensor) -> list:
    """(H, W) per level, checked against value's length and the sampling levels. From a list they are kept as given
    (ints, or traced sizes during export, when the length check cannot run)."""
    if isinstance(spatial_shapes, torch.Tensor):
        shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    else:
        shapes = [(h, w) for h, w in spatial_shapes]
    s, num_levels = value.shape[1], sampling_locations.shape[3]
    if len(shapes) != num_levels or (not torch.jit.is_tracing() and sum(h * w for h, w in shapes) != s):
        raise ArgumentError(f"spatial_shapes {shapes} do not match value length {s} and {num_levels} sampling levels")
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
    documented in ``contract``.
    """
    n, s, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = level_shapes(value, spatial_shapes, sampling_locations)
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


def fused_reference(
    value: torch.Tensor,
    spatial_shapes: Shapes,
    level_start_index: torch.Tensor | None,
    reference_points: torch.Tensor,
    sampling_offsets: torch.Tensor,
    attention_logits: torch.Tensor,
) -> torch.Tensor:
    """The fused variant's reference: locations and weights as the pixel decoder forms them, then ``reference``."""
    shapes = level_shapes(value, spatial_shapes, sampling_offsets)
    locations, weights = locations_and_weights(shapes, reference_points, sampling_offsets, attention_logits)
    return reference(value, shapes, level_start_index, locations, weights)


def locations_and_weights(shapes: list, reference_points: torch.Tensor, sampling_offsets: torch.Tensor,
                          attention_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain form's sampling_locations [N, Lq, M, L, P, 2] and attention_weights [N, Lq, M, L, P] from the fused
    arguments: offsets divided by (W_l, H_l) of their level, softmax over L * P. The normaliser is built with tensor
    ops from ``shapes`` (ints, or traced sizes during export, which then stay symbolic)."""
    n, lq, m, num_levels, num_points, _ = sampling_offsets.shape
    normalizer = torch.stack([torch.stack([torch.as_tensor(w), torch.as_tensor(h)]) for h, w in shapes])
    normalizer = normalizer.to(device=sampling_offsets.device, dtype=sampling_offsets.dtype)
    locations = reference_points[:, :, None, :, None, :] + sampling_offsets / normalizer[None, None, None, :, None, :]
    weights = attention_logits.softmax(-1).view(n, lq, m, num_levels, num_points)
    return locations, weights


def shape_tensors(shapes: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """int32 spatial_shapes [L, 2] and level_start_index [L] built with tensor ops from (H, W) pairs, so that
    traced sizes stay symbolic; the start index by additions (TensorRT's parser has no int32 CumSum)."""
    spatial = torch.stack([torch.stack([torch.as_tensor(h), torch.as_tensor(w)]) for h, w in shapes])
    spatial = spatial.to(device=device, dtype=torch.int32)
    return spatial, exclusive_sums(spatial[:, 0] * spatial[:, 1])


def exclusive_sums(sizes: torch.Tensor) -> torch.Tensor:
    """[L] -> [L]: where each of L consecutive parts of the given sizes starts, by additions (TensorRT's parser has
    no int32 CumSum), so that traced sizes stay symbolic."""
    starts = [torch.zeros_like(sizes[0])]
    for level in range(sizes.shape[0] - 1):
        starts.append(starts[-1] + sizes[level])
    return torch.stack(starts)
