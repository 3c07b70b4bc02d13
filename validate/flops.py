"""FLOPs per stage of an exported graph, and the roofline lower bound of its latency on GPUs you may not have.

Counting follows the paper's tool (fvcore, as Mask2Former's tools/analyze_model.py uses it): one fused multiply-add
is one FLOP; convolutions, matrix products (MatMul, Gemm, Einsum) and bilinear resizes (4 per output element, as
fvcore counts upsample_bilinear2d) are counted; element-wise ops, norms, softmaxes and gathers are not. One
difference is the deformable attention's sampling: fvcore counts a grid_sample 4 FLOPs per output element, while
the exported graph samples with Gathers, which are not counted here (for R50 at 800x1216 that is about 0.4 GFLOPs).

Stages come from the node names torch.onnx writes (the module path): backbone, pixel decoder (``sem_seg_head
.pixel_decoder``), transformer decoder (``sem_seg_head.predictor``), and everything else in the graph
(normalisation of the uint8 input, in-graph post-processing heads). Shapes are resolved for the requested input size
with ONNX Runtime's symbolic shape inference, so dynamic graphs are counted at any size; where it cannot resolve
them (Swin's shape-dependent window padding), the graph is run once on a blank image of that size with the counted
nodes' tensors as extra outputs, and their shapes are read off.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2f import contract
from m2f.onnx_graph import load_onnx

STAGES = (("backbone", "/model/backbone/"), ("pixel decoder", "/model/sem_seg_head/pixel_decoder/"),
          ("transformer decoder", "/model/sem_seg_head/predictor/"))
OTHER = "pre/post-processing in graph"


@dataclass(frozen=True)
class Gpu:
    name: str
    fp16_tflops: float  # dense tensor-core peak
    int8_tops: float  # dense tensor-core peak
    bandwidth_gbs: float
    source: str


# Vendor figures, dense (no structured sparsity). Jetson GPUs: the GPU alone, not GPU + DLA.
GPUS = {
    "orin-agx": Gpu("Jetson AGX Orin 64GB (GPU)", 42.5, 85.0, 204.8,
                    "Jetson AGX Orin Series Technical Brief v1.2: 170 sparse INT8 TOPS (GPU), LPDDR5 204.8 GB/s; "
                    "dense = half of sparse, FP16 = half of INT8"),
    "orin-nx": Gpu("Jetson Orin NX 16GB (GPU)", 15.0, 30.0, 102.4,
                   "derived from the AGX Orin brief: 32 of its 64 tensor cores at 918 of 1300 MHz; 102.4 GB/s "
                   "(Orin NX datasheet)"),
    "t4": Gpu("T4", 65.0, 130.0, 320.0, "NVIDIA T4 datasheet"),
    "a10": Gpu("A10", 125.0, 250.0, 600.0, "NVIDIA A10 datasheet"),
    "a100": Gpu("A100 SXM4 80GB", 312.0, 624.0, 2039.0, "NVIDIA A100 datasheet"),
    "l4": Gpu("L4", 121.0, 242.5, 300.0, "NVIDIA L4 datasheet (half of its sparse figures)"),
    "h100": Gpu("H100 SXM5", 989.4, 1978.9, 3350.0, "NVIDIA H100 datasheet"),
    "h200": Gpu("H200 SXM", 989.4, 1978.9, 4800.0, "NVIDIA H200 datasheet"),
}


# bytes per activation element an engine of each precision moves (int8 engines keep int8 between fused layers)
ACTIVATION_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "Resize")  # the ops whose outputs are counted


@dataclass
class StageCost:
    flops: int = 0  # multiply-adds (one per fused multiply-add)
    weight_bytes: int = 0  # parameters the stage reads (at their stored precision)
    activations: int = 0  # elements written by the counted ops (each written once and read once by its consumer)


def _stage(node_name: str) -> str:
    return next((stage for stage, prefix in STAGES if node_name.startswith(prefix)), OTHER)


def _input_dims(model, batch: int, height: int, width: int) -> dict[str, list[int]]:
    sizes = {"N": batch, "H": height, "W": width}
    dims = {}
    for value in model.graph.input:
        spec = next(s for kind in contract.INPUT_KINDS for s in contract.input_specs(kind, "semantic")
                    if s.name == value.name)
        dims[value.name] = [sizes[d] if isinstance(d, str) else d for d in spec.dims]
    return dims


def _inferred_shapes(model, inputs: dict[str, list[int]]) -> dict[str, list[int]]:
    """Shapes from ONNX Runtime's symbolic shape inference with the inputs fixed (0 where it could not tell)."""
    import logging

    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.value_info[:]
    for value in model.graph.input:
        for dim, size in zip(value.type.tensor_type.shape.dim, inputs[value.name]):
            dim.ClearField("dim_param")
            dim.dim_value = size
    log = logging.getLogger("onnxruntime.tools.symbolic_shape_infer")
    level = log.level
    log.setLevel(logging.ERROR)  # it warns about every comparison it cannot decide
    try:
        model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    finally:
        log.setLevel(level)
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}


def _measured_shapes(model, inputs: dict[str, list[int]], names: list[str]) -> dict[str, list[int]]:
    """Shapes of ``names`` by running the graph once on zeros (a blank image filling the canvas)."""
    import onnx

    from m2f.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    model = onnx.ModelProto.FromString(model.SerializeToString())
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
    feeds = {name: np.zeros(dims, np.uint8 if name == contract.IMAGE else np.float32) for name, dims in inputs.items()}
    if contract.VALID_SIZE in feeds:
        feeds[contract.VALID_SIZE] = np.array([inputs[contract.IMAGE][1:3]] * inputs[contract.IMAGE][0], np.int32)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path))
        with OnnxRuntimeBackend(path, ["CPUExecutionProvider"]) as runner:
            outputs = runner.session.run(None, feeds)
            return {n: list(a.shape) for n, a in zip(runner.output_names, outputs)}


def _shapes(model, batch: int, height: int, width: int) -> dict[str, list[int]]:
    inputs = _input_dims(model, batch, height, width)
    shapes = _inferred_shapes(model, inputs)
    shapes.update({init.name: list(init.dims) for init in model.graph.initializer})
    needed = [n for node in model.graph.node if node.op_type in COUNTED for n in (node.input[0], node.output[0])]
    unresolved = [n for n in needed if not shapes.get(n) or 0 in shapes[n]]
    if unresolved:
        shapes.update(_measured_shapes(model, inputs, unresolved))
    return shapes


def _node_flops(node, shapes: dict[str, list[int]]) -> int:
    shape = lambda i: shapes.get(node.input[i]) if i < len(node.input) else None  # noqa: E731
    out = shapes.get(node.output[0])
    if node.op_type in ("Conv", "ConvTranspose") and out and shape(1):
        w = shape(1)  # [Cout, Cin/groups, kh, kw]
        return int(np.prod(out) * np.prod(w[1:])) if node.op_type == "Conv" else int(np.prod(shape(0)) * np.prod(w[1:]))
    if node.op_type in ("MatMul", "Gemm") and out and shape(0):
        a = shape(0)
        transposed = node.op_type == "Gemm" and any(att.name == "transA" and att.i for att in node.attribute)
        k = a[-2] if transposed else a[-1]
        return int(np.prod(out) * k)
    if node.op_type == "Einsum" and out and shape(0):
        equation = next(att.s.decode() for att in node.attribute if att.name == "equation")
        inputs = equation.split("->")[0].split(",")
        letters = {}
        for term, i in zip(inputs, range(len(node.input))):
            letters.update(dict(zip(term.replace(" ", ""), shape(i) or [])))
        return int(np.prod(list(letters.values())))
    if node.op_type == "Resize" and out:
        mode = next((att.s.decode() for att in node.attribute if att.name == "mode"), "nearest")
        return int(np.prod(out)) * (4 if mode == "linear" else 1)
    return 0


def count_flops(path: str | Path, height: int, width: int, batch: int = 1) -> dict[str, StageCost]:
    """FLOPs and weight bytes per stage of the graph at ``path`` for a ``height`` x ``width`` canvas."""
    model = load_onnx(path)
    meta = contract.read_onnx(model, str(path))
    if not meta.input.dynamic:
        batch, (height, width) = meta.input.batch, meta.input.canvas
    shapes = _shapes(model, batch, height, width)
    sizes = {init.name: init.raw_data and len(init.raw_data) or int(np.prod(init.dims)) * 4
             for init in model.graph.initializer}
    costs = {stage: StageCost() for stage, _ in STAGES} | {OTHER: StageCost()}
    seen: set[str] = set()
    for node in model.graph.node:
        cost = costs[_stage(node.name)]
        cost.flops += _node_flops(node, shapes)
        if node.op_type in COUNTED and shapes.get(node.output[0]):
            cost.activations += int(np.prod(shapes[node.output[0]]))
        for name in node.input:
            if name in sizes and name not in seen:
                seen.add(name)
                cost.weight_bytes += sizes[name]
    return costs


@dataclass(frozen=True)
class Bound:
    ms: float  # the lower bound
    compute_ms: float  # the arithmetic at the tensor-core peak
    memory_ms: float  # weights read once, counted activations written once and read once, at full bandwidth
    limit: str  # "compute" or "memory": whichever is larger


def roofline(cost: StageCost, gpu: Gpu, precision: str) -> Bound:
    """A lower bound of a stage's latency on ``gpu``: the larger of its arithmetic at the tensor-core peak (2
    operations per multiply-add) and its memory traffic at full bandwidth (weights at the engine's precision read
    once; the outputs of the counted ops written once and read once). Element-wise ops, norms, the deformable
    sampling and launch overheads only add to it."""
    peak = (gpu.int8_tops if precision == "int8" else gpu.fp16_tflops) * 1e12
    weight_bytes = cost.weight_bytes * ACTIVATION_BYTES[precision] / 4  # stored as fp32
    traffic = weight_bytes + 2 * cost.activations * ACTIVATION_BYTES[precision]
    compute, memory = 1000 * 2 * cost.flops / peak, 1000 * traffic / (gpu.bandwidth_gbs * 1e9)
    return Bound(max(compute, memory), compute, memory, "compute" if compute >= memory else "memory")


def flops_record(path: str | Path, canvases: list[tuple[int, int]]) -> dict:
    """FLOPs, weights and activation traffic per stage, averaged over ``canvases`` (H, W); JSON-ready."""
    per_size = {c: count_flops(path, *c) for c in set(canvases)}
    stages = list(next(iter(per_size.values())))

    def mean(field: str) -> dict[str, float]:
        return {s: sum(getattr(per_size[c][s], field) for c in canvases) / len(canvases) for s in stages}

    flops, activations = mean("flops"), mean("activations")
    weights = {s: next(iter(per_size.values()))[s].weight_bytes for s in stages}
    return {"canvases": sorted({f"{h}x{w}" for h, w in canvases}), "images": len(canvases),
            "gflops": {s: flops[s] / 1e9 for s in stages}, "total_gflops": sum(flops.values()) / 1e9,
            "weight_mb": {s: weights[s] / 2**20 for s in stages},
            "activation_melements": {s: activations[s] / 1e6 for s in stages}}


def estimates(names: str, record: dict) -> dict:
    """Roofline bounds per stage and for the whole graph on the named GPUs ("all" for every one), at fp16 and
    int8, from a ``flops_record`` (None: only check the names)."""
    from m2f.errors import ArgumentError

    chosen = list(GPUS) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in GPUS]
    if unknown:
        raise ArgumentError(f"--estimate: unknown GPU {', '.join(unknown)}; choose from {', '.join(GPUS)} or all")
    if record is None:
        return {}
    out = {}
    for name in chosen:
        gpu = GPUS[name]
        per: dict = {}
        for precision in ("fp16", "int8"):
            stages = {s: roofline(StageCost(int(g * 1e9), int(record["weight_mb"][s] * 2**20),
                                            int(record["activation_melements"][s] * 1e6)), gpu, precision)
                      for s, g in record["gflops"].items()}
            compute = sum(b.compute_ms for b in stages.values())
            memory = sum(b.memory_ms for b in stages.values())
            per[precision] = {"stages": {s: {"ms": b.ms, "limit": b.limit} for s, b in stages.items()},
                              "total_ms": sum(b.ms for b in stages.values()),
                              "limit": "compute" if compute >= memory else "memory"}
        out[name] = {"gpu": gpu.name, "source": gpu.source, "lower_bound": per}
    return out
