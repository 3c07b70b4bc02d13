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

Fused variant (what the pixel decoder computes around the op, folded in so the graph does not materialise
normalised locations and weights):

    reference_points    float [N, Lq, L, 2]        normalised (x, y) per level
    sampling_offsets    float [N, Lq, M, L, P, 2]  raw offsets in pixels of each level (x, y)
    attention_logits    float [N, Lq, M, L * P]    raw logits; softmax over L * P happens inside
    locations = reference_points + sampling_offsets / (W_l, H_l);  weights = softmax(attention_logits)

Implementations here: ``reference`` (PyTorch, exact in float64), ``portable`` (ONNX-exportable gathers),
``fused_reference``, and the Triton kernel behind ``forward_triton`` / ``forward_triton_fused`` (fp32 or fp16 in,
fp32 accumulation, output in the input dtype; runs compiled on CUDA tensors and interpreted on CPU tensors).
``attend`` (the fused arguments) computes the op as ``m2f.plugins.lowering`` says: reference, portable, or, when
traced for ONNX, one ``M2fMSDeformAttn`` node (this folder's TensorRT plugin, fused form) or TensorRT's own
``MultiscaleDeformableAttnPlugin_TRT`` (plain form; its output [N, Lq, M, D] reshaped to [N, Lq, M*D]).
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F

from m2f.errors import ArgumentError, require

from .. import lowering
from ..triton_support import AotKernel, jit, launchable, next_power_of_2, tl

PLUGIN_NAME = "M2fMSDeformAttn"
PLUGIN_NAMESPACE = "m2f"
PLUGIN_VERSION = "1"
# TensorRT's own plugin of the plain contract (output [N, Lq, M, D]); its ONNX node goes in this domain
TRT_BUILTIN_NAME = "MultiscaleDeformableAttnPlugin_TRT"
TRT_BUILTIN_DOMAIN = "trt"

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


def fused_reference(
    value: torch.Tensor,
    spatial_shapes: Shapes,
    level_start_index: torch.Tensor | None,
    reference_points: torch.Tensor,
    sampling_offsets: torch.Tensor,
    attention_logits: torch.Tensor,
) -> torch.Tensor:
    """The fused variant's reference: locations and weights as the pixel decoder forms them, then ``reference``."""
    shapes = _level_shapes(value, spatial_shapes, sampling_offsets)
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
    areas = spatial[:, 0] * spatial[:, 1]
    starts = [torch.zeros_like(areas[0])]
    for level in range(len(shapes) - 1):
        starts.append(starts[-1] + areas[level])
    return spatial, torch.stack(starts)


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
                   plugin_namespace_s=PLUGIN_NAMESPACE, fused_i=1)
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


def trt_builtin_version(tensorrt_version: str) -> str:
    """The plugin version of MultiscaleDeformableAttnPlugin_TRT to ask for: "1" (IPluginV2DynamicExt, the only one
    up to TensorRT 10.10, JetPack 6's 10.3 included) or "2" (IPluginV3, from 10.11)."""
    major, minor = (int(x) for x in (tensorrt_version.split(".") + ["0"])[:2])
    return "2" if (major, minor) >= (10, 11) else "1"


def attend(value: torch.Tensor, shapes: list, reference_points: torch.Tensor, sampling_offsets: torch.Tensor,
           attention_logits: torch.Tensor) -> torch.Tensor:
    """The op from the fused arguments (module docstring), lowered as ``m2f.plugins.lowering`` says; [N, Lq, M*D]."""
    flavor = lowering.current()
    if flavor in ("reference", "portable") and torch.is_autocast_enabled(value.device.type):
        # fp16 autocast (the fp16 estimate): the coordinate math and the sampling are an fp32 island, as in m2f's
        # fp16 ONNX (m2f.export.fp16.required_island)
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


# ---------------------------------------------------------------------------------------------------------------
# Triton kernel. One program = BLOCK_Q queries of one (batch, head); it walks levels and points, reads the four
# bilinear neighbours of each sample as [BLOCK_Q, BLOCK_D] rows of ``value`` and accumulates in fp32.


@jit
def _msda_corner(acc, value_head, yi, xi, h, w, start, weight, q_mask, d, d_mask, row_stride):
    """acc [BLOCK_Q, BLOCK_D] += weight[:, None] * value[start + yi * w + xi] (zero where outside the map)."""
    inside = q_mask & (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    rows = start + yi * w + xi
    v = tl.load(value_head + rows[:, None] * row_stride + d[None, :], mask=inside[:, None] & d_mask[None, :],
                other=0.0)
    return acc + v.to(tl.float32) * weight[:, None]


@jit
def _msda_kernel(value, shapes, starts, locations, weights, reference_points, out,
                 S, Lq, M, L, P, D,
                 FUSED: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr):
    """Unfused: locations [N, Lq, M, L, P, 2], weights [N, Lq, M, L, P]. FUSED: locations holds the raw offsets
    (same shape), weights the logits [N, Lq, M, L*P], reference_points [N, Lq, L, 2]. out [N, Lq, M*D]."""
    n = tl.program_id(1) // M
    m = tl.program_id(1) % M
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_mask = q < Lq
    d = tl.arange(0, BLOCK_D)
    d_mask = d < D
    row = (n * Lq + q) * M + m  # index of (n, q, m)
    lp = L * P
    value_head = value + n * S * M * D + m * D
    if FUSED:  # softmax statistics over the L * P logits of each query
        top = tl.full([BLOCK_Q], float("-inf"), tl.float32)
        for j in range(lp):
            top = tl.maximum(top, tl.load(weights + row * lp + j, mask=q_mask, other=0.0).to(tl.float32))
        total = tl.zeros([BLOCK_Q], tl.float32)
        for j in range(lp):
            total += tl.exp(tl.load(weights + row * lp + j, mask=q_mask, other=0.0).to(tl.float32) - top)
    acc = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
    for level in range(L):
        h = tl.load(shapes + 2 * level)
        w = tl.load(shapes + 2 * level + 1)
        start = tl.load(starts + level)
        hf = h.to(tl.float32)
        wf = w.to(tl.float32)
        if FUSED:
            ref = reference_points + ((n * Lq + q) * L + level) * 2
            ref_x = tl.load(ref, mask=q_mask, other=0.0).to(tl.float32)
            ref_y = tl.load(ref + 1, mask=q_mask, other=0.0).to(tl.float32)
        for p in range(P):
            j = level * P + p
            loc_x = tl.load(locations + (row * lp + j) * 2, mask=q_mask, other=0.0).to(tl.float32)
            loc_y = tl.load(locations + (row * lp + j) * 2 + 1, mask=q_mask, other=0.0).to(tl.float32)
            a = tl.load(weights + row * lp + j, mask=q_mask, other=0.0).to(tl.float32)
            if FUSED:
                loc_x = ref_x + loc_x / wf
                loc_y = ref_y + loc_y / hf
                a = tl.exp(a - top) / total
            # pixel coordinates; clamping to [-2, size + 1] changes no weight (all corners there are outside) and
            # keeps far-away samples in int32 range
            x = tl.minimum(tl.maximum(loc_x * wf - 0.5, -2.0), wf + 1.0)
            y = tl.minimum(tl.maximum(loc_y * hf - 0.5, -2.0), hf + 1.0)
            x0 = tl.floor(x)
            y0 = tl.floor(y)
            fx = x - x0
            fy = y - y0
            xi = x0.to(tl.int32)
            yi = y0.to(tl.int32)
            acc = _msda_corner(acc, value_head, yi, xi, h, w, start, (1 - fy) * (1 - fx) * a, q_mask, d, d_mask,
                               M * D)
            acc = _msda_corner(acc, value_head, yi, xi + 1, h, w, start, (1 - fy) * fx * a, q_mask, d, d_mask,
                               M * D)
            acc = _msda_corner(acc, value_head, yi + 1, xi, h, w, start, fy * (1 - fx) * a, q_mask, d, d_mask,
                               M * D)
            acc = _msda_corner(acc, value_head, yi + 1, xi + 1, h, w, start, fy * fx * a, q_mask, d, d_mask,
                               M * D)
    out_ptrs = out + ((n * Lq + q) * M * D + m * D)[:, None] + d[None, :]
    tl.store(out_ptrs, acc.to(out.dtype.element_ty), mask=q_mask[:, None] & d_mask[None, :])


KERNEL_BLOCK_Q = 32  # queries per program; also the AOT build's configuration


def _shape_tensors(value: torch.Tensor, spatial_shapes: Shapes, level_start_index, sampled: torch.Tensor):
    shapes = _level_shapes(value, spatial_shapes, sampled)
    shapes_t, starts = shape_tensors(shapes, value.device)
    if level_start_index is not None and not torch.equal(torch.as_tensor(level_start_index).cpu().to(torch.int32),
                                                         starts.cpu()):
        raise ArgumentError(f"level_start_index {list(level_start_index)} does not match spatial_shapes {shapes}")
    return shapes_t, starts


def _launch(value, shapes_t, starts, locations, weights, reference_points, fused: bool) -> torch.Tensor:
    require("triton", "kernels", "the deformable-attention kernel")
    if value.dtype not in (torch.float32, torch.float16):
        raise ArgumentError(f"the kernel takes float32 or float16 value, got {value.dtype}")
    n, s, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = locations.shape
    out = torch.empty(n, lq, m * d, dtype=value.dtype, device=value.device)
    grid = (-(-lq // KERNEL_BLOCK_Q), n * m)
    kernel = launchable(_msda_kernel, value.device.type)
    kernel[grid](value.contiguous(), shapes_t, starts, locations.contiguous(), weights.contiguous(),
                 reference_points.contiguous(), out, s, lq, m, num_levels, num_points, d,
                 FUSED=fused, BLOCK_Q=KERNEL_BLOCK_Q, BLOCK_D=max(next_power_of_2(d), 16), num_warps=4)
    return out


def forward_triton(
    value: torch.Tensor,
    spatial_shapes: Shapes,
    level_start_index: torch.Tensor | None,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The Triton kernel, with ``reference``'s arguments and result ([N, Lq, M*D] in value's dtype)."""
    shapes_t, starts = _shape_tensors(value, spatial_shapes, level_start_index, sampling_locations)
    return _launch(value, shapes_t, starts, sampling_locations, attention_weights, sampling_locations, fused=False)


def forward_triton_fused(
    value: torch.Tensor,
    spatial_shapes: Shapes,
    level_start_index: torch.Tensor | None,
    reference_points: torch.Tensor,
    sampling_offsets: torch.Tensor,
    attention_logits: torch.Tensor,
) -> torch.Tensor:
    """The fused Triton kernel, with ``fused_reference``'s arguments and result."""
    shapes_t, starts = _shape_tensors(value, spatial_shapes, level_start_index, sampling_offsets)
    return _launch(value, shapes_t, starts, sampling_offsets, attention_logits, reference_points, fused=True)


def aot_kernels() -> list[AotKernel]:
    """Configurations the AOT build compiles: {fp32, fp16} x head dim {32, 64} x {unfused, fused}. A config serves
    any D up to its head dim; the launcher's grid is (ceil(Lq / BLOCK_Q), N * M)."""
    configs = []
    for dtype in ("fp32", "fp16"):
        for head_dim in (32, 64):
            for fused in (False, True):
                ptr = f"*{dtype}"
                configs.append(AotKernel(
                    name=f"msda{'_fused' if fused else ''}_{dtype}_d{head_dim}", kernel=_msda_kernel,
                    signature={"value": ptr, "shapes": "*i32", "starts": "*i32", "locations": ptr, "weights": ptr,
                               "reference_points": ptr, "out": ptr, "S": "i32", "Lq": "i32", "M": "i32",
                               "L": "i32", "P": "i32", "D": "i32"},
                    constexprs={"FUSED": fused, "BLOCK_Q": KERNEL_BLOCK_Q, "BLOCK_D": head_dim},
                    grid=(f"(Lq + {KERNEL_BLOCK_Q - 1}) / {KERNEL_BLOCK_Q}", "N * M", "1"), extra_args=("N",)))
    return configs
