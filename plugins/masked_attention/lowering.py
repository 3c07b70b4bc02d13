"""How masked attention is computed inside the model and exported (``m2f.plugins.lowering`` picks the flavor): the
reference (which exports to standard ONNX ops: the portable and trt-builtin flavors), or, with the m2f flavor, one
``M2fMaskedAttention`` node (this folder's TensorRT plugin)."""
from __future__ import annotations

import torch

from .. import lowering
from .contract import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION
from .reference import reference


class _PluginNode(torch.autograd.Function):
    """``M2fMaskedAttention`` when traced for ONNX; the reference when run."""

    @staticmethod
    def forward(ctx, q, k, v, mask_logits, sizes):
        return reference(q, k, v, mask_logits)

    @staticmethod
    def symbolic(g, q, k, v, mask_logits, sizes):
        out = g.op(f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}", q, k, v, mask_logits, plugin_version_s=PLUGIN_VERSION,
                   plugin_namespace_s=PLUGIN_NAMESPACE)
        out.setType(lowering.node_output_type([q, k, v], sizes, rank=4))
        return out


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_logits: torch.Tensor | None) -> torch.Tensor:
    """The op (module docstring), lowered as ``m2f.plugins.lowering`` says; [N, M, Q, D]."""
    if lowering.current() == "m2f" and mask_logits is not None:
        return _PluginNode.apply(q, k, v, mask_logits.float(), lowering.traced_sizes(*q.shape))  # [N, M, Q, D]
    return reference(q, k, v, mask_logits)
