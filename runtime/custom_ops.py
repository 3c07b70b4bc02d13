"""ONNX Runtime implementations of the plugin nodes the m2f and trt-builtin flavors export (numpy; no torch).

Written from the op contracts (``m2f.plugins.ms_deform_attn`` / ``masked_attention`` docstrings), in float32:

    M2fMSDeformAttn (m2f)                      plain and fused forms -> [N, Lq, M*D]
    M2fMaskedAttention (m2f)                   q, k, v [, mask_logits] -> [N, M, Q, D]
    MultiscaleDeformableAttnPlugin_TRT (trt)   TensorRT's plain contract -> [N, Lq, M, D]

ONNX Runtime runs them as Python custom ops of onnxruntime-extensions, which live in its own domain and take no fp16,
so ``prepare`` rewrites a copy of the graph in memory: plugin nodes move to that domain, and fp16 inputs and outputs
of a plugin node get Casts around it (the node then computes in fp32: fp16 storage is kept, fp16 arithmetic is not).
The ONNX Runtime backend calls ``prepare`` by itself when a graph holds such nodes, so the Predictor, ``m2f infer``
and ``m2f validate`` run every flavor.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from m2f.contract import MASK_BLOCKED_BELOW
from m2f.errors import MissingDependencyError

PLUGIN_DOMAINS = ("m2f", "trt")
EXTENSIONS_DOMAIN = "ai.onnx.contrib"
BLOCKED_BELOW = np.float32(MASK_BLOCKED_BELOW)  # sigmoid(x) < 0.5 in float32 exactly for x below


# ---- the ops --------------------------------------------------------------------------------------------------------

def _sample_level(value_level: np.ndarray, h: int, w: int, locations: np.ndarray) -> np.ndarray:
    """Bilinear samples of one level: value [N, H*W, M, D], locations [N, Lq, M, P, 2] normalised (x, y) ->
    [N, Lq, M, P, D]; pixel = loc * size - 0.5, neighbours outside the map contribute zero."""
    n, _, m, d = value_level.shape
    x = locations[..., 0] * w - np.float32(0.5)
    y = locations[..., 1] * h - np.float32(0.5)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    flat = value_level.transpose(0, 2, 1, 3).reshape(n * m, h * w, d)  # [N*M, H*W, D]
    out = np.zeros(locations.shape[:-1] + (d,), np.float32)
    batch_head = (np.arange(n)[:, None, None, None] * m + np.arange(m)[None, None, :, None])  # [N, 1, M, 1]
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)),
                           (1, 1, fy * fx)):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        index = (np.clip(yi, 0, h - 1) * w + np.clip(xi, 0, w - 1)).astype(np.int64)
        rows = flat[np.broadcast_to(batch_head, index.shape), index]  # [N, Lq, M, P, D]
        out += rows * (weight * inside)[..., None].astype(np.float32)
    return out


def msda_plain(value: np.ndarray, spatial_shapes: np.ndarray, level_start_index: np.ndarray,
               sampling_locations: np.ndarray, attention_weights: np.ndarray) -> np.ndarray:
    """Deformable attention, plain contract: -> [N, Lq, M, D] (float32)."""
    value = value.astype(np.float32, copy=False)
    n, lq, m, num_levels, num_points, _ = sampling_locations.shape
    out = np.zeros((n, lq, m, value.shape[3]), np.float32)
    for level in range(num_levels):
        h, w = (int(v) for v in spatial_shapes[level])
        start = int(level_start_index[level])
        samples = _sample_level(value[:, start:start + h * w], h, w, sampling_locations[:, :, :, level])
        out += (samples * attention_weights[:, :, :, level, :, None]).sum(axis=3)
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def msda_fused(value, spatial_shapes, level_start_index, reference_points, sampling_offsets, attention_logits):
    """Deformable attention, fused contract: locations = reference + offsets / (W_l, H_l), weights = softmax over
    L * P -> [N, Lq, M, D] (float32)."""
    n, lq, m, num_levels, num_points, _ = sampling_offsets.shape
    normalizer = spatial_shapes[:, ::-1].astype(np.float32)  # (W_l, H_l)
    locations = reference_points[:, :, None, :, None, :] + sampling_offsets / normalizer[None, None, None, :, None, :]
    weights = _softmax(attention_logits.astype(np.float32)).reshape(n, lq, m, num_levels, num_points)
    return msda_plain(value, spatial_shapes, level_start_index, locations.astype(np.float32), weights)


def masked_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask_logits: np.ndarray | None) -> np.ndarray:
    """softmax(q k^T / sqrt(D)) v with keys blocked where sigmoid(logit) < 0.5 (fp32) and the empty-row rule."""
    q, k, v = (a.astype(np.float32, copy=False) for a in (q, k, v))
    scores = np.matmul(q * np.float32(1.0 / np.sqrt(q.shape[-1])), np.swapaxes(k, -1, -2))  # [N, M, Q, S]
    if mask_logits is not None:
        blocked = mask_logits.astype(np.float32) < BLOCKED_BELOW  # [N, Q, S]
        blocked &= ~blocked.all(-1, keepdims=True)
        scores = np.where(blocked[:, None], np.float32(-np.inf), scores)
    return np.matmul(_softmax(scores), v).astype(np.float32)


# ---- registration with onnxruntime-extensions ---------------------------------------------------------------------

_REGISTERED: dict[tuple[str, str], str] = {}  # (domain, op type) -> op type in the extensions domain


def _register() -> None:
    if _REGISTERED:
        return
    try:
        from onnxruntime_extensions import PyCustomOpDef, onnx_op
    except ImportError as e:
        raise MissingDependencyError(f"this graph has plugin nodes, which ONNX Runtime runs through "
                                     f"onnxruntime-extensions ({e}); install it with: pip install 'm2f[runtime]'") \
            from None
    f32, i32, text, integer = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int32, PyCustomOpDef.dt_string, \
        PyCustomOpDef.dt_int64
    plugin_attrs = {"plugin_version": text, "plugin_namespace": text}

    @onnx_op(op_type="M2fMSDeformAttn_plain", inputs=[f32, i32, i32, f32, f32], outputs=[f32],
             attrs={**plugin_attrs, "fused": integer})
    def _plain(value, shapes, starts, locations, weights, **attrs):
        out = msda_plain(value, shapes, starts, locations, weights)
        return out.reshape(out.shape[0], out.shape[1], -1)

    @onnx_op(op_type="M2fMSDeformAttn_fused", inputs=[f32, i32, i32, f32, f32, f32], outputs=[f32],
             attrs={**plugin_attrs, "fused": integer})
    def _fused(value, shapes, starts, reference, offsets, logits, **attrs):
        out = msda_fused(value, shapes, starts, reference, offsets, logits)
        return out.reshape(out.shape[0], out.shape[1], -1)

    @onnx_op(op_type="M2fMaskedAttention_masked", inputs=[f32, f32, f32, f32], outputs=[f32], attrs=plugin_attrs)
    def _masked(q, k, v, mask_logits, **attrs):
        return masked_attention(q, k, v, mask_logits)

    @onnx_op(op_type="M2fMaskedAttention_open", inputs=[f32, f32, f32], outputs=[f32], attrs=plugin_attrs)
    def _open(q, k, v, **attrs):
        return masked_attention(q, k, v, None)

    @onnx_op(op_type="MultiscaleDeformableAttnPlugin_TRT", inputs=[f32, i32, i32, f32, f32], outputs=[f32],
             attrs=plugin_attrs)
    def _builtin(value, shapes, starts, locations, weights, **attrs):
        return msda_plain(value, shapes, starts, locations, weights)

    _REGISTERED.update({("m2f", "M2fMSDeformAttn"): "M2fMSDeformAttn", ("m2f", "M2fMaskedAttention"):
                        "M2fMaskedAttention", ("trt", "MultiscaleDeformableAttnPlugin_TRT"):
                        "MultiscaleDeformableAttnPlugin_TRT"})


def _op_type(node) -> str:
    """The registered op type for a plugin node (its form decided by attribute or input count)."""
    if node.op_type == "M2fMSDeformAttn":
        fused = next((a.i for a in node.attribute if a.name == "fused"), 0)
        return "M2fMSDeformAttn_fused" if fused else "M2fMSDeformAttn_plain"
    if node.op_type == "M2fMaskedAttention":
        return "M2fMaskedAttention_masked" if len(node.input) == 4 else "M2fMaskedAttention_open"
    return node.op_type


_PLUGIN_OP_NAMES = (b"M2fMSDeformAttn", b"M2fMaskedAttention", b"MultiscaleDeformableAttnPlugin_TRT")


def may_have_plugin_nodes(path: str | Path) -> bool:
    """A cheap look at the file's bytes for the plugin op names (parsing a large graph costs more)."""
    data = Path(path).read_bytes()
    return any(name in data for name in _PLUGIN_OP_NAMES)


def prepare(path: str | Path) -> tuple[bytes | None, str]:
    """(the graph rewritten for ONNX Runtime as bytes, or None when it has no plugin nodes; the extensions library
    to register with the session, or ""). Needs onnx and onnxruntime-extensions for plugin graphs only."""
    if not may_have_plugin_nodes(path):
        return None, ""
    try:
        import onnx
    except ImportError as e:
        raise MissingDependencyError(f"{Path(path).name} has plugin nodes; running them in ONNX Runtime needs the "
                                     f"onnx package ({e}): pip install 'm2f[runtime]'") from None
    model = onnx.load(str(path))
    if not any(o.domain in PLUGIN_DOMAINS for o in model.opset_import):
        return None, ""
    return prepare_model(model, Path(path).name)


def prepare_model(model, name: str = "the graph") -> tuple[bytes, str]:
    """``prepare`` for a loaded ModelProto (changed in place when it has plugin nodes): (bytes to give ONNX Runtime,
    the extensions library or "")."""
    from onnx import TensorProto, helper

    if not any(o.domain in PLUGIN_DOMAINS for o in model.opset_import):
        return model.SerializeToString(), ""
    _register()
    from onnxruntime_extensions import get_library_path

    types = {v.name: v.type.tensor_type.elem_type for v in
             list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    types.update({i.name: i.data_type for i in model.graph.initializer})  # constants an fp16 graph stores in fp16
    nodes, cast = [], set()
    for node in model.graph.node:
        if node.domain not in PLUGIN_DOMAINS:
            nodes.append(node)
            continue
        if (node.domain, node.op_type) not in _REGISTERED:
            raise MissingDependencyError(f"{name} has a {node.domain}::{node.op_type} node, which m2f's "
                                         f"ONNX Runtime ops do not implement")
        half = types.get(node.input[0]) == TensorProto.FLOAT16
        inputs = list(node.input)
        if half:  # the extensions' Python ops take no fp16: compute in fp32 between Casts
            for i, tensor in enumerate(inputs):
                if types.get(tensor) == TensorProto.FLOAT16:
                    inputs[i] = f"{tensor}__m2f_fp32"
                    if inputs[i] not in cast:  # plugin nodes share inputs (the reference points): one Cast each
                        cast.add(inputs[i])
                        nodes.append(helper.make_node("Cast", [tensor], [inputs[i]], to=TensorProto.FLOAT))
        output = node.output[0]
        rewritten = helper.make_node(_op_type(node), inputs, [f"{output}__m2f_fp32" if half else output],
                                     domain=EXTENSIONS_DOMAIN, name=node.name)
        rewritten.attribute.extend(node.attribute)
        nodes.append(rewritten)
        if half:
            nodes.append(helper.make_node("Cast", [f"{output}__m2f_fp32"], [output], to=TensorProto.FLOAT16))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    kept = [o for o in model.opset_import if o.domain not in PLUGIN_DOMAINS]
    del model.opset_import[:]
    model.opset_import.extend(kept + [helper.make_opsetid(EXTENSIONS_DOMAIN, 1)])
    return model.SerializeToString(), get_library_path()
