"""How deformable attention is computed inside the model and exported (``m2f.plugins.lowering`` picks the flavor):
the reference, the ``portable`` lowering (standard ONNX ops), one ``M2fMSDeformAttn`` node (m2f's plugin, fused
form) or TensorRT's own ``MultiscaleDeformableAttnPlugin_TRT`` (plain form). ``attend`` takes the fused arguments."""
from __future__ import annotations

import torch

from .. import lowering
from .contract import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, TRT_BUILTIN_DOMAIN, TRT_BUILTIN_NAME, \
    FUSED_ATTRIBUTE, trt_builtin_version
from .reference import Shapes, exclusive_sums, fused_reference, level_shapes, locations_and_weights, reference, \
    shape_tensors

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
    per_level = _PerLevel(*sampling_locations.shape[2:5])
    dtype = sampling_locations.dtype
    x = sampling_locations[..., 0] * per_level(widths.to(dtype)) - 0.5  # grid_sample's pixel (align_corners=False)
    y = sampling_locations[..., 1] * per_level(heights.to(dtype)) - 0.5
    return _sample(value, widths, heights, starts, x, y, attention_weights)


def portable_fused(value: torch.Tensor, shapes: list, reference_points: torch.Tensor,
                   sampling_offsets: torch.Tensor, attention_logits: torch.Tensor) -> torch.Tensor:
    """``portable`` from the fused arguments (``attend``): a sample's pixel is reference x size - 0.5 + offset, as
    the offsets are in pixels of their level (the reference divides them by the level's size and grid_sample
    multiplies them back; in float32 the two routes round differently, within the same few ulp). The coordinates
    stay in the Linear layers' own layout [N, Lq, M, L, P]: no transposes."""
    n, lq, m, num_levels, num_points, _ = sampling_offsets.shape
    widths, heights, starts = _level_sizes(shapes, value.device)
    # stacked on axis 0 then transposed: integer Concat on a later axis breaks ONNX Runtime's symbolic shape inference
    size = torch.stack([widths, heights]).t().to(sampling_offsets.dtype)  # [L, 2]
    origin = (reference_points * size - 0.5).unsqueeze(2).unsqueeze(-2)  # [N, Lq, 1, L, 1, 2]
    attention = attention_logits.softmax(-1).view(n, lq, m, num_levels, num_points)
    return _sample(value, widths, heights, starts, sampling_offsets[..., 0] + origin[..., 0],
                   sampling_offsets[..., 1] + origin[..., 1], attention)


def _level_sizes(shapes: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int32 widths, heights and first positions in value [L] of the levels (the contract's ``shape_tensors``)."""
    spatial, starts = shape_tensors(shapes, device)
    return spatial[:, 1], spatial[:, 0], starts


class _PerLevel:
    """A per-level value [L] as an [M, L, P] tensor, so that it meets the [N, Lq, M, L, P] planes as whole rows:
    ONNX Runtime broadcasts a [L, 1] operand over small inner axes several times slower."""

    def __init__(self, heads: int, levels: int, points: int):
        self.shape = (heads, levels, points)

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        return values.view(1, -1, 1).expand(self.shape)


def _sample(value: torch.Tensor, widths: torch.Tensor, heights: torch.Tensor, starts: torch.Tensor, x: torch.Tensor,
            y: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of value [N, S, M, D] at pixel coordinates x, y [N, Lq, M, L, P] of each level (zeros
    outside its map), weighted by attention [N, Lq, M, L, P] and summed -> [N, Lq, M*D].

    Every level's map gets a zero border (PAD_BEFORE rows and columns before, PAD_AFTER after) and the coordinates
    are clamped to [-1, W] x [-1, H]: a neighbour outside the map then reads a zero instead of needing an in-bounds
    test, and a sample past the border reads zeros only, so every weight is plain bilinear x attention. The bordered
    maps of all levels form one table of rows [R, D] (R = N x sum((H+3)(W+3)) x M), and a pair table [R, 2D] puts
    each row next to its right-hand neighbour's (M rows on). One int32 Gather then picks the top and the bottom
    pair of every sample, [N, Lq, M, L, P, 2, 2D], i.e. its four neighbours, and one batched MatMul
    ([.., 1, 4LP] x [.., 4LP, D]) sums all of them straight into the output's [N, Lq, M, D] layout. The sums are
    those of the reference, whose out-of-map terms are zero either way."""
    n, _, m, d = value.shape
    _, lq, _, num_levels, num_points = x.shape
    dtype = x.dtype
    per_level = _PerLevel(m, num_levels, num_points)
    outside = torch.full((), -1.0, dtype=dtype)  # the border's first column (row): zeros
    x = torch.minimum(torch.maximum(x, outside), per_level(widths.to(dtype)))
    y = torch.minimum(torch.maximum(y, outside), per_level(heights.to(dtype)))
    left, top = torch.floor(x), torch.floor(y)
    fx, fy = x - left, y - top
    wx0, wy0, wy1 = 1 - fx, (1 - fy) * attention, fy * attention
    # top-left, top-right, bottom-left, bottom-right: the order of the picked pairs' rows
    weights = torch.stack([wy0 * wx0, wy0 * fx, wy1 * wx0, wy1 * fx], dim=-1)  # [N, Lq, M, L, P, 4]
    padded_w, padded_h = widths + (PAD_BEFORE + PAD_AFTER), heights + (PAD_BEFORE + PAD_AFTER)
    cells = padded_w * padded_h
    table_starts = exclusive_sums(cells)
    cells_per_image = table_starts[-1] + cells[-1]
    # row of a sample's top-left neighbour: ((n*C + start_l + (y+1)*(W+3) + x+1)*M + m, C = cells of one image;
    # the small operands are cast to int32 explicitly (traced sizes are int64 and would promote every index)
    base = (torch.arange(n, dtype=torch.int32).view(n, 1, 1, 1, 1) * (cells_per_image * m)
            + torch.arange(m, dtype=torch.int32).view(m, 1, 1)
            + per_level((table_starts + PAD_BEFORE * (padded_w + 1)) * m)).to(torch.int32)
    top_left = (top.to(torch.int32) * per_level(padded_w) + left.to(torch.int32)) * m + base  # [N, Lq, M, L, P]
    rows = torch.stack([top_left, top_left + per_level(padded_w * m)], dim=-1)  # [N, Lq, M, L, P, 2]
    maps = []
    for level in range(num_levels):
        h, w, first = heights[level].long(), widths[level].long(), starts[level].long()  # Slice takes one index type
        level_map = value[:, first:first + h * w].reshape(n, h, w, m * d)
        border = (0, 0, PAD_BEFORE, PAD_AFTER, PAD_BEFORE, PAD_AFTER)  # [N, H, W, M*D]: W, then H
        maps.append(torch.nn.functional.pad(level_map, border).reshape(n, -1, m * d))
    table = torch.cat(maps, 1).reshape(-1, d)  # [R, D], image by image, level by level
    # a clamped x reads at most column W + 1 of the W + 3, so the wrapped last M rows are never picked
    pairs = torch.cat([table, torch.cat([table[m:], table[:m]])], 1)  # [R, 2D]
    picked = pairs[rows]  # [N, Lq, M, L, P, 2, 2D]
    samples = 4 * num_levels * num_points
    out = torch.matmul(weights.reshape(n, lq, m, 1, samples), picked.reshape(n, lq, m, samples, d))  # [N, Lq, M, 1, D]
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
