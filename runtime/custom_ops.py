"""ONNX Runtime runs the plugin nodes the m2f and trt-builtin flavors export (numpy; no torch).

The implementations are the ops' own (``m2f.plugins.<op>.onnxruntime_op``, float32, written from each op's
``contract``); this module registers them and rewrites graphs to use them:

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

from m2f.errors import MissingDependencyError
from m2f.onnx_graph import load_onnx
from m2f.plugins.masked_attention import contract as ma
from m2f.plugins.masked_attention.onnxruntime_op import masked_attention
from m2f.plugins.ms_deform_attn import contract as msda
from m2f.plugins.ms_deform_attn.onnxruntime_op import msda_fused, msda_plain

PLUGIN_DOMAINS = (msda.ONNX_DOMAIN, ma.ONNX_DOMAIN, msda.TRT_BUILTIN_DOMAIN)
EXTENSIONS_DOMAIN = "ai.onnx.contrib"
# (domain, op type) of every plugin node ONNX Runtime can run here
PLUGIN_OPS = ((msda.ONNX_DOMAIN, msda.PLUGIN_NAME), (ma.ONNX_DOMAIN, ma.PLUGIN_NAME),
              (msda.TRT_BUILTIN_DOMAIN, msda.TRT_BUILTIN_NAME))


# ---- registration with onnxruntime-extensions ---------------------------------------------------------------------

_REGISTERED: set[tuple[str, str]] = set()  # (domain, op type) of the plugin nodes registered so far
# the op types registered in the extensions domain: one per form (the extensions want fixed input counts)
_MSDA_PLAIN, _MSDA_FUSED = f"{msda.PLUGIN_NAME}_plain", f"{msda.PLUGIN_NAME}_fused"
_MA_MASKED, _MA_OPEN = f"{ma.PLUGIN_NAME}_masked", f"{ma.PLUGIN_NAME}_open"


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
    msda_attrs = {**plugin_attrs, msda.FUSED_ATTRIBUTE: integer}

    @onnx_op(op_type=_MSDA_PLAIN, inputs=[f32, i32, i32, f32, f32], outputs=[f32], attrs=msda_attrs)
    def _plain(value, shapes, starts, locations, weights, **attrs):
        out = msda_plain(value, shapes, starts, locations, weights)
        return out.reshape(out.shape[0], out.shape[1], -1)

    @onnx_op(op_type=_MSDA_FUSED, inputs=[f32, i32, i32, f32, f32, f32], outputs=[f32], attrs=msda_attrs)
    def _fused(value, shapes, starts, reference, offsets, logits, **attrs):
        out = msda_fused(value, shapes, starts, reference, offsets, logits)
        return out.reshape(out.shape[0], out.shape[1], -1)

    @onnx_op(op_type=_MA_MASKED, inputs=[f32, f32, f32, f32], outputs=[f32], attrs=plugin_attrs)
    def _masked(q, k, v, mask_logits, **attrs):
        return masked_attention(q, k, v, mask_logits)

    @onnx_op(op_type=_MA_OPEN, inputs=[f32, f32, f32], outputs=[f32], attrs=plugin_attrs)
    def _open(q, k, v, **attrs):
        return masked_attention(q, k, v, None)

    @onnx_op(op_type=msda.TRT_BUILTIN_NAME, inputs=[f32, i32, i32, f32, f32], outputs=[f32], attrs=plugin_attrs)
    def _builtin(value, shapes, starts, locations, weights, **attrs):
        return msda_plain(value, shapes, starts, locations, weights)

    _REGISTERED.update(PLUGIN_OPS)


def _op_type(node) -> str:
    """The registered op type for a plugin node (its form decided by attribute or input count)."""
    if node.op_type == msda.PLUGIN_NAME:
        fused = next((a.i for a in node.attribute if a.name == msda.FUSED_ATTRIBUTE), 0)
        return _MSDA_FUSED if fused else _MSDA_PLAIN
    if node.op_type == ma.PLUGIN_NAME:
        return _MA_MASKED if len(node.input) == len(ma.INPUTS) else _MA_OPEN
    return node.op_type


_PLUGIN_OP_NAMES = tuple(name.encode() for _, name in PLUGIN_OPS)


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
        import onnx  # noqa: F401  (checked here: load_onnx would fail with a less helpful message)
    except ImportError as e:
        raise MissingDependencyError(f"{Path(path).name} has plugin nodes; running them in ONNX Runtime needs the "
                                     f"onnx package ({e}): pip install 'm2f[runtime]'") from None
    model = load_onnx(path)
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
