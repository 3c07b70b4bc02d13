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

# the portable lowering clamps pixel coordinates to [-1, W] x [-1, H]: a sample's top-left neighbour then lies in a
# grid of (H + 2) x (W + 2) cells starting one row and one column before the map
BORDER = 1
# a cell's four neighbours, (row, column) offsets in the order of their weights: top-left, top-right, bottom-left,
# bottom-right
CORNER_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


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
    stay in the Linear layers' own layout [N, Lq, M, L, P]: no transposes.

    The origin is repeated over the points, [N, Lq, 1, L*P*2], and added to the offsets' [N, Lq, M, L*P*2] rows:
    ONNX Runtime broadcasts over the heads (an outer axis) about 5x faster than an [N, Lq, 1, L, 1, 2] origin over
    the points and coordinates (inner axes). In a static graph the repeated origin is one constant that every
    encoder layer reads (the exporter merges the layers' identical computations)."""
    n, lq, m, num_levels, num_points, _ = sampling_offsets.shape
    widths, heights, starts = _level_sizes(shapes, value.device)
    # stacked on axis 0 then transposed: integer Concat on a later axis breaks ONNX Runtime's symbolic shape inference
    size = torch.stack([widths, heights]).t().to(sampling_offsets.dtype)  # [L, 2]
    origin = (reference_points * size - 0.5).unsqueeze(-2).expand(-1, -1, -1, num_points, -1)  # [N, Lq, L, P, 2]
    pixels = sampling_offsets.reshape(n, lq, m, -1) + origin.reshape(n, lq, 1, -1)  # [N, Lq, M, L*P*2]
    pixels = pixels.view(sampling_offsets.shape)
    attention = attention_logits.softmax(-1).view(n, lq, m, num_levels, num_points)
    return _sample(value, widths, heights, starts, pixels[..., 0], pixels[..., 1], attention)


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

    The coordinates are clamped to [-1, W] x [-1, H], so a sample's top-left neighbour lies in a grid of
    (H + 2) x (W + 2) cells around each level's map, and a sample past the border reads zeros only. One Gather
    builds a quad table [M x N x C, 4D] (C = the cells of all levels of one image): for every cell and head, its
    four neighbours' value rows side by side, a zero row for a neighbour outside the map (``_corner_rows``). A
    second Gather picks one quad per sample, [N, Lq, M, L, P, 4D], and one batched MatMul
    ([.., 1, 4LP] x [.., 4LP, D]) sums all of them straight into the output's [N, Lq, M, D] layout. So every
    weight is plain bilinear x attention, without in-bounds tests, and the sums are those of the reference,
    whose out-of-map terms are zero either way. Quads, not pairs of neighbours (a table of half the size, two
    picks per sample): a Gather's cost per picked row outweighs building the larger table (the R50 graph takes
    0.975x the time in ONNX Runtime with quads, paired)."""
    n, s_len, m, d = value.shape
    _, lq, _, num_levels, num_points = x.shape
    dtype = x.dtype
    per_level = _PerLevel(m, num_levels, num_points)
    outside = torch.full((), -1.0, dtype=dtype)  # the grid's first column (row): zeros
    x = torch.minimum(torch.maximum(x, outside), per_level(widths.to(dtype)))
    y = torch.minimum(torch.maximum(y, outside), per_level(heights.to(dtype)))
    left, top = torch.floor(x), torch.floor(y)
    fx, fy = x - left, y - top
    wx0, wy0, wy1 = 1 - fx, (1 - fy) * attention, fy * attention
    weights = torch.stack([wy0 * wx0, wy0 * fx, wy1 * wx0, wy1 * fx], dim=-1)  # [N, Lq, M, L, P, 4]: CORNER_OFFSETS
    grid_w = widths + 2 * BORDER
    grid_starts = exclusive_sums(grid_w * (heights + 2 * BORDER))
    corner_rows = _corner_rows(widths, heights, starts, n, s_len)  # [N*C, 4]
    cells = corner_rows.shape[0]
    # value rows head-major, then the zero row: [M, N*S + 1, D]; the quad of cell c, head h is row h*N*C + c
    table = torch.nn.functional.pad(value.permute(2, 0, 1, 3).reshape(m, n * s_len, d), (0, 0, 0, 1))
    quads = table[:, corner_rows].reshape(m * cells, 4 * d)
    # a sample's quad: h*N*C + n*C + grid start of its level + (top + 1)*(W + 2) + left + 1; the small operands are
    # cast to int32 explicitly (traced sizes are int64 and would promote every index)
    base = (torch.arange(m, dtype=torch.int32).view(m, 1, 1) * cells
            + torch.arange(n, dtype=torch.int32).view(n, 1, 1, 1, 1) * (cells // n)
            + per_level(grid_starts + BORDER * (grid_w + 1))).to(torch.int32)
    picked = quads[top.to(torch.int32) * per_level(grid_w) + left.to(torch.int32) + base]  # [N, Lq, M, L, P, 4D]
    samples = 4 * num_levels * num_points
    out = torch.matmul(weights.reshape(n, lq, m, 1, samples), picked.reshape(n, lq, m, samples, d))  # [N, Lq, M, 1, D]
    return out.reshape(n, lq, m * d)


def _corner_rows(widths: torch.Tensor, heights: torch.Tensor, starts: torch.Tensor, n: int, s_len) -> torch.Tensor:
    """int32 [N*C, 4]: for every cell of every level's (H + 2) x (W + 2) grid (one row and column before the map,
    one after) of every image, the rows of value's N*S (image-major) that hold its four neighbours in
    ``CORNER_OFFSETS`` order, or N*S (the zero row) for a neighbour outside the map. From the level sizes only: a
    constant in a static graph."""
    dy = torch.tensor([r for r, _ in CORNER_OFFSETS], dtype=torch.int32)
    dx = torch.tensor([c for _, c in CORNER_OFFSETS], dtype=torch.int32)
    levels = []
    for level in range(widths.shape[0]):
        h, w = heights[level], widths[level]
        row = torch.arange(h + 2 * BORDER, dtype=torch.int32).view(-1, 1, 1) - BORDER + dy  # [H+2, 1, 4]
        col = torch.arange(w + 2 * BORDER, dtype=torch.int32).view(1, -1, 1) - BORDER + dx  # [1, W+2, 4]
        inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
        levels.append(torch.where(inside, starts[level] + row * w + col, -1).reshape(-1, 4))
    cells = torch.cat(levels)  # [C, 4]: this image's rows, -1 outside
    images = torch.arange(n, dtype=torch.int32).view(n, 1, 1) * s_len
    zero_row = torch.full((), n * s_len, dtype=torch.int32)
    return torch.where(cells >= 0, cells + images, zero_row).reshape(-1, 4).to(torch.int32)


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
