"""torch -> ONNX for a loaded Mask2Former: graph contract, op flavor, static or dynamic shapes, optional head,
clean-up, metadata; written atomically (a temporary file renamed into place, nothing left behind on failure).

The TorchScript-based exporter of torch.onnx is used (``dynamo=False``): it exports this model in about a second
where the torch.export-based one takes ~40 s for a tiny model, with the same numerics; shapes stay symbolic because
every size in the model is computed from traced tensor shapes (tests check dynamic graphs at untraced sizes).
"""
from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

import m2f
from m2f import contract
from m2f.errors import ArgumentError
from m2f.fileio import atomic_path, check_output_file
from m2f.onnx_graph import STANDARD_DOMAINS, describe_graph
from m2f.model.mask2former import Mask2Former
from m2f.plugins import lowering
from m2f.plugins.masked_attention import contract as masked_attention
from m2f.plugins.ms_deform_attn import contract as ms_deform_attn
from m2f.geometry import padded_size

from . import folding
from .adapter import GraphAdapter

SUPPORTED_OPSETS = range(17, 21)  # LayerNormalization needs 17; the TorchScript exporter stops at 20
FLAVORS = lowering.EXPORT_FLAVORS


@dataclass
class ExportOptions:
    input: str = "uint8"  # "uint8" (image + valid_size) or "float" (pixel_values)
    head: str | None = None  # None, "semantic", "instance", "panoptic"
    height: int | None = None  # static canvas; default: the preset's largest test image, padded
    width: int | None = None
    dynamic: bool = False  # symbolic N, H, W
    batch: int | None = None  # static batch size (default 1)
    square: bool = False  # a square static canvas (the long test side, padded): every orientation fits
    opset: int = 17
    flavor: str = "portable"  # portable | m2f | trt-builtin (m2f.plugins.lowering)
    tensorrt_version: str = "10.3"  # trt-builtin: the TensorRT the graph is for (picks the plugin's version)
    simplify: bool = True
    taps: bool = False  # also output every stage's intermediate result (m2f.contract.tap_specs), for validation
    thing_classes: tuple[str, ...] = ()  # names or ids: exactly these are things (contract.resolve_thing_ids)
    stuff_classes: tuple[str, ...] = ()  # names or ids that are stuff
    task: str | None = None  # advertise only this task (default: the config's tasks, plus the head's)

    @property
    def static_batch(self) -> int:
        return self.batch or 1


@dataclass
class ExportSummary:
    path: Path
    size_bytes: int
    nodes: int
    op_counts: dict[str, int]
    inputs: list[tuple[str, str, list]]
    outputs: list[tuple[str, str, list]]
    metadata: contract.Metadata
    seconds: dict[str, float] = field(default_factory=dict)


def default_canvas(model: Mask2Former, square: bool = False) -> tuple[int, int]:
    """The padded canvas of a landscape image at the largest test size, e.g. 800x1344 for COCO (800/1333); with
    ``square``, the long side both ways (1344x1344), which takes portrait images at the reference scale too."""
    cfg = model.config
    if square:
        return padded_size(cfg.max_size_test, cfg.max_size_test, cfg.size_divisibility)
    return padded_size(cfg.min_size_test, cfg.max_size_test, cfg.size_divisibility)


def check_options(options: ExportOptions) -> None:
    """The option combinations, before a checkpoint is even loaded. One sentence per problem."""
    if options.opset not in SUPPORTED_OPSETS:
        raise ArgumentError(f"opset {options.opset} is not supported; use {SUPPORTED_OPSETS[0]} to "
                            f"{SUPPORTED_OPSETS[-1]} (LayerNormalization needs 17)")
    if options.flavor not in FLAVORS:
        raise ArgumentError(f"op flavor {options.flavor!r} is not one of {', '.join(FLAVORS)}")
    if options.input not in ("uint8", "float"):
        raise ArgumentError(f"--input must be uint8 or float, not {options.input!r}")
    if options.head not in (None, *contract.HEADS):
        raise ArgumentError(f"--head must be one of {', '.join(contract.HEADS)}, not {options.head!r}")
    if options.dynamic and (options.height or options.width or options.batch or options.square):
        raise ArgumentError("--dynamic makes batch, height and width symbolic: give it without --batch, "
                            "--height/--width and --square")
    if options.square and (options.height or options.width):
        raise ArgumentError("give either --square or --height/--width, not both")
    if options.batch is not None and options.batch < 1:
        raise ArgumentError(f"batch must be at least 1, not {options.batch}")
    if options.task not in (None, *contract.TASKS):
        raise ArgumentError(f"--task must be one of {', '.join(contract.TASKS)}, not {options.task!r}")
    if options.task and options.head and options.task != options.head:
        raise ArgumentError(f"--head {options.head} computes {options.head} results, so the graph cannot advertise "
                            f"only --task {options.task}; give the same task to both, or one of them")


def advertised_tasks(cfg, options: ExportOptions) -> tuple[str, ...]:
    """The tasks the metadata advertises: ``options.task`` alone, or the config's plus the head's. Any task will
    do: the raw outputs serve all three, also for a model whose config turned on only semantic inference (its
    semantic post-processing order, ``sem_seg_postprocess_before_inference``, stays the config's)."""
    if options.task:
        return (options.task,)
    tasks = list(cfg.tasks)
    if options.head and options.head not in tasks:
        tasks.append(options.head)
    return tuple(t for t in contract.TASKS if t in tasks)


def resolve_canvas(model: Mask2Former, options: ExportOptions) -> tuple[int, int]:
    """The canvas (H, W) of a static export (the traced size of a dynamic one is chosen elsewhere)."""
    default = default_canvas(model, options.square)
    height, width = options.height or default[0], options.width or default[1]
    div = model.config.size_divisibility
    if height % div or width % div or height <= 0 or width <= 0:
        suggestion = padded_size(max(height, 1), max(width, 1), div)
        raise ArgumentError(f"canvas {height}x{width} is not a positive multiple of {div}; pick e.g. "
                            f"{suggestion[0]}x{suggestion[1]}")
    return height, width


def _sample_inputs(adapter: GraphAdapter, batch: int, height: int, width: int) -> tuple:
    g = torch.Generator().manual_seed(0)
    valid = torch.tensor([[height, width]] * batch, dtype=torch.int32)
    if adapter.input_kind == "uint8":
        return torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8, generator=g), valid
    x = torch.randn(batch, 3, height, width, generator=g)
    return (x, valid) if adapter.head else (x,)


def _graph_sizes(model: Mask2Former, options: ExportOptions, canvas: tuple[int, int]) -> dict:
    cfg = model.config
    channels = {f"C{k}": c for k, c in zip((2, 3, 4, 5), model.backbone.out_channels)}
    channels.update(D=cfg.conv_dim, E=cfg.mask_dim)
    return contract.graph_sizes(None if options.dynamic else options.static_batch, None if options.dynamic else canvas,
                                cfg.num_queries, cfg.num_classes, cfg.test_topk_per_image, channels)


def _io_shapes(adapter: GraphAdapter, options: ExportOptions, canvas: tuple[int, int]) -> dict[str, list]:
    """Every input's and output's shape from the contract: static dims as numbers, dynamic ones as names."""
    sizes = _graph_sizes(adapter.model, options, canvas)
    specs = contract.input_specs(adapter.input_kind, adapter.head) + contract.output_specs(adapter.head)
    if adapter.taps:
        specs += contract.tap_specs(adapter.model.config.dec_layers)
    return {s.name: contract.resolve_dims(s, sizes) for s in specs}


def _dynamic_axes(io_shapes: dict[str, list]) -> dict:
    """torch.onnx dynamic_axes: the symbolic dims of every input and output."""
    return {name: {i: d for i, d in enumerate(dims) if isinstance(d, str)} for name, dims in io_shapes.items()}


def _declare(graph_outputs, shapes: dict[str, list]) -> None:
    for value in graph_outputs:
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for d in shapes[value.name]:
            dim = dims.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d


_LAYOUTS = {"uint8": "NHWC uint8 RGB 0..255, zero-padded bottom/right; valid_size int32 [N, 2] = (h, w)",
            "float": "NCHW float32, normalised with pixel_mean/pixel_std, zero-padded bottom/right"}


def build_metadata(model: Mask2Former, adapter: GraphAdapter, options: ExportOptions, canvas: tuple[int, int],
                   source: dict) -> contract.Metadata:
    cfg = model.config
    first_input = contract.input_specs(adapter.input_kind, adapter.head)[0]
    shape = contract.resolve_dims(first_input, _graph_sizes(model, options, canvas))
    thing_ids, thing_source = thing_split(cfg, options)
    return contract.Metadata(
        format_version=contract.FORMAT_VERSION, m2f_version=m2f.__version__, model_name=cfg.name,
        tasks=advertised_tasks(cfg, options), num_classes=cfg.num_classes, num_queries=cfg.num_queries,
        class_names=tuple(class_names(cfg)), thing_ids=tuple(thing_ids), thing_source=thing_source,
        category_ids=tuple(cfg.category_ids) if cfg.category_ids else None,
        input=contract.InputInfo(
            names=tuple(adapter.input_names), kind=adapter.input_kind, layout=_LAYOUTS[adapter.input_kind],
            shape=tuple(shape), dynamic=options.dynamic,
            dynamic_range=contract.DynamicRange(cfg.size_divisibility) if options.dynamic else None),
        outputs=tuple(adapter.output_names), head=options.head,
        taps=tuple(s.name for s in contract.tap_specs(cfg.dec_layers)) if options.taps else (),
        pixel_mean=tuple(cfg.pixel_mean), pixel_std=tuple(cfg.pixel_std),
        resize=contract.Resize(cfg.min_size_test, cfg.max_size_test),
        size_divisibility=cfg.size_divisibility,
        thresholds=contract.Thresholds(cfg.object_mask_threshold, cfg.overlap_threshold),
        test_topk_per_image=cfg.test_topk_per_image,
        sem_seg_postprocess_before_inference=cfg.postprocess_before_inference,
        op_flavor=options.flavor, opset=options.opset, precision="fp32", source=contract.Source(**source),
        **plugin_requirements(options),
    )


def class_names(cfg) -> list[str]:
    """The config's class names, or class_0 ... when it has none."""
    return list(cfg.class_names or []) or [f"class_{i}" for i in range(cfg.num_classes)]


def thing_split(cfg, options: ExportOptions) -> tuple[list[int], str]:
    """thing_ids and where they come from (the config, every class when the dataset is unknown, or the options)."""
    return contract.resolve_thing_ids(class_names(cfg), cfg.num_classes, cfg.thing_ids, options.thing_classes,
                                      options.stuff_classes)


def plugin_requirements(options: ExportOptions) -> dict:
    """What a TensorRT build of the graph needs: ``plugins`` (the plugins its nodes name) and ``min_tensorrt`` (the
    oldest TensorRT that has them)."""
    if options.flavor == "m2f":
        ops = (ms_deform_attn, masked_attention)
        return {"plugins": tuple(contract.PluginInfo(op.PLUGIN_NAME, op.PLUGIN_NAMESPACE, op.PLUGIN_VERSION,
                                                     "libm2f_plugins.so (m2f plugins build)") for op in ops),
                "min_tensorrt": "10.3"}
    if options.flavor == "trt-builtin":
        version = ms_deform_attn.trt_builtin_version(options.tensorrt_version)
        return {"plugins": (contract.PluginInfo(ms_deform_attn.TRT_BUILTIN_NAME, "", version,
                                                "TensorRT's libnvinfer_plugin"),),
                "min_tensorrt": "10.11" if version == "2" else "10.0"}
    return {"plugins": (), "min_tensorrt": "10.0"}


def _simplify(model_proto, static: bool):
    """The traced graph cleaned up. A static graph: ONNX Runtime's constant folding alone, cut around any plugin
    nodes (``folding``; onnxslim after it found nothing left to remove and took seconds: a tiny export 749 nodes in
    0.3 s, 755 after 3.5 s more of onnxslim). A dynamic one: that folding (not with plugin nodes, whose sizes are then
    symbolic), then onnxslim for what depends on the symbolic sizes (a tiny dynamic Swin: 1790 nodes in 3.9 s, where
    onnxslim alone gave 1853 in 5.9 s)."""
    import onnxslim

    if folding.foldable(model_proto):
        model_proto = folding.fold_constants(model_proto)
        if static:
            folding.share_index_constants(model_proto)
            return model_proto
    with contextlib.redirect_stdout(io.StringIO()):
        return onnxslim.slim(model_proto)


def _trace(adapter: GraphAdapter, options: ExportOptions, canvas: tuple[int, int], io_shapes: dict,
           path: Path) -> None:
    """torch.onnx (TorchScript exporter) -> ``path``. A dynamic graph is traced at batch 2 (so no code path can take
    batch 1 for granted) on a small, non-square canvas: every size in it is symbolic, so the traced size only sets
    how long tracing takes."""
    div = adapter.model.config.size_divisibility
    sample = _sample_inputs(adapter, 2, 4 * div, 5 * div) if options.dynamic else \
        _sample_inputs(adapter, options.static_batch, *canvas)
    lowering_scope = lowering.lowered(options.flavor, tensorrt_version=options.tensorrt_version,
                                      static=not options.dynamic)
    with warnings.catch_warnings(), torch.no_grad(), lowering_scope:
        warnings.simplefilter("ignore")
        torch.onnx.export(adapter, sample, str(path), dynamo=False, opset_version=options.opset,
                          input_names=adapter.input_names, output_names=adapter.output_names,
                          dynamic_axes=_dynamic_axes(io_shapes) if options.dynamic else None,
                          do_constant_folding=True)


def _drop_untyped_value_info(graph) -> None:
    """Value-info entries without an element type (onnxslim leaves an untyped duplicate for a plugin node's output;
    ONNX Runtime refuses "data type 0"), dropped."""
    kept = [v for v in graph.value_info if v.type.tensor_type.elem_type != 0]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def _finish(proto, io_shapes: dict, metadata: contract.Metadata):
    """Declared output shapes, shape inference, the metadata entry and the IR version; checked."""
    import onnx

    _declare(proto.graph.output, io_shapes)
    proto = onnx.shape_inference.infer_shapes(proto)
    _drop_untyped_value_info(proto.graph)
    contract.write_onnx(proto, metadata)
    # the IR version the standard opsets need (custom plugin domains have none); ONNX Runtime 1.31 reads up to 13
    standard = [o for o in proto.opset_import if o.domain in STANDARD_DOMAINS]
    proto.ir_version = onnx.helper.find_min_ir_version_for(standard)
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model: Mask2Former, path: str | Path, options: ExportOptions | None = None,
                source: dict | None = None, progress: Callable[[str], None] = lambda s: None) -> ExportSummary:
    """Export ``model`` to ``path`` (see the module docstring); ``source`` describes the checkpoint for metadata."""
    import onnx

    options = options or ExportOptions()
    path = check_output_file(path, (".onnx",))
    check_options(options)
    height, width = resolve_canvas(model, options)
    adapter = GraphAdapter(model, options.input, options.head, options.taps).eval()
    shape_text = "dynamic N, H, W" if options.dynamic else f"static {options.static_batch}x{height}x{width}"
    io_shapes = _io_shapes(adapter, options, (height, width))
    seconds = {}
    with atomic_path(path) as tmp:
        progress(f"[1/4] tracing ({options.flavor} ops, {options.input} input, head {options.head or 'none'}, "
                 f"{shape_text}, opset {options.opset})")
        t0 = time.perf_counter()
        _trace(adapter, options, (height, width), io_shapes, tmp)
        seconds["trace"] = time.perf_counter() - t0
        proto = onnx.load(str(tmp))
        if options.simplify:
            progress(f"[2/4] cleaning up {len(proto.graph.node)} nodes (constant folding, dead nodes, shape "
                     f"inference)")
            t0 = time.perf_counter()
            proto = _simplify(proto, static=not options.dynamic)
            seconds["simplify"] = time.perf_counter() - t0
        else:
            progress("[2/4] clean-up skipped")
        progress("[3/4] shape inference, metadata, checker")
        metadata = build_metadata(model, adapter, options, (height, width), source or {"name": "(not given)"})
        proto = _finish(proto, io_shapes, metadata)
        progress(f"[4/4] writing {path}")
        onnx.save(proto, str(tmp))
    graph = describe_graph(proto)
    return ExportSummary(path=path, size_bytes=path.stat().st_size, nodes=graph.nodes, op_counts=graph.op_counts,
                         inputs=graph.inputs, outputs=graph.outputs, metadata=metadata, seconds=seconds)
