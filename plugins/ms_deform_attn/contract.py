"""Multi-scale deformable attention (Deformable DETR), the core of Mask2Former's pixel decoder: the op's contract,
torch-free. Everything else about the op reads it: the PyTorch reference (``reference``), the ONNX lowering
(``lowering``), the Triton kernel (``kernel``), the numpy implementation ONNX Runtime runs (``onnxruntime_op``), the
TensorRT plugin (``msDeformAttnPlugin.cpp``, through the header the kernel build generates from this module), the
runtime, the fp16 converter and the ONNX-parser check. docs/ops.md explains the op and its numerics.

Plain form (the Deformable-DETR CUDA op's signature, and TensorRT's ``MultiscaleDeformableAttnPlugin_TRT``):

    value               float [N, S, M, D]      S = sum over levels of H_l * W_l, M heads, D channels per head
    spatial_shapes      int32 [L, 2]            (H_l, W_l) per level, in the order the levels are flattened in S
    level_start_index   int32 [L]               exclusive cumulative sum of H_l * W_l
    sampling_locations  float [N, Lq, M, L, P, 2]  normalised (x, y) in [0, 1] (outside is allowed: reads zero)
    attention_weights   float [N, Lq, M, L, P]     already softmax-ed jointly over L * P
    -> output           float [N, Lq, M * D]    heads concatenated, head h = channels h*D .. h*D+D-1
                                                (TensorRT's own plugin: [N, Lq, M, D])

Sampling is bilinear with pixel coordinate = loc * size - 0.5 and zero outside the map, i.e. ``grid_sample`` with
``align_corners=False, padding_mode="zeros"`` on the grid 2 * loc - 1.

Fused form (what the pixel decoder computes around the op, folded in so the graph does not materialise normalised
locations and weights; attribute ``fused`` = 1):

    reference_points    float [N, Lq, L, 2]        normalised (x, y) per level
    sampling_offsets    float [N, Lq, M, L, P, 2]  raw offsets in pixels of each level (x, y)
    attention_logits    float [N, Lq, M, L * P]    raw logits; softmax over L * P happens inside
    locations = reference_points + sampling_offsets / (W_l, H_l);  weights = softmax(attention_logits)

Data types: every float input and the output fp32, or every one fp16; spatial_shapes and level_start_index int32.
"""
from __future__ import annotations

PLUGIN_NAME = "M2fMSDeformAttn"
PLUGIN_NAMESPACE = "m2f"
PLUGIN_VERSION = "1"
ONNX_DOMAIN = PLUGIN_NAMESPACE  # the plugin node's domain in the ONNX graph
FUSED_ATTRIBUTE = "fused"  # int: 0 plain form, 1 fused form
PLAIN_INPUTS = ("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")
FUSED_INPUTS = ("value", "spatial_shapes", "level_start_index", "reference_points", "sampling_offsets",
                "attention_logits")
PLAIN_RANKS = (4, 2, 1, 6, 5)
FUSED_RANKS = (4, 2, 1, 4, 6, 4)
SHAPE_INPUTS = (1, 2)  # int32 inputs (spatial_shapes, level_start_index); the others are float
MAX_HEAD_DIM = 64  # the kernels' configurations take head dims up to 32 and up to 64

# TensorRT's own plugin of the plain contract (output [N, Lq, M, D]); its ONNX node goes in this domain
TRT_BUILTIN_NAME = "MultiscaleDeformableAttnPlugin_TRT"
TRT_BUILTIN_DOMAIN = "trt"


def trt_builtin_version(tensorrt_version: str) -> str:
    """The plugin version of MultiscaleDeformableAttnPlugin_TRT to ask for: "1" (IPluginV2DynamicExt, the only one
    up to TensorRT 10.10, JetPack 6's 10.3 included) or "2" (IPluginV3, from 10.11)."""
    major, minor = (int(x) for x in (tensorrt_version.split(".") + ["0"])[:2])
    return "2" if (major, minor) >= (10, 11) else "1"
