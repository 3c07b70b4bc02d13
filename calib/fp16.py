"""fp32 m2f ONNX -> fp16 with fp32 islands (no torch): ``to_fp16(model, keep_fp32)``, and the islands m2f owns.

Every node that computes on float tensors becomes fp16 unless it is kept: its float outputs become fp16, its float
initializers are stored in fp16 (unless an fp32 node reads them too, or they do not fit fp16), its ``Cast(to=FLOAT)``
and float constants follow. Where an fp16 tensor meets an fp32 node, or the reverse, one Cast is inserted per tensor
and direction (never two for the same pair). Graph inputs and outputs keep their types, so the runtime and the
metadata contract do not change. Inputs that stay float32 whatever the node's precision: Resize's roi and scales,
the mask logits of M2fMaskedAttention (its 0.5 threshold is decided in fp32), the sampling inputs of M2fMSDeformAttn
(reference points, offsets, logits: its coordinate math stays fp32 next to an fp16 value), and the inputs of
Shape/Size.

The islands are blocks of the graph, named from the exporter's node scopes (``block_of``):

- always fp32 (docs/numerics.md, ``required_island``): pre/post-processing in the graph (adapter, heads), softmaxes and
  normalisation statistics, the mask logits (embedding x mask features), the masked-attention threshold (Sigmoid /
  Less / Where / the Cast feeding them, and the Add that applies the -inf / 0 mask they make) and the
  deformable-attention sampling math of the portable flavor; the m2f plugin node takes an fp16 value with fp32
  sampling inputs; TensorRT's own plugin (trt-builtin) takes every float input in one type, so its locations and
  weights become fp16 at the node (the README's precision section measures what that costs);
- fp32 when measured sensitive (``m2f.calib.sensitivity``): any other block, e.g. the deformable-attention
  sampling coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m2f.onnx_graph import STANDARD_DOMAINS
from m2f.plugins.masked_attention import contract as ma
from m2f.plugins.ms_deform_attn import contract as msda

FP16_MAX = 65504.0
# (op type, input index) that stay float32 in an fp16 node: Resize's roi and scales, the mask logits of masked
# attention (its threshold is decided in fp32), and the sampling inputs of m2f's deformable attention (its
# coordinate math stays fp32: the plugin takes them fp32 beside an fp16 value; TensorRT's own plugin cannot)
FLOAT32_INPUTS = {("Resize", 1), ("Resize", 2), (ma.PLUGIN_NAME, ma.MASK_INPUT),
                  *((msda.PLUGIN_NAME, i) for i in range(len(msda.SHAPE_INPUTS) + 1, len(msda.FUSED_INPUTS)))}
TYPE_AGNOSTIC = {"Shape", "Size"}  # read only the shape: never cast their input
NORMALISATION_OPS = {"Softmax", "LayerNormalization", "InstanceNormalization", "GroupNormalization"}
THRESHOLD_OPS = {"Sigmoid", "Less", "Where", "Cast"}  # the masked-attention mask decision
MASK_LOGIT_OPS = {"Einsum", "MatMul"}  # mask embedding x mask features, in the predictor's own scope
ATTENTION_PROJECTIONS = ("value_proj", "sampling_offsets", "attention_weights", "output_proj")


def block_of(name: str) -> str:
    """The block a node belongs to, from its scope: e.g. "backbone/res3", "pixel_decoder/layers.0/deformable
    sampling", "predictor/transformer_cross_attention_layers.2", "pre/post-processing"."""
    if not name.startswith("/model/"):
        return "pre/post-processing"
    parts = name.split("/")[2:-1]
    if parts and parts[0] == "sem_seg_head":
        parts = parts[1:]
    if not parts:
        return "model"
    if parts[0] == "backbone":
        return "/".join(parts[:2])
    if parts[0] == "pixel_decoder":
        if len(parts) > 1 and parts[1].startswith("layers."):
            layer = "/".join(parts[:2])
            if len(parts) > 2 and parts[2] == "self_attn":
                projection = len(parts) > 3 and parts[3] in ATTENTION_PROJECTIONS
                return f"{layer}/{'attention projections' if projection else 'deformable sampling'}"
            return f"{layer}/ffn and norms"
        return "/".join(parts[:2]) if len(parts) > 1 else "pixel_decoder/positions and reference points"
    if parts[0] == "predictor":  # the decoder layers; the heads (class/mask embed, decoder norm) run once per layer
        layer = len(parts) > 1 and parts[1].startswith("transformer_")
        return "/".join(parts[:2]) if layer else "predictor/prediction heads"
    return parts[0]


def required_island(node) -> str | None:
    """Why ``node`` must stay fp32 whatever is measured (docs/numerics.md), or None."""
    if block_of(node.name) == "pre/post-processing":
        return "pre/post-processing in the graph"
    if node.op_type in NORMALISATION_OPS:
        return "softmax / normalisation statistics"
    if node.op_type in MASK_LOGIT_OPS and node.name.rsplit("/", 1)[0].endswith("/predictor"):
        return "mask einsum accumulation"
    if node.op_type in THRESHOLD_OPS and "/multihead_attn/" in node.name:
        return "masked-attention threshold"
    if node.op_type == "Add" and "/multihead_attn/" in node.name and any("/multihead_attn/Where" in i
                                                                          for i in node.input):
        return "masked-attention masking (the -inf / 0 mask is added in fp32)"
    if block_of(node.name).endswith("/deformable sampling") and node.domain in STANDARD_DOMAINS:
        return "deformable-attention coordinate math (Floor and index arithmetic; fp16 spacing is 0.125 px at 128+)"
    return None


@dataclass
class Conversion:
    model: object  # onnx.ModelProto
    fp16_nodes: int
    fp32_nodes: int
    casts: int


def _types(model) -> dict[str, int]:
    """Element type of every tensor the (shape-inferred) graph types."""
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    for node in g.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            types[node.output[0]] = node.attribute[0].t.data_type
    return types


def _cast_to(node) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def _is_float_node(node, types: dict[str, int]) -> bool:
    from onnx import TensorProto

    return any(types.get(t) == TensorProto.FLOAT for t in list(node.input) + list(node.output) if t)


def _half_tensor(tensor):
    """A float32 TensorProto converted to float16 (same name)."""
    from onnx import numpy_helper

    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name)


def _fits_fp16(tensor) -> bool:
    from onnx import numpy_helper

    values = numpy_helper.to_array(tensor)
    finite = values[np.isfinite(values)]
    return finite.size == 0 or float(np.abs(finite).max()) <= FP16_MAX


def to_fp16(model, keep_fp32: set[str]) -> Conversion:
    """A converted copy of ``model`` (module docstring); ``keep_fp32``: names of nodes that stay fp32 (each node's
    ``required_island`` is added)."""
    import copy

    import onnx
    from onnx import TensorProto

    model = onnx.shape_inference.infer_shapes(copy.deepcopy(model))
    g = model.graph
    types = _types(model)
    constants = {i.name: i for i in g.initializer}
    constants.update({n.output[0]: n.attribute[0].t for n in g.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    keep = set(keep_fp32) | {n.name for n in g.node if required_island(n)}
    for node in g.node:  # a node reading a float constant that does not fit fp16 stays fp32
        if any(i in constants and constants[i].data_type == TensorProto.FLOAT and not _fits_fp16(constants[i])
               for i in node.input):
            keep.add(node.name)
    # positions in g.node (protobuf hands out a new Python object on every access, so neither id() nor identity works)
    half = {i for i, n in enumerate(g.node)
            if n.name not in keep and n.op_type != "Constant" and _is_float_node(n, types)}

    def wants(position: int, node, index: int, tensor: str) -> int | None:
        """The float type node ``position`` wants for input ``index`` (None: not a float input, or any type will do)."""
        if types.get(tensor) != TensorProto.FLOAT or node.op_type in TYPE_AGNOSTIC:
            return None
        if position in half and (node.op_type, index) not in FLOAT32_INPUTS:
            return TensorProto.FLOAT16
        return TensorProto.FLOAT

    new_type = dict(types)
    # constants (initializers, Constant nodes) read only as fp16 are stored in fp16
    readers: dict[str, set] = {}
    for position, node in enumerate(g.node):
        for index, tensor in enumerate(node.input):
            if tensor in constants:
                readers.setdefault(tensor, set()).add(wants(position, node, index, tensor))
    for name, wanted in readers.items():
        if wanted == {TensorProto.FLOAT16} and constants[name].data_type == TensorProto.FLOAT:
            constants[name].CopyFrom(_half_tensor(constants[name]))
            new_type[name] = TensorProto.FLOAT16
    # fp16 nodes: float outputs, Cast targets and float-tensor attributes (ConstantOfShape's value) become fp16
    for position, node in enumerate(g.node):
        if position not in half:
            continue
        if node.op_type == "Cast":
            if _cast_to(node) == TensorProto.FLOAT:
                next(a for a in node.attribute if a.name == "to").i = TensorProto.FLOAT16
                new_type[node.output[0]] = TensorProto.FLOAT16
            continue
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(_half_tensor(a.t))
        for out in node.output:
            if types.get(out) == TensorProto.FLOAT:
                new_type[out] = TensorProto.FLOAT16
    nodes, casts = _rewire(g, wants, new_type)
    del g.node[:]
    g.node.extend(nodes)
    for v in g.value_info:
        if new_type.get(v.name) == TensorProto.FLOAT16:
            v.type.tensor_type.elem_type = TensorProto.FLOAT16
    model = onnx.shape_inference.infer_shapes(model)
    float_nodes = sum(1 for n in nodes if _is_float_node(n, types) and not n.name.endswith("/m2f_cast"))
    return Conversion(model, len(half), float_nodes - len(half), casts)


def _rewire(g, wants, new_type: dict[str, int]) -> tuple[list, int]:
    """The node list with one Cast per (tensor, direction) where a tensor's new type is not what its reader wants;
    graph outputs that became fp16 are produced under a new name and cast back to their declared type."""
    from onnx import TensorProto, helper

    graph_outputs = {o.name for o in g.output}
    renamed = {o: f"{o}__fp16" for o in graph_outputs if new_type.get(o) == TensorProto.FLOAT16}
    made: dict[tuple[str, int], str] = {}
    nodes = []

    def cast(tensor: str, to: int) -> str:
        if (tensor, to) not in made:
            made[(tensor, to)] = f"{tensor}__{'fp16' if to == TensorProto.FLOAT16 else 'fp32'}"
            nodes.append(helper.make_node("Cast", [renamed.get(tensor, tensor)], [made[(tensor, to)]], to=to,
                                          name=f"{made[(tensor, to)]}/m2f_cast"))
        return made[(tensor, to)]

    for position, node in enumerate(g.node):
        for index, tensor in enumerate(node.input):
            wanted = wants(position, node, index, tensor) if tensor else None
            if wanted is not None and new_type.get(tensor) != wanted:
                node.input[index] = cast(tensor, wanted)
            elif tensor in renamed:
                node.input[index] = renamed[tensor]
        nodes.append(node)
        for i, out in enumerate(node.output):
            if out in renamed:
                node.output[i] = renamed[out]
                nodes.append(helper.make_node("Cast", [renamed[out]], [out], to=TensorProto.FLOAT,
                                              name=f"{out}/m2f_cast"))
    return nodes, len(made) + len(renamed)
