"""INT8 by calibration, as explicit symmetric Q/DQ (works on TensorRT 10 and 11): ``calibrate`` runs data.py (the
calibration images), statistics.py (|x| maximum and histogram per tensor, cached), ranges.py (minmax / percentile /
entropy) and quantize.py (which nodes get Q/DQ, inserted with onnxruntime.quantization configured for TensorRT) in
order and writes the int8 ONNX with its metadata. ``prepare`` is the first half, shared with ``convert.convert_best``.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from m2f.onnx_graph import load_onnx

from .options import PrecisionOptions

__all__ = ["CalibrationSummary", "calibrate"]


@dataclass
class CalibrationSummary:
    path: Path
    quantized: int
    excluded: dict[str, str]
    images: int
    cache_hit: bool
    seconds: dict[str, float] = field(default_factory=dict)
    trt_issues: list = field(default_factory=list)

    def lines(self) -> list[str]:
        """What was done, for the console."""
        took = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        out = [f"wrote {self.path}: Q/DQ on {self.quantized} Conv/MatMul/Gemm nodes, calibrated on {self.images} "
               f"images{' (statistics from the cache)' if self.cache_hit else ''}; {took}"]
        reasons: dict[str, int] = {}
        for reason in self.excluded.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        if reasons:
            out.append("  kept float: " + "; ".join(f"{n} ({reason})" for reason, n in reasons.items()))
        return out + trt_note(self.trt_issues)


def trt_note(issues: list) -> list[str]:
    """A line about nodes TensorRT's ONNX parser would refuse, if any."""
    return [f"  note: {len(issues)} node(s) TensorRT's parser would refuse, e.g. {issues[0]}"] if issues else []


def default_cache(model_path: Path, fingerprint: str) -> Path:
    return model_path.with_name(f"{model_path.name}.calib-{fingerprint}.npz")


def int8_metadata(meta, options: PrecisionOptions, selection, images: int):
    """``meta`` (m2f.contract.Metadata) of an int8 graph calibrated with ``options`` on ``images`` images."""
    from m2f.contract import Calibration

    calibration = Calibration(method=options.method, images=images, data=options.data, seed=options.seed,
                              quantized_nodes=len(selection.nodes), excluded=dict(selection.excluded),
                              percentile=options.percentile if options.method == "percentile" else None)
    return dataclasses.replace(meta, precision="int8", calibration=calibration)


@dataclass
class Prepared:
    """An fp32 model with the statistics of its quantisable tensors on the calibration images."""

    proto: object  # onnx.ModelProto
    meta: object  # m2f.contract.Metadata
    selection: object  # m2f.calib.quantize.Selection
    data: object  # m2f.calib.data.CalibrationSet
    amax: dict[str, float]  # per activation tensor, by options.method
    seconds: dict[str, float]


def prepare(model_path: Path, options: PrecisionOptions, progress: Callable[[str], None] = lambda s: None,
            step: str = "[1/3]", proto=None) -> Prepared:
    """Load the fp32 model (unless the caller has: ``proto``; ArgumentError for any other precision), choose the
    quantisable nodes and collect (or reuse from the cache) their input statistics."""
    from m2f.contract import read_onnx
    from m2f.errors import ArgumentError

    from .data import CalibrationSet
    from .quantize import amax_table, select
    from .statistics import Statistics, cache_key, collect

    proto = proto if proto is not None else load_onnx(model_path)
    meta = read_onnx(proto, model_path.name)
    if meta.precision != "fp32":
        raise ArgumentError(f"{model_path.name} is already {meta.precision}; start from the fp32 export")
    selection = select(proto, options.exclude)
    data = CalibrationSet.open(meta, options.data, options.calibration_images, options.seed)
    cache = options.cache or default_cache(model_path, data.fingerprint)
    key = cache_key(model_path, data.fingerprint, selection.activations)
    seconds = {}
    stats = Statistics.load(cache, key) if cache.exists() else None
    if stats is None:
        progress(f"{step} statistics of {len(selection.activations)} tensors over {len(data.indices)} images")
        t0 = time.perf_counter()
        stats = collect(proto, selection.activations, data, key, options.threads,
                        progress=lambda done, total: progress(f"      batch {done}/{total}"))
        stats.save(cache)
        seconds["statistics"] = time.perf_counter() - t0
    else:
        progress(f"{step} statistics from {cache} (same model and images)")
    amax = amax_table(stats, selection.activations, options.method, options.percentile)
    return Prepared(proto, meta, selection, data, amax, seconds)


def with_metadata(proto, meta):
    """``proto`` with ``meta`` as its only m2f metadata entry, checked by onnx.checker."""
    import onnx

    from m2f.contract import write_onnx

    write_onnx(proto, meta)
    onnx.checker.check_model(proto)
    return proto


def calibrate(model_path: str | Path, output: str | Path, options: PrecisionOptions,
              progress: Callable[[str], None] = lambda s: None) -> CalibrationSummary:
    """fp32 m2f ONNX -> int8 Q/DQ ONNX at ``output`` (written atomically, metadata kept and updated)."""
    import onnx

    from m2f.fileio import atomic_path, check_output_file
    from m2f.calib.trt_compat import check_graph

    from .quantize import quantize

    model_path, output = Path(model_path), check_output_file(output, (".onnx",))
    prepared = prepare(model_path, options, progress)
    selection, seconds = prepared.selection, prepared.seconds
    progress(f"[2/3] {options.method} ranges, Q/DQ on {len(selection.nodes)} nodes")
    t0 = time.perf_counter()
    quantized = with_metadata(quantize(prepared.proto, selection, prepared.amax),
                              int8_metadata(prepared.meta, options, selection, len(prepared.data.indices)))
    seconds["quantize"] = time.perf_counter() - t0
    progress(f"[3/3] writing {output}")
    issues = check_graph(onnx.shape_inference.infer_shapes(quantized))
    with atomic_path(output) as tmp:
        onnx.save(quantized, str(tmp))
    return CalibrationSummary(output, len(selection.nodes), selection.excluded, len(prepared.data.indices),
                              "statistics" not in seconds, seconds, issues)
