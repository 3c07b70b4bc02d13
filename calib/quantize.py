"""INT8 with explicit Q/DQ, placed where TensorRT fuses it: ``quantize(model, stats, method) -> ModelProto``.

What is quantised: the inputs of Conv, MatMul and Gemm nodes whose second input is a weight (an initializer) --
activations per tensor, weights per output channel, both symmetric int8 (zero point 0, scale = amax / 127), weights
stored as int8 initializers read by DequantizeLinear. Nothing else: biases stay float, outputs get no Q/DQ, and
the numerically sensitive parts (docs/numerics.md: the masked-attention threshold, softmaxes, norms, the deformable
sampling index math, the mask einsum) are never Conv/MatMul/Gemm-with-weights, so they stay float. Attention
MatMuls between two activations are left float (a per-tensor scale for both sides costs accuracy for little gain).
Nodes matching an ``exclude`` pattern (fnmatch on the node name) stay float too.

Q/DQ insertion is onnxruntime.quantization's QDQQuantizer, configured for TensorRT (the configuration measured within
0.1 PQ on the bundled model); the ranges are m2f's own (m2f.calib.statistics + ranges), so changing the method does
not run the model again. Each quantised node gets its own Q/DQ pair, as TensorRT's fusions expect.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from m2f.errors import ArgumentError
from m2f.onnx_graph import STANDARD_DOMAINS

from .ranges import DEFAULT_PERCENTILE, threshold
from .statistics import Statistics

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
INT8_MAX = 127


@dataclass
class Selection:
    """Which nodes get Q/DQ, which activation tensors need a range, and what was left float and why."""

    nodes: list[str] = field(default_factory=list)
    activations: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # node name -> reason


def _weights(model) -> set[str]:
    names = {i.name for i in model.graph.initializer}
    return names | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}


def select(model, exclude: tuple[str, ...] = ()) -> Selection:
    """The quantisable nodes of ``model`` (module docstring); ``exclude``: fnmatch patterns of node names."""
    weights = _weights(model)
    chosen = Selection()
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS or node.domain not in STANDARD_DOMAINS:
            continue
        if not node.name:
            raise ArgumentError("the graph has an unnamed Conv/MatMul/Gemm node; export it again with m2f export")
        pattern = next((p for p in exclude if fnmatch.fnmatchcase(node.name, p)), None)
        if pattern:
            chosen.excluded[node.name] = f"--exclude {pattern}"
        elif node.input[1] not in weights:
            chosen.excluded[node.name] = "both inputs are activations (attention)"
        elif node.input[0] in weights:
            chosen.excluded[node.name] = "constant input"
        else:
            chosen.nodes.append(node.name)
            if node.input[0] not in chosen.activations:
                chosen.activations.append(node.input[0])
    return chosen


def amax_table(stats: Statistics, tensors: list[str], method: str, percentile: float = DEFAULT_PERCENTILE) \
        -> dict[str, float]:
    """amax per activation tensor by ``method``."""
    return {t: threshold(method, stats.amax[t], stats.counts[t], percentile) for t in tensors}


def quantize(model, selection: Selection, amax: dict[str, float]):
    """A copy of ``model`` with Q/DQ on the selected nodes (ranges ``amax``); ONNX Runtime's quantizer does the
    insertion. Tensors whose amax is 0 (never non-zero in calibration) are left float."""
    import copy

    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    import numpy as np

    ranges = {t: TensorData(lowest=np.float32(-a), highest=np.float32(a)) for t, a in amax.items() if a > 0}
    nodes = [n.name for n in model.graph.node if n.name in set(selection.nodes) and n.input[0] in ranges]
    quantizer = QDQQuantizer(
        copy.deepcopy(model), True, False, QuantType.QInt8, QuantType.QInt8,
        TensorsData(CalibrationMethod.MinMax, ranges), nodes, [], list(QUANTIZED_OPS),
        {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False, "DedicatedQDQPair": True,
         "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS), "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}})
    quantizer.quantize_model()
    quantizer.model.topological_sort()  # the quantizer appends Q/DQ nodes at the end of the node list
    return quantizer.model.model
