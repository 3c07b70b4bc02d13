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
    TensorRT 10.14/11.1 silently mis-computes for this pattern, NVIDIA/TensorRT #4813).

    Per level, each sample reads its four neighbours with one row Gather (int32 indices) from value viewed as
    [N*M*H*W, D]; neighbours outside the map get weight 0 (index clamped in range). Exact in float64; in float32 it
    differs from ``reference`` only by summation order. Shapes as ``reference``.
    """
    n, s, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = level_shapes(value, spatial_shapes, sampling_locations)
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
