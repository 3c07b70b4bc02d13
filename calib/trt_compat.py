"""Will TensorRT's ONNX parser take this graph? A check without TensorRT: ``check_graph(model)``.

The rules are TensorRT's own operator support matrix (onnx-tensorrt ``docs/operators.md``, 10.1 GA; bundled as
``m2f/assets/tensorrt_onnx_operators.json``, parsed from the Markdown by ``parse_matrix``): which ops the parser has,
which input types each takes, and the restrictions it states. Checked per node: the op is supported; its first
input's type is one of the op's types (UINT8 only as a network input or output); and the restrictions that can be
read off a graph: constant ``axes`` (Reduce*, Slice, Unsqueeze, Squeeze), ``TopK`` sorted with K < 3840, ``Resize``
modes without antialiasing, ``MaxPool`` without the Indices output, ``LayerNormalization`` with only its first
output. Plugin nodes pass when they name a plugin TensorRT or m2f's library provides. Needs onnx (no torch).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

from m2f.assets import ASSETS
from m2f.onnx_graph import STANDARD_DOMAINS, load_onnx
from m2f.plugins.masked_attention import contract as ma
from m2f.plugins.ms_deform_attn import contract as msda

MATRIX = ASSETS / "tensorrt_onnx_operators.json"
KNOWN_PLUGINS = {(msda.ONNX_DOMAIN, msda.PLUGIN_NAME), (ma.ONNX_DOMAIN, ma.PLUGIN_NAME),
                 (msda.TRT_BUILTIN_DOMAIN, msda.TRT_BUILTIN_NAME)}
TOPK_MAX = 3840
RESIZE_TRANSFORMS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
RESIZE_MODES = {"nearest", "linear"}
CONSTANT_AXES = {"ReduceSum": 1, "ReduceMean": 1, "ReduceMax": 1, "ReduceMin": 1, "ReduceProd": 1, "Slice": 3,
                 "Unsqueeze": 1, "Squeeze": 1}  # op -> index of its axes input
TYPO_FIXES = {"INF64": "INT64"}  # the 10.1 table's ConstantOfShape row says INF64
TYPED_BY_OUTPUT = {"ConstantOfShape"}  # the row lists its output (value) types; its input is always an INT64 shape
_ONNX_TO_TRT = {"FLOAT": "FP32", "FLOAT16": "FP16", "BFLOAT16": "BF16", "INT32": "INT32", "INT64": "INT64",
                "BOOL": "BOOL", "UINT8": "UINT8", "INT8": "INT8", "DOUBLE": "DOUBLE"}


@dataclass
class Issue:
    node: str
    op: str
    problem: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op}): {self.problem}"


def parse_matrix(markdown: str) -> dict[str, dict]:
    """operators.md's table -> {op: {"supported": bool, "types": [...], "restrictions": str}}."""
    ops = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[1] not in ("Y", "N") or not re.fullmatch(r"[A-Za-z0-9]+", cells[0]):
            continue
        types = [TYPO_FIXES.get(t.strip(), t.strip()) for t in cells[2].split(",") if t.strip()] \
            if len(cells) > 2 else []
        ops[cells[0]] = {"supported": cells[1] == "Y", "types": types,
                         "restrictions": cells[3] if len(cells) > 3 else ""}
    return ops


@lru_cache(maxsize=1)
def matrix() -> dict[str, dict]:
    return json.loads(MATRIX.read_text())


def _constants(graph) -> set[str]:
    names = {init.name for init in graph.initializer}
    names |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    return names


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _restrictions(node, constants: set[str], values: dict) -> list[str]:
    problems = []
    op = node.op_type
    axes = CONSTANT_AXES.get(op)
    if axes is not None and len(node.input) > axes and node.input[axes] and node.input[axes] not in constants:
        problems.append("its axes input must be a constant (an initializer)")
    if op == "TopK":
        if _attr(node, "sorted", 1) != 1:
            problems.append("sorted must be 1")
        k = values.get(node.input[1])
        if k is None:
            problems.append("K must be a constant")
        elif int(k.max()) >= TOPK_MAX:
            problems.append(f"K is {int(k.max())}; it must be less than {TOPK_MAX}")
    if op == "Resize":
        if _attr(node, "mode", "nearest") not in RESIZE_MODES:
            problems.append(f"mode {_attr(node, 'mode')} is not nearest or linear")
        transform = _attr(node, "coordinate_transformation_mode", "half_pixel")
        if transform not in RESIZE_TRANSFORMS:
            problems.append(f"coordinate_transformation_mode {transform} is not supported")
        if _attr(node, "antialias", 0):
            problems.append("antialiasing is not supported")
    if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
        problems.append("the Indices output is not supported")
    if op == "LayerNormalization" and len(node.output) > 1 and any(node.output[1:]):
        problems.append("only the first output is supported")
    return problems


def check_graph(model) -> list[Issue]:
    """Every node TensorRT's parser would refuse or restrict (empty when the graph passes). ``model``: a
    ModelProto with inferred shapes (m2f export writes them) or a path."""
    import onnx
    from onnx import numpy_helper

    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    graph = model.graph
    table = matrix()
    constants = _constants(graph)
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    values.update({node.output[0]: numpy_helper.to_array(node.attribute[0].t) for node in graph.node
                   if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"})
    types = {v.name: onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)
             for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    types.update({init.name: onnx.TensorProto.DataType.Name(init.data_type) for init in graph.initializer})
    graph_io = {v.name for v in list(graph.input) + list(graph.output)}
    issues = []
    for node in graph.node:
        name = node.name or node.output[0]
        if node.domain not in STANDARD_DOMAINS:
            if (node.domain, node.op_type) not in KNOWN_PLUGINS:
                issues.append(Issue(name, node.op_type, f"a {node.domain} node that no known plugin implements"))
            continue
        row = table.get(node.op_type)
        if row is None or not row["supported"]:
            issues.append(Issue(name, node.op_type, "the parser does not support this op"))
            continue
        checked = node.output[0] if node.op_type in TYPED_BY_OUTPUT else (node.input[0] if node.input else "")
        first = types.get(checked) if checked else None
        trt_type = _ONNX_TO_TRT.get(first) if first else None
        if trt_type and trt_type not in row["types"]:
            issues.append(Issue(name, node.op_type, f"input type {trt_type} is not one of {', '.join(row['types'])}"))
        elif trt_type == "UINT8" and checked not in graph_io:
            issues.append(Issue(name, node.op_type, "UINT8 is supported only for network inputs and outputs"))
        issues += [Issue(name, node.op_type, p) for p in _restrictions(node, constants, values)]
    return issues
