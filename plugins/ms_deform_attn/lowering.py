"""How deformable attention is computed inside the model and exported (``m2f.plugins.lowering`` picks the flavor):
the reference, the ``portable`` lowering (standard ONNX ops), one ``M2fMSDeformAttn`` node (m2f's plugin, fused
form) or TensorRT's own ``MultiscaleDeformableAttnPlugin_TRT`` (plain form). ``attend`` takes the fused arguments."""
from __future__ import annotations

import torch

from .. import lowering
from .contract import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, TRT_BUILTIN_DOMAIN, TRT_BUILTIN_NAME, \
    FUSED_ATTRIBUTE, trt_builtin_version
from .reference import Shapes, level_shapes, fused_reference, locations_and_weights, reference, shape_tensors


def portable(
    value: torch.Tensor,
    spatial_shapes: Shapes,
    level_start_index: torch.Tensor | None,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The same op from standard ONNX-exportable ops only: gather-based bilinear sampling, no GridSample (which
    TensorRT 10.14/11.1 silently mis-computes for this pattern, NVIDIA/TensorRT #4813). Shapes as ``reference``.

    value [N, S, M, D] is read as rows [N*S*M, D] in place (no transpose). For every sample the four neighbours'
    row indices and weights (bilinear x in-bounds x attention) are computed for all levels at once on small
    [N, Lq, M, L, P, 4] tensors; a neighbour outside its map gets weight 0 and any valid row index, so one clamp to
    the table replaces per-corner bounds checks. Then per level one Gather of [N, Lq, M, 4P] rows and one batched
    MatMul ([.., 1, 4P] x [.., 4P, D]) sum them, straight into the output's [N, Lq, M, D] layout: about 40 ONNX
    nodes per call, and no [N, M, Lq, L, P, D] intermediate. Exact in float64; in float32 it differs from
    ``reference`` by the grouping of the weight products and the sums.
    """
    n, s, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = level_shapes(value, spatial_shapes, sampling_locations)
    dtype = sampling_locations.dtype
    widths = torch.stack([torch.as_tensor(w) for _, w in shapes]).to(torch.int32)  # [L]
    heights = torch.stack([torch.as_tensor(h) for h, _ in shapes]).to(torch.int32)
    areas = widths * heights
    starts, start = [], torch.zeros((), dtype=torch.int32)
    for level in range(num_levels):  # a running sum: TensorRT has no integer CumSum
        starts.append(start)
        start = start + areas[level]
    starts = torch.stack(starts)
    # level first, so that each level's share below is one contiguous block
    locations = sampling_locations.permute(3, 0, 1, 2, 4, 5)  # [L, N, Lq, M, P, 2]
    attention = attention_weights.permute(3, 0, 1, 2, 4)  # [L, N, Lq, M, P]
    per_level = (num_levels, 1, 1, 1, 1)
    size = torch.stack([widths, heights]).t().to(dtype).view(num_levels, 1, 1, 1, 1, 2)  # (W, H)
    pixel = locations * size - 0.5
    low = torch.floor(pixel)
    frac = pixel - low
    lx, ly, fx, fy = low[..., 0], low[..., 1], frac[..., 0], frac[..., 1]  # [L, N, Lq, M, P]
    w_l, h_l = widths.to(dtype).view(per_level), heights.to(dtype).view(per_level)
    # weights of the left/right column and of the upper/lower row (with the attention), 0 outside the map
    wx = torch.stack([(1 - fx) * ((lx >= 0) & (lx <= w_l - 1)).to(dtype),
                      fx * ((lx >= -1) & (lx <= w_l - 2)).to(dtype)], -1)
    wy = torch.stack([(1 - fy) * ((ly >= 0) & (ly <= h_l - 1)).to(dtype),
                      fy * ((ly >= -1) & (ly <= h_l - 2)).to(dtype)], -1) * attention.unsqueeze(-1)
    weights = (wy.unsqueeze(-1) * wx.unsqueeze(-2)).flatten(-2)  # [L, N, Lq, M, P, 4]
    # row of each neighbour in value viewed as [N*S*M, D]: (n*S + start + y*W + x) * M + m, clamped into the table
    base = (torch.arange(n, dtype=torch.int32) * (s * m)).view(1, n, 1, 1, 1) \
        + torch.arange(m, dtype=torch.int32).view(1, 1, 1, m, 1)
    upper_left = (starts.view(per_level) + ly.to(torch.int32) * widths.view(per_level) + lx.to(torch.int32)) * m \
        + base  # [L, N, Lq, M, P]
    # stacked on axis 0 then transposed: integer Concat on a later axis breaks ONNX Runtime's symbolic shape inference
    neighbours = torch.stack([torch.zeros_like(widths), torch.ones_like(widths), widths, widths + 1]).t() * m
    rows = upper_left.unsqueeze(-1) + neighbours.view(num_levels, 1, 1, 1, 1, 4)
    # clamped against 0-d bounds: bounds of rows' own shape were folded into two [L, N, Lq, M, P, 4] constants per
    # layer (1035 MB for R50 at 800x1344, against 228 MB for the plugin flavors)
    rows = torch.minimum(torch.maximum(rows, torch.zeros((), dtype=rows.dtype)),
                         torch.full((), n * s * m - 1, dtype=rows.dtype))
    table = value.reshape(-1, d)
    out = None
    for level in range(num_levels):
        picked = table[rows[level].reshape(n, lq, m, num_points * 4)]  # [N, Lq, M, 4P, D]
        term = torch.matmul(weights[level].reshape(n, lq, m, 1, num_points * 4), picked)  # [N, Lq, M, 1, D]
        out = term if out is None else out + term
    return out.reshape(n, lq, m * d)


class _PluginNode(torch.autograd.Function):
    """``M2fMSDeformAttn`` (fused form) when traced for ONNX; the fused reference when run."""

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, reference_points, sampling_offsets, attention_logits):
        shapes = [tuple(row) for row in spatial_shapes.tolist()]
        return fused_reference(value, shapes, None, reference_points, sampling_offsets, attention_logits)

    @staticmethod
    def symbolic(g, value, spatial_shapes, level_start_index, reference_points, sampling_offsets, attention_logits):
        out = g.op(f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}", value, spatial_shapes, level_start_index, reference_points,
                   sampling_offsets, attention_logits, plugin_version_s=PLUGIN_VERSION,
                   plugin_namespace_s=PLUGIN_NAMESPACE, **{f"{FUSED_ATTRIBUTE}_i": 1})
        n, _, m, d = value.type().varyingSizes()
        channels = m * d if m is not None and d is not None else None
        sizes = [n, reference_points.type().varyingSizes()[1], channels]
        out.setType(lowering.node_output_type([value, sampling_offsets, reference_points], sizes))
        return out


class _TensorRTBuiltinNode(torch.autograd.Function):
    """TensorRT's ``MultiscaleDeformableAttnPlugin_TRT`` when traced (output [N, Lq, M, D]); the reference when run."""

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights, version):
        shapes = [tuple(row) for row in spatial_shapes.tolist()]
        out = reference(value, shapes, None, sampling_locations, attention_weights)
        return out.view(value.shape[0], sampling_locations.shape[1], value.shape[2], value.shape[3])

    @staticmethod
    def symbolic(g, value, spatial_shapes, level_start_index, sampling_locations, attention_weights, version):
        out = g.op(f"{TRT_BUILTIN_DOMAIN}::{TRT_BUILTIN_NAME}", value, spatial_shapes, level_start_index,
                   sampling_locations, attention_weights, plugin_version_s=version, plugin_namespace_s="")
        n, _, m, d = value.type().varyingSizes()
        sizes = [n, sampling_locations.type().varyingSizes()[1], m, d]
        out.setType(lowering.node_output_type([value, sampling_locations, attention_weights], sizes))
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
        return _PluginNode.apply(value, spatial, starts, reference_points, sampling_offsets, attention_logits)
    locations, weights = locations_and_weights(shapes, reference_points, sampling_offsets, attention_logits)
    if flavor == "trt-builtin":
        spatial, starts = shape_tensors(shapes, value.device)
        out = _TensorRTBuiltinNode.apply(value, spatial, starts, locations, weights,
                                         trt_builtin_version(lowering.option("tensorrt_version")))
        return out.flatten(2)
    op = portable if flavor == "portable" else reference
    return op(value, shapes, None, locations, weights)
