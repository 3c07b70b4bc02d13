"""The Triton kernel of masked attention (fp32 or fp16 q/k/v, fp32 mask decision and accumulation, online softmax
over key tiles, key tiles that no query of the tile may attend skipped), its launcher for PyTorch tensors (compiled
on CUDA tensors, interpreted on CPU tensors under TRITON_INTERPRET=1) and the ahead-of-time configurations."""
from __future__ import annotations

import math

import torch

from m2f.errors import ArgumentError, require

from ..triton_support import AotKernel, jit, launchable, next_power_of_2, tl
from .contract import BLOCKED_BELOW

AOT_DEFINES = {"M2F_MASKED_ATTENTION_BLOCKED_BELOW": BLOCKED_BELOW}  # written into the C launchers' header

# Triton kernel. One program = BLOCK_Q queries of one (batch, head). Pass 1 (with a mask) finds the queries with no
# open key (empty-row rule); pass 2 runs an online softmax over BLOCK_S key tiles, skipping a tile when no query of
# the block may attend any of its keys.


@jit
def _masked_attention_kernel(q, k, v, mask_logits, out, Q, S, M, D, scale, blocked_below,
                             HAS_MASK: tl.constexpr, IEEE: tl.constexpr,
                             BLOCK_Q: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    """q, out [N, M, Q, D]; k, v [N, M, S, D]; mask_logits [N, Q, S] (ignored without HAS_MASK)."""
    n = tl.program_id(1) // M
    head = tl.program_id(1)  # = n * M + m
    qi = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_mask = qi < Q
    d = tl.arange(0, BLOCK_D)
    d_mask = d < D
    q_block = tl.load(q + (head * Q + qi)[:, None] * D + d[None, :], mask=q_mask[:, None] & d_mask[None, :],
                      other=0.0)
    mask_rows = mask_logits + (n * Q + qi) * S
    attend_all = tl.zeros([BLOCK_Q], tl.int1)
    if HAS_MASK:
        has_open = tl.zeros([BLOCK_Q], tl.int32)
        for s0 in range(0, S, BLOCK_S):
            s = s0 + tl.arange(0, BLOCK_S)
            logits = tl.load(mask_rows[:, None] + s[None, :], mask=q_mask[:, None] & (s < S)[None, :],
                             other=float("-inf")).to(tl.float32)
            has_open = tl.maximum(has_open, tl.max((logits >= blocked_below).to(tl.int32), axis=1))
        attend_all = has_open == 0
    m_i = tl.full([BLOCK_Q], -1.0e30, tl.float32)  # finite: a fully blocked tile never makes inf - inf
    l_i = tl.zeros([BLOCK_Q], tl.float32)
    acc = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
    for s0 in range(0, S, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        s_mask = s < S
        allowed = q_mask[:, None] & s_mask[None, :]
        if HAS_MASK:
            logits = tl.load(mask_rows[:, None] + s[None, :], mask=allowed, other=float("-inf")).to(tl.float32)
            allowed = allowed & ((logits >= blocked_below) | attend_all[:, None])
        if tl.max(allowed.to(tl.int32)) > 0:
            kv_offsets = (head * S + s)[:, None] * D + d[None, :]
            kv_mask = s_mask[:, None] & d_mask[None, :]
            k_block = tl.load(k + kv_offsets, mask=kv_mask, other=0.0)
            if IEEE:
                scores = tl.dot(q_block, tl.trans(k_block), input_precision="ieee")
            else:
                scores = tl.dot(q_block, tl.trans(k_block))
            scores = tl.where(allowed, scores * scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, axis=1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(scores - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v_block = tl.load(v + kv_offsets, mask=kv_mask, other=0.0)
            if IEEE:
                acc = acc * alpha[:, None] + tl.dot(p, v_block.to(tl.float32), input_precision="ieee")
            else:
                acc = acc * alpha[:, None] + tl.dot(p.to(v_block.dtype), v_block)
            m_i = m_new
    result = acc / tl.maximum(l_i, 1.0e-30)[:, None]  # l_i > 0 for every real query row
    tl.store(out + (head * Q + qi)[:, None] * D + d[None, :], result.to(out.dtype.element_ty),
             mask=q_mask[:, None] & d_mask[None, :])


KERNEL_BLOCK_Q = 32  # queries per program
KERNEL_BLOCK_S = 64  # keys per tile


def forward_triton(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_logits: torch.Tensor | None
) -> torch.Tensor:
    """The Triton kernel, with ``reference``'s arguments and result ([N, M, Q, D] in q's dtype)."""
    require("triton", "kernels", "the masked-attention kernel")
    if q.dtype not in (torch.float32, torch.float16) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ArgumentError(f"the kernel takes q, k, v all float32 or all float16, got {q.dtype}, {k.dtype}, {v.dtype}")
    n, m, num_q, d = q.shape
    s = k.shape[2]
    if mask_logits is not None and tuple(mask_logits.shape) != (n, num_q, s):
        raise ArgumentError(f"mask_logits has shape {list(mask_logits.shape)}, expected {[n, num_q, s]}")
    out = torch.empty_like(q)
    grid = (-(-num_q // KERNEL_BLOCK_Q), n * m)
    kernel = launchable(_masked_attention_kernel, q.device.type)
    mask = mask_logits.contiguous() if mask_logits is not None else q
    kernel[grid](q.contiguous(), k.contiguous(), v.contiguous(), mask, out, num_q, s, m, d, 1.0 / math.sqrt(d),
                 BLOCKED_BELOW, HAS_MASK=mask_logits is not None, IEEE=q.dtype == torch.float32,
                 BLOCK_Q=KERNEL_BLOCK_Q, BLOCK_S=KERNEL_BLOCK_S, BLOCK_D=max(next_power_of_2(d), 16), num_warps=4)
    return out


def aot_kernels() -> list[AotKernel]:
    """Configurations the AOT build compiles: {fp32, fp16} q/k/v/out x head dim {32, 64} x {with mask, without}; the
    mask logits are fp32 in every configuration (the sigmoid < 0.5 decision is made in fp32). The launcher's grid is
    (ceil(Q / BLOCK_Q), N * M); pass scale = 1/sqrt(D) and blocked_below = BLOCKED_BELOW."""
    configs = []
    for dtype in ("fp32", "fp16"):
        for head_dim in (32, 64):
            for has_mask in (True, False):
                ptr = f"*{dtype}"
                configs.append(AotKernel(
                    name=f"masked_attention{'' if has_mask else '_nomask'}_{dtype}_d{head_dim}",
                    kernel=_masked_attention_kernel,
                    signature={"q": ptr, "k": ptr, "v": ptr, "mask_logits": "*fp32", "out": ptr, "Q": "i32",
                               "S": "i32", "M": "i32", "D": "i32", "scale": "fp32", "blocked_below": "fp32"},
                    constexprs={"HAS_MASK": has_mask, "IEEE": dtype == "fp32", "BLOCK_Q": KERNEL_BLOCK_Q,
                                "BLOCK_S": KERNEL_BLOCK_S, "BLOCK_D": head_dim},
                    grid=(f"(Q + {KERNEL_BLOCK_Q - 1}) / {KERNEL_BLOCK_Q}", "N * M", "1"), extra_args=("N",)))
    return configs
