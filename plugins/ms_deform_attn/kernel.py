"""The Triton kernel of deformable attention (plain and fused forms; fp32 or fp16 value, fp32 accumulation, output in
the value's dtype), its launchers for PyTorch tensors (compiled on CUDA tensors, interpreted on CPU tensors under
TRITON_INTERPRET=1) and the configurations the ahead-of-time build compiles."""
from __future__ import annotations

import torch

from m2f.errors import ArgumentError, require

from ..triton_support import AotKernel, jit, launchable, next_power_of_2, tl
from .reference import Shapes, level_shapes, shape_tensors

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
    shapes = level_shapes(value, spatial_shapes, sampled)
    shapes_t, starts = shape_tensors(shapes, value.device)
    if level_start_index is not None and not torch.equal(torch.as_tensor(level_start_index).cpu().to(torch.int32),
                                                         starts.cpu()):
        raise ArgumentError(f"level_start_index {list(level_start_index)} does not match spatial_shapes {shapes}")
    return shapes_t, starts


def _launch(value, shapes_t, starts, locations, weights, reference_points, fused: bool) -> torch.Tensor:
    require("triton", "kernels", "the deformable-attention kernel")
    if value.dtype not in (torch.float32, torch.float16):
        raise ArgumentError(f"the kernel takes float32 or float16 value, got {value.dtype}")
    sampling = {locations.dtype, weights.dtype, reference_points.dtype}
    if len(sampling) != 1 or sampling.pop() not in (torch.float32, value.dtype):
        raise ArgumentError(f"the sampling inputs must all be float32 or all {value.dtype} (the value's dtype), got "
                            f"{locations.dtype}, {weights.dtype}, {reference_points.dtype}")
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


# (name suffix, value and output dtype, sampling inputs' dtype): the dtype configurations the AOT build compiles; an
# fp16 graph keeps its sampling coordinates fp32 (the third)
AOT_PRECISIONS = (("fp32", "fp32", "fp32"), ("fp16", "fp16", "fp16"), ("fp16_sfp32", "fp16", "fp32"))


def aot_kernels() -> list[AotKernel]:
    """Configurations the AOT build compiles: AOT_PRECISIONS x head dim {32, 64} x {unfused, fused}. A config serves
    any D up to its head dim; the launcher's grid is (ceil(Lq / BLOCK_Q), N * M)."""
    configs = []
    for suffix, value_type, sampling_type in AOT_PRECISIONS:
        for head_dim in (32, 64):
            for fused in (False, True):
                value, sampling = f"*{value_type}", f"*{sampling_type}"
                configs.append(AotKernel(
                    name=f"msda{'_fused' if fused else ''}_{suffix}_d{head_dim}", kernel=_msda_kernel,
                    signature={"value": value, "shapes": "*i32", "starts": "*i32", "locations": sampling,
                               "weights": sampling, "reference_points": sampling, "out": value, "S": "i32",
                               "Lq": "i32", "M": "i32", "L": "i32", "P": "i32", "D": "i32"},
                    constexprs={"FUSED": fused, "BLOCK_Q": KERNEL_BLOCK_Q, "BLOCK_D": head_dim},
                    grid=(f"(Lq + {KERNEL_BLOCK_Q - 1}) / {KERNEL_BLOCK_Q}", "N * M", "1"), extra_args=("N",)))
    return configs
