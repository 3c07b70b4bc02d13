"""An fp32 m2f ONNX at another precision, measured: ``convert(model, output, precision, options)``, the one entry
point behind ``m2f convert`` and the ``--precision`` of ``m2f export`` and ``m2f build``.

- fp16 (``convert_fp16``): the sensitivity sweep (m2f.calib.sensitivity) on measurement images, the conversion
  with fp32 islands (m2f.calib.fp16), checks, metadata, and the sensitivity table beside the model;
- int8 (``m2f.calib.int8.calibrate``): explicit Q/DQ from calibration statistics;
- best (``convert_best``): INT8 Q/DQ on the blocks whose int8 version measures safe, fp16 everywhere else but the
  fp32 islands; the Q/DQ scales become fp16 too, which ONNX allows from opset 19."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from m2f.onnx_graph import STANDARD_DOMAINS, load_onnx

from .int8 import trt_note
from .options import IN_GRAPH, SWEEP_IMAGES, PrecisionOptions
from .sensitivity import Sweep

MIN_OPSET_BEST = 19  # QuantizeLinear / DequantizeLinear with fp16 scales


def convert(model_path: str | Path, output: str | Path, precision: str, options: PrecisionOptions,
            progress: Callable[[str], None] = lambda s: None):
    """fp32 m2f ONNX at ``model_path`` -> ``output`` (written atomically) at ``precision`` (fp16 | int8 | best),
    measured on ``options``' images; returns the step's summary (its ``lines()`` say what was done)."""
    from m2f.errors import ArgumentError

    if precision not in IN_GRAPH:
        raise ArgumentError(f"--precision {precision} is not one of {', '.join(IN_GRAPH)}")
    options.check(precision)
    model_path, output = input_and_output(model_path, output)
    if precision == "fp16":
        if not options.data:
            progress(f"note: measuring fp16 sensitivity on {options.fp16_data}; pass --data with images of your "
                     f"domain")
        return convert_fp16(model_path, output, options, progress)
    if precision == "best":
        return convert_best(model_path, output, options, SWEEP_IMAGES, progress)
    from .int8 import calibrate

    return calibrate(model_path, output, options, progress)


@dataclass
class Fp16Summary:
    path: Path
    sweep: Sweep
    fp16_nodes: int
    fp32_nodes: int
    casts: int
    tables: tuple[Path, Path]
    trt_issues: list

    def lines(self) -> list[str]:
        sweep = self.sweep
        return [f"wrote {self.path}: {self.fp16_nodes} nodes fp16, {self.fp32_nodes} fp32, {self.casts} Casts; sweep "
                f"of {len(sweep.blocks)} blocks on {sweep.images} images took {sweep.seconds:.0f} s",
                f"  fp32 islands: {', '.join(sweep.islands) or 'none'}",
                f"  whole graph vs fp32: {sweep.whole.flips:.1e} of mask signs flipped, {sweep.whole.decisions:.1e} of "
                f"query decisions changed (ONNX Runtime CPU: fp16 storage, not fp16 arithmetic)",
                f"  sensitivity table: {self.tables[1]}", *trt_note(self.trt_issues)]


def _feeds(meta, data: str, images: int, seed: int) -> list[dict]:
    from .data import CalibrationSet

    return list(CalibrationSet.open(meta, data, images, seed))


def _check_unique_names(model) -> None:
    from m2f.errors import M2FError

    seen: set[str] = set()
    for node in model.graph.node:
        if node.name in seen:
            raise M2FError(f"the fp16 graph has two nodes named {node.name}; this is a bug in m2f's converter")
        seen.add(node.name)


def input_and_output(model: str | Path, output: str | Path) -> tuple[Path, Path]:
    """The fp32 input model and a different output .onnx, checked before any work (one sentence otherwise)."""
    from m2f.errors import ArgumentError, require
    from m2f.fileio import check_output_file

    for module in ("onnx", "onnxruntime"):
        require(module, "export", "converting an ONNX model")
    model = Path(model)
    if not model.is_file():
        raise ArgumentError(f"{model} does not exist; give the fp32 .onnx that m2f export wrote")
    output = check_output_file(output, (".onnx",))
    if output.resolve() == model.resolve():
        raise ArgumentError("--output is the input model; write the new graph to another file")
    return model, output


def convert_fp16(model_path: str | Path, output: str | Path, options: PrecisionOptions = PrecisionOptions(),
                 progress: Callable[[str], None] = lambda s: None) -> Fp16Summary:
    """Measure (on ``options.fp16_data``, ``options.images`` or SWEEP_IMAGES of them), convert and write ``output``
    atomically (its metadata: precision fp16 and the islands)."""
    import onnx

    from m2f.contract import Fp16Info, GraphChange, read_onnx
    from m2f.errors import ArgumentError
    from m2f.fileio import atomic_path, check_output_file
    from m2f.calib.trt_compat import check_graph

    from .fp16 import block_of, to_fp16
    from .int8 import with_metadata
    from .sensitivity import sweep, whole_graph

    model_path, output = Path(model_path), check_output_file(output, (".onnx",))
    model = load_onnx(model_path)
    meta = read_onnx(model, model_path.name)
    if meta.precision != "fp32":
        raise ArgumentError(f"{model_path.name} is already {meta.precision}; convert the fp32 export")
    data, threads = options.fp16_data, options.threads
    feeds = _feeds(meta, data, options.images or SWEEP_IMAGES, options.seed)
    images = len(feeds)  # fewer when the data has fewer
    progress(f"[1/3] fp16 sensitivity of each block on {images} images of {data}")
    table = sweep(model, feeds, threads, progress)
    progress(f"[2/3] converting: fp32 islands {', '.join(table.islands) or 'none'}")
    islands = set(table.islands)
    conversion = to_fp16(model, {n.name for n in model.graph.node if block_of(n.name) in islands})
    whole_graph(table, conversion.model, feeds, threads)
    fp16 = Fp16Info(islands=tuple(table.islands), images=images, data=data,
                    whole_graph=GraphChange(table.whole.flips, table.whole.decisions))
    half = with_metadata(conversion.model, dataclasses.replace(meta, precision="fp16", fp16=fp16))
    onnx.checker.check_model(half, full_check=True)
    _check_unique_names(half)
    progress(f"[3/3] writing {output}")
    with atomic_path(output) as tmp:
        onnx.save(half, str(tmp))
    table.images, table.data = images, data
    return Fp16Summary(output, table, conversion.fp16_nodes, conversion.fp32_nodes, conversion.casts,
                       table.write(output), check_graph(half))


@dataclass
class BestSummary:
    path: Path
    int8: Sweep  # its last row: the written graph
    fp16: Sweep
    quantized: int
    tables: list[Path]
    trt_issues: list

    def lines(self) -> list[str]:
        final = self.int8.whole
        return [f"wrote {self.path}: Q/DQ on {self.quantized} Conv/MatMul/Gemm nodes, fp16 elsewhere",
                f"  kept out of int8: {', '.join(self.int8.islands) or 'nothing (every block measured safe)'}",
                f"  fp32 islands: {', '.join(self.fp16.islands) or 'none'}",
                f"  whole graph vs fp32: {final.flips:.1e} of mask signs flipped, {final.decisions:.1e} of query "
                f"decisions changed (ONNX Runtime CPU)",
                f"  sensitivity tables: {', '.join(str(p) for p in self.tables if p.suffix == '.md')}",
                *trt_note(self.trt_issues)]


def convert_best(model_path: str | Path, output: str | Path, options: PrecisionOptions,
                 sweep_images: int = SWEEP_IMAGES,
                 progress: Callable[[str], None] = lambda s: None) -> BestSummary:
    """fp32 -> INT8 where its block measures safe, fp16 elsewhere, fp32 islands."""
    import onnx

    from m2f.contract import Fp16Info
    from m2f.errors import ArgumentError
    from m2f.fileio import atomic_path, check_output_file
    from m2f.calib.trt_compat import check_graph

    from .fp16 import block_of, to_fp16
    from .int8 import int8_metadata, prepare, with_metadata
    from .quantize import quantize
    from .sensitivity import int8_sweep, sweep, whole_graph

    model_path, output = Path(model_path), check_output_file(output, (".onnx",))
    proto = load_onnx(model_path)
    opset = next((o.version for o in proto.opset_import if o.domain in STANDARD_DOMAINS), 0)
    if opset < MIN_OPSET_BEST:
        raise ArgumentError(f"--precision best stores fp16 Q/DQ scales, which need opset {MIN_OPSET_BEST} or newer; "
                            f"{model_path.name} has opset {opset}: export it again with --opset {MIN_OPSET_BEST}")
    prepared = prepare(model_path, options, progress, step="[1/4]", proto=proto)
    feeds = list(itertools.islice(prepared.data, sweep_images))
    progress(f"[2/4] int8 sensitivity of each block on {len(feeds)} images")
    int8 = int8_sweep(prepared.proto, feeds, prepared.selection, prepared.amax, options.threads, progress)
    unsafe = set(int8.islands)
    selection = prepared.selection
    selection = dataclasses.replace(
        selection, nodes=[n for n in selection.nodes if block_of(n) not in unsafe],
        excluded={**selection.excluded, **{n: "int8 measured sensitive" for n in selection.nodes
                                           if block_of(n) in unsafe}})
    progress(f"[3/4] fp16 sensitivity of each block on {len(feeds)} images")
    fp16 = sweep(prepared.proto, feeds, options.threads, progress)
    islands = set(fp16.islands)
    quantized = quantize(prepared.proto, selection, prepared.amax)
    best = to_fp16(quantized, {n.name for n in quantized.graph.node if block_of(n.name) in islands}).model
    whole_graph(int8, best, feeds, options.threads)
    meta = int8_metadata(prepared.meta, options, selection, len(prepared.data.indices))
    calibration = dataclasses.replace(meta.calibration, int8_sensitive_blocks=tuple(sorted(unsafe)))
    meta = dataclasses.replace(meta, precision="best", calibration=calibration,
                               fp16=Fp16Info(islands=tuple(fp16.islands), images=len(feeds)))
    best = with_metadata(best, meta)
    onnx.checker.check_model(best, full_check=True)
    _check_unique_names(best)
    progress(f"[4/4] writing {output}")
    with atomic_path(output) as tmp:
        onnx.save(best, str(tmp))
    for table in (int8, fp16):
        table.images, table.data = len(feeds), options.data
    return BestSummary(output, int8, fp16, len(selection.nodes), [*int8.write(output), *fp16.write(output)],
                       check_graph(best))
