"""ONNX -> TensorRT engine (``m2f build``), on the TensorRT Python API of 10.x and 11.x.

Two ways to a precision (docs/precision.md):

- strongly typed (TensorRT 10 and 11): the precision is in the ONNX (``m2f convert`` wrote fp16 tensors or Q/DQ
  nodes; ``build`` does it first for ``--precision``); the builder gets no precision flags and runs what the graph
  says.
- builder flags (TensorRT 10 only, ``--builder-flags``): an fp32 ONNX with ``--precision fp16|int8|best`` sets
  BuilderFlag.FP16 / INT8, INT8 with TensorRT's implicit entropy calibrator (IInt8EntropyCalibrator2 over ``--data``
  images at the calibration profile's shape, cache file). TensorRT 11 removed both; asking for it there is refused
  with one sentence.

Everything that does not need TensorRT -- the build plan, optimisation profiles from the metadata, shape flags, the
sidecar, the equivalent trtexec command line -- is plain Python and unit-tested; ``build_engine`` is the thin part
that calls TensorRT (tests marked ``trt``/``gpu``).
"""
from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from m2f import contract
from m2f.errors import ArgumentError, M2FError
from m2f.fileio import sha256_file
from m2f.onnx_graph import load_onnx

PRECISIONS = contract.PRECISIONS
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
MB = 1 << 20
DEFAULT_MAX_BATCH = 1  # of a dynamic graph's default profile


@dataclass(frozen=True)
class BuildPlan:
    """How TensorRT is asked for the precision: strongly typed (the ONNX decides) or builder flags (TensorRT 10)."""

    strongly_typed: bool
    flags: tuple[str, ...] = ()  # BuilderFlag names
    calibrator: bool = False  # implicit INT8 calibration (TensorRT 10)
    precision: str = "fp32"  # what the engine computes in, for the sidecar


def plan_build(graph_precision: str, requested: str | None, trt_major: int, has_calibration: bool) -> BuildPlan:
    """The build for an ONNX of ``graph_precision`` (its metadata) when ``requested`` (None: as the graph says)."""
    if requested is not None and requested not in PRECISIONS:
        raise ArgumentError(f"--precision {requested} is not one of {', '.join(PRECISIONS)}")
    if graph_precision != "fp32":
        if requested not in (None, graph_precision):
            raise ArgumentError(f"the ONNX is already {graph_precision} (its precision is in the graph); build it "
                                f"without --precision, or start from the fp32 export")
        return BuildPlan(True, precision=graph_precision)
    if requested in (None, "fp32"):
        return BuildPlan(True, precision="fp32")
    if trt_major >= 11:
        raise ArgumentError(f"TensorRT {trt_major} removed builder precision flags and implicit calibration; build "
                            f"without --builder-flags, which puts the precision into the ONNX first (as m2f convert "
                            f"model.onnx --precision {requested} does)")
    flags = {"fp16": ("FP16",), "int8": ("INT8",), "best": ("FP16", "INT8")}[requested]
    if "INT8" in flags and not has_calibration:
        raise ArgumentError(f"--precision {requested} with --builder-flags needs --data (images for TensorRT's "
                            f"entropy calibrator)")
    return BuildPlan(False, flags, "INT8" in flags, requested)


# ---------------------------------------------------------------------------------------------------------------
# Shapes

Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]  # input -> (min, opt, max)


def parse_shapes(text: str, flag: str) -> dict[str, tuple[int, ...]]:
    """trtexec's form ``image:1x800x1344x3,valid_size:1x2`` -> {"image": (1, 800, 1344, 3), ...}."""
    shapes = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, dims = item.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.split("x"))
        except ValueError:
            shape = ()
        if not name or not shape or min(shape) < 1:
            raise ArgumentError(f"{flag} {item!r} is not NAME:DxDx... with positive sizes (e.g. image:1x800x1344x3)")
        shapes[name] = shape
    return shapes


def _padded(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def _input_shape(meta: contract.Metadata, name: str, batch: int, height: int, width: int) -> tuple[int, ...]:
    if name == "valid_size":
        return (batch, 2)
    if meta.input.kind == "uint8":
        return (batch, height, width, 3)
    return (batch, 3, height, width)


def default_profile(meta: contract.Metadata, max_batch: int = DEFAULT_MAX_BATCH) -> Profile:
    """Optimisation profile of a dynamic graph from its metadata: canvases from one ``size_divisibility`` block up
    to the square of the longest test side, optimised for the landscape test size (e.g. 800x1344 for COCO); batch 1
    to ``max_batch``. A static graph has none (empty dict)."""
    if not meta.input.dynamic:
        return {}
    div, short, longest = meta.size_divisibility, meta.resize.short, meta.resize.max
    opt_hw = (_padded(short, div), _padded(longest, div))
    max_side = _padded(longest, div)
    return {name: (_input_shape(meta, name, 1, div, div), _input_shape(meta, name, 1, *opt_hw),
                   _input_shape(meta, name, max_batch, max_side, max_side)) for name in meta.input.names}


def profile(meta: contract.Metadata, min_shapes: str | None = None, opt_shapes: str | None = None,
            max_shapes: str | None = None, max_batch: int = DEFAULT_MAX_BATCH) -> Profile:
    """``default_profile`` with trtexec-style overrides; a static graph refuses them. valid_size follows the image's
    batch when only the image is given."""
    given = {k: parse_shapes(v, f"--{k}-shapes") for k, v in
             (("min", min_shapes), ("opt", opt_shapes), ("max", max_shapes)) if v}
    base = default_profile(meta, max_batch)
    if not base:
        if given:
            raise ArgumentError("the ONNX has static shapes, so --min/--opt/--max-shapes do not apply; export it "
                                "with --dynamic for a range of sizes")
        return {}
    names = meta.input.names
    result = {n: list(base[n]) for n in names}
    for position, kind in enumerate(("min", "opt", "max")):
        for name, shape in given.get(kind, {}).items():
            if name not in names:
                raise ArgumentError(f"--{kind}-shapes names {name}, which is not an input of the graph "
                                    f"({', '.join(names)})")
            if len(shape) != len(base[name][0]):
                raise ArgumentError(f"--{kind}-shapes {name} has {len(shape)} dims; it needs "
                                    f"{len(base[name][0])} (e.g. {'x'.join(map(str, base[name][1]))})")
            result[name][position] = shape
            if name != "valid_size" and "valid_size" in names and "valid_size" not in given.get(kind, {}):
                result["valid_size"][position] = (shape[0], 2)
    for name, (lo, opt, hi) in result.items():
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise ArgumentError(f"{name}: min {'x'.join(map(str, lo))}, opt {'x'.join(map(str, opt))} and max "
                                f"{'x'.join(map(str, hi))} are not ordered min <= opt <= max in every dim")
    return {n: tuple(tuple(s) for s in v) for n, v in result.items()}


# ---------------------------------------------------------------------------------------------------------------
# What is written next to the engine, and how to reproduce it with trtexec


@dataclass
class BuildOptions:
    precision: str | None = None  # None: as the ONNX says
    builder_flags: bool = False  # TensorRT 10: precision by builder flags (+ implicit INT8 calibration) instead
    min_shapes: str | None = None
    opt_shapes: str | None = None
    max_shapes: str | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    plugins: list[Path] = field(default_factory=list)
    timing_cache: Path | None = None
    workspace_mb: int | None = None
    calib_cache: Path | None = None  # TensorRT 10 implicit INT8: the calibrator's cache file
    dla_core: int | None = None


def sidecar(meta: contract.Metadata, *, trt_version: str, gpu: str, compute_capability: str, plan: BuildPlan,
            profiles: Profile, plugins: list[Path], onnx_path: Path) -> str:
    """The engine's ``<engine>.json``: the ONNX's metadata with the engine's precision and a ``tensorrt`` record."""
    engine = contract.EngineInfo(
        version=trt_version, gpu=gpu, compute_capability=compute_capability, strongly_typed=plan.strongly_typed,
        builder_flags=tuple(plan.flags),
        profiles={n: contract.ProfileShapes(*s) for n, s in profiles.items()}, flavor=meta.op_flavor,
        plugins=tuple(contract.FileRecord(str(p), sha256_file(p)) for p in plugins),
        onnx=contract.FileRecord(onnx_path.name, sha256_file(onnx_path)))
    return dataclasses.replace(meta, precision=plan.precision, tensorrt=engine).to_json()


def trtexec_command(onnx_path: Path, engine: Path, plan: BuildPlan, profiles: Profile, options: BuildOptions) -> str:
    """The trtexec line that builds the same engine (flag names of TensorRT 10.x/11.x trtexec)."""
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}"]
    if plan.strongly_typed:
        args.append("--stronglyTyped")
    args += [f"--{flag.lower()}" for flag in plan.flags]
    if plan.calibrator and options.calib_cache:
        args.append(f"--calib={options.calib_cache}")
    for kind, index in (("min", 0), ("opt", 1), ("max", 2)):
        if profiles:
            args.append(f"--{kind}Shapes=" + ",".join(f"{n}:{'x'.join(map(str, s[index]))}"
                                                     for n, s in profiles.items()))
    args += [f"--dynamicPlugins={p}" for p in options.plugins]
    if options.timing_cache:
        args.append(f"--timingCacheFile={options.timing_cache}")
    if options.workspace_mb:
        args.append(f"--memPoolSize=workspace:{options.workspace_mb}M")
    if options.dla_core is not None:
        args += [f"--useDLACore={options.dla_core}", "--allowGPUFallback"]
    return shlex.join(args)


def parser_error(errors: list[tuple[str, str, str]], flavor: str) -> str:
    """One sentence from the ONNX parser's errors [(node name, op type, description)], naming the first node and
    suggesting what to change."""
    node, op, desc = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if op.startswith("M2f") or "plugin" in desc.lower():
        hint = ("load m2f's plugin library with --plugins (m2f plugins build), or export --flavor portable"
                if flavor == "m2f" else "export with --flavor portable")
    else:
        hint = f"check the graph with m2f inspect --trt-compat; a different --flavor than {flavor} may avoid it"
    return f"TensorRT's ONNX parser refused node {node} ({op}): {desc}{more}; {hint}"


def in_graph_path(output: Path, precision: str) -> Path:
    """Where ``m2f build --precision`` writes the converted ONNX it builds: beside the engine,
    ``<engine stem>.<precision>.onnx`` (kept, so it can be validated and rebuilt)."""
    return output.with_name(f"{output.stem}.{precision}.onnx")


def build(model_path: str | Path, output: str | Path, options: BuildOptions, precision_options=None,
          progress: Callable[[str], None] = lambda s: None) -> dict:
    """``m2f build``: the engine ``output`` (and its sidecar) from the m2f ONNX at ``model_path``.

    The precision is the graph's, or ``options.precision`` for an fp32 graph: written into the ONNX first by
    ``m2f.calib.convert.convert`` (measured on ``precision_options``, m2f.calib.options.PrecisionOptions), the same
    step as ``m2f convert``, then built strongly typed; with ``options.builder_flags`` (TensorRT 10 only) by builder
    flags and TensorRT's implicit calibrator on ``precision_options.data`` instead. Returns build_engine's record
    plus "onnx", the graph that was built."""
    from m2f.errors import require
    from m2f.fileio import check_output_file

    from .options import PrecisionOptions

    require("tensorrt", "trt", "m2f build")
    model_path, output = Path(model_path), check_output_file(output, ENGINE_SUFFIXES)
    if not model_path.is_file():
        raise ArgumentError(f"{model_path} does not exist; give an .onnx written by m2f export")
    for lib in options.plugins:
        if not Path(lib).is_file():
            raise ArgumentError(f"plugin library {lib} does not exist; build it with m2f plugins build")
    precision_options = precision_options or PrecisionOptions()
    meta = contract.read_onnx(load_onnx(model_path, external_data=False), model_path.name)
    requested = options.precision
    calibration = None
    if options.builder_flags:
        options = dataclasses.replace(options, calib_cache=options.calib_cache or precision_options.cache
                                      or output.with_suffix(".calib"))
        if requested in ("int8", "best") and precision_options.data:
            from .data import CalibrationSet

            shapes = calibration_shapes(meta, profile(meta, options.min_shapes, options.opt_shapes,
                                                      options.max_shapes, options.max_batch))
            canvas, batch = calibration_canvas(meta, shapes)
            calibration = CalibrationSet.open(meta, precision_options.data, precision_options.calibration_images,
                                              precision_options.seed, canvas=canvas, batch=batch)
    elif requested not in (None, "fp32") and meta.precision == "fp32":
        from .convert import convert

        converted = in_graph_path(output, requested)
        progress(f"putting {requested} into the graph: {converted}")
        summary = convert(model_path, converted, requested, precision_options, progress)
        for line in summary.lines():
            progress(line)
        model_path = converted
        meta = contract.read_onnx(load_onnx(model_path, external_data=False), model_path.name)
        options = dataclasses.replace(options, precision=None)
    result = build_engine(model_path, output, meta, options, calibration, progress)
    return {**result, "onnx": model_path}


# ---------------------------------------------------------------------------------------------------------------
# The TensorRT part (needs TensorRT and a GPU)


def _progress_monitor(trt, report: Callable[[str], None]):
    """An IProgressMonitor printing each build phase once (TensorRT 10.0+)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):  # IProgressMonitor::phaseStart's order
            if parent_phase is None:
                report(f"      {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            pass

    return Monitor()


def entropy_calibrator(trt, batches: Iterable[dict], cache: Path | None, shapes: dict[str, tuple[int, ...]],
                       dtypes: dict[str, str], cuda=None):
    """TensorRT 10's IInt8EntropyCalibrator2 over ``batches`` (feed dicts of numpy arrays) with a cache file.

    TensorRT reads every calibration batch at one shape, the calibration profile's (its OPT shapes): one device
    buffer per input is allocated at exactly ``shapes[name]`` x ``dtypes[name]`` before the first batch, and every
    batch is checked against it, so a batch of another shape ends the calibration with an error (``.error``) instead
    of overrunning the buffer. ``cuda``: the CUDA calls (m2f.cuda.Cuda by default)."""
    import numpy as np

    from m2f.cuda import Cuda

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cuda, self.batches, self.error = cuda or Cuda(), iter(batches), None
            self.expected = {n: (tuple(s), np.dtype(dtypes[n])) for n, s in shapes.items()}
            self.buffers = {n: self.cuda.device_alloc(int(np.prod(s)) * d.itemsize)
                            for n, (s, d) in self.expected.items()}

        def get_batch_size(self):
            return next(iter(self.expected.values()))[0][0]

        def get_batch(self, names):
            feeds = next(self.batches, None)
            if feeds is None or self.error:
                return None
            pointers = []
            for name in names:
                shape, dtype = self.expected[name]
                host = np.ascontiguousarray(feeds[name])
                if host.shape != shape or host.dtype != dtype:
                    self.error = (f"a calibration batch has {name} {list(host.shape)} {host.dtype}, but TensorRT "
                                  f"calibrates at the profile's shape {list(shape)} {dtype}")
                    return None
                self.cuda.h2d(self.buffers[name], host)
                pointers.append(int(self.buffers[name]))
            self.cuda.sync()
            return pointers

        def read_calibration_cache(self):
            return cache.read_bytes() if cache and cache.exists() else None

        def write_calibration_cache(self, data):
            if cache:
                from m2f.fileio import write_bytes

                write_bytes(cache, bytes(data))

        def free(self):
            for buffer in self.buffers.values():
                self.cuda.device_free(buffer)
            self.buffers = {}

    return Calibrator()


def calibration_shapes(meta: contract.Metadata, profiles: Profile) -> dict[str, tuple[int, ...]]:
    """The shape of every input in a calibration batch: the calibration profile's OPT shapes for a dynamic graph
    (TensorRT overwrites its MIN and MAX with OPT while calibrating), the graph's own for a static one."""
    if profiles:
        return {name: tuple(shapes[1]) for name, shapes in profiles.items()}
    n, (h, w) = meta.input.batch, meta.input.canvas
    image = (n, h, w, 3) if meta.input.kind == "uint8" else (n, 3, h, w)
    return {name: (image if i == 0 else (n, 2)) for i, name in enumerate(meta.input.names)}


def calibration_canvas(meta: contract.Metadata, shapes: dict[str, tuple[int, ...]]) -> tuple[tuple[int, int], int]:
    """((H, W), batch) of the calibration batches' canvas, from their shapes."""
    image = shapes[meta.input.names[0]]
    return ((image[1], image[2]) if meta.input.kind == "uint8" else (image[2], image[3])), image[0]


def build_engine(onnx_path: Path, output: Path, meta: contract.Metadata, options: BuildOptions,
                 calibration: Iterable[dict] | None = None, progress: Callable[[str], None] = lambda s: None) -> dict:
    """Build ``output`` (and its sidecar) from ``onnx_path``; returns {"plan", "profiles", "trtexec", "seconds"}."""
    import time

    from m2f.cuda import Cuda
    from m2f.errors import require
    from m2f.fileio import atomic_path
    from m2f.runtime.backends.trt_plugins import load_plugin_libraries

    trt = require("tensorrt", "trt", "m2f build")
    major = int(trt.__version__.split(".")[0])
    if not options.builder_flags and meta.precision == "fp32" and options.precision not in (None, "fp32"):
        raise ArgumentError(f"{onnx_path.name} is fp32: put {options.precision} into the graph first (build() does, "
                            f"as m2f convert does), or ask for builder flags on TensorRT 10")
    plan = plan_build(meta.precision, options.precision, major, calibration is not None)
    profiles = profile(meta, options.min_shapes, options.opt_shapes, options.max_shapes, options.max_batch)
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    load_plugin_libraries(trt, options.plugins)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan.strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    progress(f"[1/3] parsing {onnx_path.name}")
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        raise M2FError(parser_error([(e.node_name(), e.node_operator(), e.desc()) for e in errors], meta.op_flavor))
    config = builder.create_builder_config()
    if options.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb * MB)
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    calibrator = None
    if plan.calibrator:
        shapes = calibration_shapes(meta, profiles)
        calibrator = entropy_calibrator(trt, calibration, options.calib_cache, shapes,
                                        {s.name: s.dtype for s in contract.input_specs(meta.input.kind, meta.head)})
        config.int8_calibrator = calibrator
    if options.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if profiles:
        opt_profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profiles.items():
            opt_profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(opt_profile)
        if plan.calibrator:  # implicit calibration of a dynamic network runs at one profile's shapes
            config.set_calibration_profile(opt_profile)
    cache = None
    if options.timing_cache:
        data = options.timing_cache.read_bytes() if options.timing_cache.exists() else b""
        cache = config.create_timing_cache(data)
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            raise M2FError(f"TensorRT refused the timing cache {options.timing_cache} (made by another TensorRT or "
                           f"GPU?); delete it, or give another --timing-cache file")
    config.progress_monitor = _progress_monitor(trt, progress)
    progress(f"[2/3] building ({plan.precision}, {'strongly typed' if plan.strongly_typed else 'builder flags'})")
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None:
        calibrator.free()
        if calibrator.error:
            raise M2FError(f"INT8 calibration stopped: {calibrator.error}")
    if serialized is None:
        raise M2FError("TensorRT could not build the engine (its log above says why); try --workspace with more MB "
                       "or another --flavor")
    seconds = time.perf_counter() - t0
    gpu, capability = Cuda().device()
    progress(f"[3/3] writing {output} and {output.name}.json")
    with atomic_path(output) as tmp:
        tmp.write_bytes(bytes(serialized))
    with atomic_path(contract.sidecar_path(output)) as tmp:
        tmp.write_text(sidecar(meta, trt_version=trt.__version__, gpu=gpu, compute_capability=capability,
                               plan=plan, profiles=profiles, plugins=options.plugins, onnx_path=onnx_path))
    if cache is not None:
        with atomic_path(options.timing_cache) as tmp:
            tmp.write_bytes(bytes(cache.serialize()))
    return {"plan": plan, "profiles": profiles, "seconds": seconds,
            "trtexec": trtexec_command(onnx_path, output, plan, profiles, options)}
