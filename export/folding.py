"""Constant folding of a traced graph with ONNX Runtime's basic optimisations, plugin nodes included.

ONNX Runtime folds in one pass the shape arithmetic that onnxslim folds one layer per iteration (a tiny Swin with
plugin nodes: ten onnxslim iterations, 21 of an export's 25 s). It cannot load plugin nodes, so a graph that has
them is cut around them: each plugin node is taken out, its output becomes a graph input (typed with the traced
sizes, ``m2f.plugins.lowering.traced_sizes``), the inputs it read become graph outputs so that nothing it needs is
removed, and after folding the nodes go back in, in topological order. A static graph's equal integer tables are
then stored once (``share_index_constants``).
"""
from __future__ import annotations

import heapq
import tempfile
from pathlib import Path

from m2f.onnx_graph import STANDARD_DOMAINS

# ONNX Runtime rewrites that restructure rather than fold: their new nodes lose the exporter's scope names (which the
# precision islands and the stage taps read), and TensorRT fuses MatMul+Add itself.
RESTRUCTURING_OPTIMIZERS = ["MatMulAddFusion", "TransposeOptimizer"]
# integer constants from this size up are merged when equal (share_index_constants); smaller ones are not worth it
SHARED_CONSTANT_MIN_BYTES = 1024


def foldable(model_proto) -> bool:
    """Whether ``fold_constants`` can take this graph: standard ops only, or plugin nodes whose outputs have static
    sizes and are not graph outputs (a dynamic export's are symbolic: nothing downstream of them could fold)."""
    graph = model_proto.graph
    typed = {v.name: v for v in graph.value_info}
    outputs = {o.name for o in graph.output}
    return all(_has_static_shape(typed.get(o)) and o not in outputs
               for n in graph.node if n.domain not in STANDARD_DOMAINS for o in n.output)


def fold_constants(model_proto):
    """ONNX Runtime's basic graph optimisations (constant folding, redundant-node removal, Conv+BN/Add/Mul folding),
    written back as a model; plugin nodes are kept as they were (module docstring). Only where ``foldable``."""
    import onnx

    plugins = [n for n in model_proto.graph.node if n.domain not in STANDARD_DOMAINS]
    if not plugins:
        return _run_basic_optimisations(model_proto)
    cut = onnx.ModelProto()
    cut.CopyFrom(model_proto)
    added_inputs, added_outputs = _cut(cut, plugins)
    folded = _run_basic_optimisations(cut)
    graph = folded.graph
    _remove_named(graph.input, added_inputs)
    _remove_named(graph.output, added_outputs)
    nodes = _topological(list(graph.node) + plugins)
    del graph.node[:]
    graph.node.extend(nodes)
    folded.opset_import.extend(o for o in model_proto.opset_import if o.domain not in STANDARD_DOMAINS)
    return folded


def share_index_constants(model_proto) -> int:
    """Integer initializers of at least ``SHARED_CONSTANT_MIN_BYTES`` that hold the same values (type, shape and
    bytes) merged into the first of them, in place -> how many were removed. They are the index tables that every
    encoder layer computes alike from the level sizes (the portable deformable attention's neighbour lists: six of
    375 kB in a static R50 graph); ONNX Runtime's folding shares only small constants. Float constants are left
    alone: weights that are equal by chance may end up in different precisions (``m2f.calib.fp16``)."""
    import hashlib

    from onnx import AttributeProto, TensorProto

    graph = model_proto.graph
    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return 0  # a subgraph could read them too; m2f's graphs have none (no If / Loop)
    integer = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64}
    interface = {v.name for v in list(graph.input) + list(graph.output)}
    first: dict[tuple, str] = {}
    renamed: dict[str, str] = {}
    for tensor in graph.initializer:
        if tensor.data_type in integer and len(tensor.raw_data) >= SHARED_CONSTANT_MIN_BYTES \
                and tensor.name not in interface:
            key = (tensor.data_type, tuple(tensor.dims), hashlib.sha256(tensor.raw_data).digest())
            if first.setdefault(key, tensor.name) != tensor.name:
                renamed[tensor.name] = first[key]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    _remove_named(graph.initializer, set(renamed))
    _remove_named(graph.value_info, set(renamed))
    return len(renamed)


def _cut(model_proto, plugins) -> tuple[set[str], set[str]]:
    """Take the plugin nodes out of the model's graph: their outputs become typed graph inputs, the node-made tensors
    they read graph outputs -> (names added as inputs, names added as outputs)."""
    import onnx

    graph = model_proto.graph
    typed = {v.name: v for v in graph.value_info}
    plugin_outputs = {o for n in plugins for o in n.output}
    made = {o for n in graph.node for o in n.output} - plugin_outputs
    existing_outputs = {o.name for o in graph.output}
    read = [i for n in plugins for i in n.input if i in made and i not in existing_outputs]
    read = list(dict.fromkeys(read))
    kept = [n for n in graph.node if n.domain in STANDARD_DOMAINS]
    del graph.node[:]
    graph.node.extend(kept)
    graph.input.extend(typed[o] for n in plugins for o in n.output)
    inferred = onnx.shape_inference.infer_shapes(model_proto).graph  # with the model's own opsets
    types = {v.name: v for v in list(inferred.value_info) + list(inferred.output)}
    graph.output.extend(types.get(name) or onnx.helper.make_empty_tensor_value_info(name) for name in read)
    return plugin_outputs, set(read)


def _has_static_shape(value_info) -> bool:
    if value_info is None or not value_info.type.tensor_type.HasField("shape"):
        return False
    return all(d.HasField("dim_value") for d in value_info.type.tensor_type.shape.dim)


def _run_basic_optimisations(model_proto):
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(tmp) / "folded.onnx")
        options.intra_op_num_threads = 1
        ort.InferenceSession(model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=RESTRUCTURING_OPTIMIZERS)
        folded = onnx.load(options.optimized_model_filepath)
    used = {n.domain for n in folded.graph.node}  # ONNX Runtime lists every domain it knows; keep the graph's
    kept = [o for o in folded.opset_import if o.domain in used or o.domain in STANDARD_DOMAINS]
    del folded.opset_import[:]
    folded.opset_import.extend(kept)
    return folded


def _remove_named(values, names: set[str]) -> None:
    kept = [v for v in values if v.name not in names]
    del values[:]
    values.extend(kept)


def _topological(nodes: list) -> list:
    """Nodes in an order where each comes after the producers of its inputs (Kahn's algorithm, stable: the given
    order wherever it already is one)."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    waiting = [sum(1 for t in set(n.input) if t in producer) for n in nodes]
    readers: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in set(n.input):
            if t in producer:
                readers.setdefault(producer[t], []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for j in readers.get(i, ()):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        raise ValueError("the graph has a cycle")
    return order
