"""How deformable attention is computed inside the model and exported (``m2f.plugins.lowering`` picks the flavor):
the reference, the ``portable`` lowering (standard ONNX ops), one ``M2fMSDeformAttn`` node (m2f's plugin, fused
form) or TensorRT's own ``MultiscaleDeformableAttnPlugin_TRT`` (plain form). ``attend`` takes the fused arguments."""
from __future__ import annotations

import torch

from .. import lowering
from .contract import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, TRT_BUILTIN_DOMAIN, TRT_BUILTIN_NAME, \
    FUSED_ATTRIBUTE, trt_builtin_version
from .reference import Shapes, level_shapes, fused_reference, locations_and_weights, reference, shape_tensors

# zero rows and columns around each level's map in the portable lowering: one before, for neighbours at -1, and two
# after, as a coordinate clamped to the map's width (height) reads columns (rows) W and W + 1
PAD_BEFORE, PAD_AFTER = 1, 2


def portable(
    value: torch.Tensor,
    spatial_shapes: Shapes,
    level_start_index: torch.Tensor | None,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The same op from standard ONNX-exportable ops only: gather-based bilinear sampling, no GridSample (which
    TensorRT 10.14/11.1 silently mis-computes for this pattern, NVIDIA/TensorRT #4813). Shapes as ``reference``;
    the model itself exports ``portable_fused``, which takes the pixel decoder's offsets. Exact in float64; in
    float32 it differs from ``reference`` by the grouping of the weight products and the sums."""
    shapes = level_shapes(value, spatial_shapes, sampling_locations)
    widths, heights, starts = _level_sizes(shapes, value.device)
    num_levels, dtype = len(shapes), sampling_locations.dtype
    locations = sampling_locations.permute(3, 0, 1, 2, 4, 5)  # [L, N, Lq, M, P, 2], level first
    per_level = (num_levels, 1, 1, 1, 1)
    x = locations[..., 0] * widths.to(dtype).view(per_level) - 0.5  # grid_sample's pixel (align_corners=False)
    y = locations[..., 1] * heights.to(dtype).view(per_level) - 0.5
    return _sample(value, widths, heights, starts, x, y, attention_weights.permute(3, 0, 1, 2, 4))


def portable_fused(value: torch.Tensor, shapes: list, reference_points: torch.Tensor,
                   sampling_offsets: torch.Tensor, attention_logits: torch.Tensor) -> torch.Tensor:
    """``portable`` from the fused arguments (``attend``): a sample's pixel is reference x size - 0.5 + offset, as
    the offsets are in pixels of their level (the reference divides them by the level's size and grid_sample
    multiplies them back; in float32 the two routes round differently, within the same few ulp). Every
    coordinate op runs on x and y planes [L, N, Lq, M, P]: ONNX Runtime broadcasts slowly over small inner axes."""
    n, lq, m, num_levels, num_points, _ = sampling_offsets.shape
    widths, heights, starts = _level_sizes(shapes, value.device)
    # stacked on axis 0 then transposed: integer Concat on a later axis breaks ONNX Runtime's symbolic shape inference
    size = torch.stack([widths, heights]).t().to(sampling_offsets.dtype).view(num_levels, 1, 1, 2)
    origin = (reference_points.permute(2, 0, 1, 3) * size - 0.5).unsqueeze(-2).unsqueeze(-2)  # [L, N, Lq, 1, 1, 2]
    offsets = sampling_offsets.permute(3, 0, 1, 2, 4, 5)  # [L, N, Lq, M, P, 2]
    attention = attention_logits.softmax(-1).view(n, lq, m, num_levels, num_points).permute(3, 0, 1, 2, 4)
    return _sample(value, widths, heights, starts, offsets[..., 0] + origin[..., 0], offsets[..., 1] + origin[..., 1],
                   attention)


def _level_sizes(shapes: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int32 widths, heights and first positions in value [L] of the levels (the contract's ``shape_tensors``)."""
    spatial, starts = shape_tensors(shapes, device)
    return spatial[:, 1], spatial[:, 0], starts


def _sample(value: torch.Tensor, widths: torch.Tensor, heights: torch.Tensor, starts: torch.Tensor, x: torch.Tensor,
            y: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of value [N, S, M, D] at pixel coordinates x, y [L, N, Lq, M, P] of each level (zeros
    outside its map), weighted by attention [L, N, Lq, M, P] and summed -> [N, Lq, M*D].

    Each level's map is read from a copy with a zero border (PAD_BEFORE rows and columns before, PAD_AFTER after),
    viewed as rows [N*(H+3)*(W+3)*M, D], and the coordinates are clamped to [-1, W] x [-1, H]: a neighbour outside
    the map then reads a zero instead of needing an in-bounds test, and a sample past the border reads zeros only,
    so every weight is plain bilinear x attention and every row index is in its table. The sums are those of the
    reference, whose out-of-map terms are zero either way. Each sample's four neighbours get a row index and a
    weight in [L, N, Lq, M, 4, P]; per level one Gather of [N, Lq, M, 4P] rows and one batched MatMul
    ([.., 1, 4P] x [.., 4P, D]) sum them, straight into the output's [N, Lq, M, D] layout. Indices are int32."""
    n, _, m, d = value.shape
    num_levels, _, lq, _, num_points = x.shape
    dtype = x.dtype
    per_level = (num_levels, 1, 1, 1, 1)
    outside = torch.full((), -1.0, dtype=dtype)  # the border's first column (row): zeros
    x = torch.minimum(torch.maximum(x, outside), widths.to(dtype).view(per_level))
    y = torch.minimum(torch.maximum(y, outside), heights.to(dtype).view(per_level))
    left, top = torch.floor(x), torch.floor(y)
    fx, fy = x - left, y - top
    wx0, wy0, wy1 = 1 - fx, (1 - fy) * attention, fy * attention
    weights = torch.stack([wy0 * wx0, wy0 * fx, wy1 * wx0, wy1 * fx], dim=-2)  # [L, N, Lq, M, 4, P]
    padded_w, padded_h = widths + (PAD_BEFORE + PAD_AFTER), heights + (PAD_BEFORE + PAD_AFTER)
    # row of each neighbour in its level's padded table viewed as [N*(H+3)*(W+3)*M, D]:
    # ((n*(H+3) + y+1)*(W+3) + x+1)*M + m; the small operands are cast to int32 explicitly (traced sizes are int64
    # and would promote every index)
    base = (torch.arange(n, dtype=torch.int32).view(1, n, 1, 1, 1) * (padded_h * padded_w * m).view(per_level)
            + torch.arange(m, dtype=torch.int32).view(1, 1, 1, m, 1)
            + (PAD_BEFORE * (padded_w + 1) * m).view(per_level)).to(torch.int32)
    upper_left = (top.to(torch.int32) * padded_w.view(per_level) + left.to(torch.int32)) * m + base  # [L, N, Lq, M, P]
    # the four neighbours stacked like the weights: a broadcast over the small [4, P] inner axes runs 3x slower in
    # ONNX Runtime than adding a per-level step to each whole plane
    rows = torch.stack([upper_left, upper_left + m, upper_left + (padded_w * m).view(per_level),
                        upper_left + ((padded_w + 1) * m).view(per_level)], dim=-2)  # [L, N, Lq, M, 4, P]
    out = None
    for level in range(num_levels):
        h, w, first = heights[level].long(), widths[level].long(), starts[level].long()  # Slice takes one index type
        level_map = value[:, first:first + h * w].reshape(n, h, w, m * d)
        border = (0, 0, PAD_BEFORE, PAD_AFTER, PAD_BEFORE, PAD_AFTER)  # [N, H, W, M*D]: W, then H
        table = torch.nn.functional.pad(level_map, border).reshape(-1, d)
        picked = table[rows[level].reshape(n, lq, m, 4 * num_points)]  # [N, Lq, M, 4P, D]
        term = torch.matmul(weights[level].reshape(n, lq, m, 1, 4 * num_points), picked)  # [N, Lq, M, 1, D]
        out = term if out is None else out + term
    return out.reshape(n, lq, m * d)


class _PluginNode(torch.autograd.Function):
    """``M2fMSDeformAttn`` (fused form) when traced for ONNX; the fused reference when run."""

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, reference_points, sampling_offsets, attention_logits,
                sizes):
        shapes = [tuple(row) for row in spatial_shapes.tolist()]
        return fused_reference(value, shapes, None, reference_points, sampling_offsets, attention_logits)

    @staticmethod
    def symbolic(g, value, spatial_shapes, level_start_index, reference_points, sampling_offsets, attention_logits,
                 sizes):
        out = g.op(f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}", value, spatial_shapes, level_start_index, reference_points,
                   sampling_offsets, attention_logits, plugin_version_s=PLUGIN_VERSION,
                   plugin_namespace_s=PLUGIN_NAMESPACE, **{f"{FUSED_ATTRIBUTE}_i": 1})
        out.setType(lowering.node_output_type([value, sampling_offsets, reference_points], sizes, rank=3))
        return out


class _TensorRTBuiltinNode(torch.autograd.Function):
    """TensorRT's ``MultiscaleDeformableAttnPlugin_TRT`` when traced (output [N, Lq, M, D]); the reference when run."""

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights, version, sizes):
        shapes = [tuple(row) for row in spatial_shapes.tolist()]
        out = reference(value, shapes, None, sampling_locations, attention_weights)
        return out.view(value.shape[0], sampling_locations.shape[1], value.shape[2], value.shape[3])

    @staticmethod
    def symbolic(g, value, spatial_shapes, level_start_index, sampling_locations, attention_weights, version, sizes):
        out = g.op(f"{TRT_BUILTIN_DOMAIN}::{TRT_BUILTIN_NAME}", value, spatial_shapes, level_start_index,
                   sampling_locations, attention_weights, plugin_version_s=version, plugin_namespace_s="")
        out.setType(lowering.node_output_type([value, sampling_locations, attention_weights], sizes, rank=4))
        return out


def attend(value: torch.Tensor, shapes: list, reference_points: torch.Tensor, sampling_offsets: torch.Tensor,
           attention_logits: torch.Tensor) -> torch.Tensor:
    """The op from the fused arguments (module docstring), lowered as ``m2f.plugins.lowering`` says; [N, Lq, M*D]."""
    flavor = lowering.current()
    if flavor in ("reference", "portable") and torch.is_autocast_enabled(value.device.type):
        # fp16 autocast (the fp16 estimate): the coordinate math and the sampling are an fp32 island, as in m2f's
        # fp16 ONNX (m2f.calib.fp16.required_island)
        with torch.autocast(value.device.type, enabled=False):
            out = attend(value.float(), shapes, reference_points.float(), sampling_offsets.float(),
                         attention_logits.float())
        return out.to(value.dtype)
    if flavor == "m2f":
        spatial, starts = shape_tensors(shapes, value.device)
        n, _, m, d = value.shape
        return _PluginNode.apply(value, spatial, starts, reference_points, sampling_offsets, attention_logits,
                                 lowering.traced_sizes(n, reference_points.shape[1], m * d))  # [N, Lq, M*D]
    if flavor == "portable":
        return portable_fused(value, shapes, reference_points, sampling_offsets, attention_logits)
    locations, weights = locations_and_weights(shapes, reference_points, sampling_offsets, attention_logits)
    if flavor == "trt-builtin":
        spatial, starts = shape_tensors(shapes, value.device)
        out = _TensorRTBuiltinNode.apply(value, spatial, starts, locations, weights,
                                         trt_builtin_version(lowering.option("tensorrt_version")),
                                         lowering.traced_sizes(value.shape[0], locations.shape[1], *value.shape[2:]))
        return out.flatten(2)
    return reference(value, shapes, None, locations, weights)
