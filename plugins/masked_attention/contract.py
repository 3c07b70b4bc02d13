"""Masked cross-attention, the op that gives Mask2Former its name: the op's contract, torch-free. Everything else
about the op reads it: the PyTorch reference (``reference``), the ONNX lowering (``lowering``), the Triton kernel
(``kernel``), the numpy implementation ONNX Runtime runs (``onnxruntime_op``), the TensorRT plugin
(``maskedAttentionPlugin.cpp``, through the header the kernel build generates from this module), the runtime, the
fp16 converter and the ONNX-parser check. docs/ops.md explains the op and its numerics.

    q            float [N, M, Q, D]   queries per head (not yet scaled)
    k, v         float [N, M, S, D]   keys / values per head
    mask_logits  float [N, Q, S]      mask logits of the previous prediction, already resized (bilinear,
                                      align_corners=False) to this level and flattened; shared by all heads;
                                      optional (absent: no mask)
    -> output    float [N, M, Q, D]

A key is blocked for a query where sigmoid(logit) < 0.5, computed in float32 (NOT logit < 0: sigmoid of a tiny
negative logit rounds to exactly 0.5 in float32 and is then not blocked), which holds exactly for logit <
``BLOCKED_BELOW``. A query whose keys are all blocked attends to every key (the "empty-row rule"), so the result is
never NaN. Scores are q·k / sqrt(D).

Data types: q, k, v and the output all fp32 or all fp16; mask_logits fp32 always (the decision is made in fp32).
"""
from __future__ import annotations

from m2f.contract import MASK_BLOCKED_BELOW

PLUGIN_NAME = "M2fMaskedAttention"
PLUGIN_NAMESPACE = "m2f"
PLUGIN_VERSION = "1"
ONNX_DOMAIN = PLUGIN_NAMESPACE  # the plugin node's domain in the ONNX graph
INPUTS = ("q", "k", "v", "mask_logits")
RANKS = (4, 4, 4, 3)
MASK_INPUT = 3  # stays float32 in an fp16 graph
MAX_HEAD_DIM = 64  # the kernels' configurations take head dims up to 32 and up to 64

# sigmoid(x) < 0.5 in float32 exactly where x < BLOCKED_BELOW, with torch's float32 sigmoid (CPU) as the
# reference: tiny negative logits round to exactly 0.5 and stay open. Kernels compare with this constant so their
# decision does not depend on how their exp() rounds; tests check it against torch.sigmoid bit pattern by pattern.
BLOCKED_BELOW = MASK_BLOCKED_BELOW  # float32 -0x1.7ffffcp-23 (m2f.contract)
