"""Precision measured on images, written into the ONNX (works on TensorRT 10 and 11).

INT8 by calibration, as explicit Q/DQ:

    data.py         the calibration images, through the runtime's pre-processing
    statistics.py   one ONNX Runtime pass: |x| maximum and histogram per tensor, cached
    ranges.py       minmax / percentile / entropy thresholds from those histograms
    quantize.py     which nodes get Q/DQ, and the insertion (onnxruntime.quantization, configured for TensorRT)

``calibrate(...)`` runs them in order and writes the int8 ONNX with its metadata (``m2f calibrate``).

FP16 with measured fp32 islands: sensitivity.py (the per-block sweep and its table) and fp16.py
(``convert_fp16``, ``m2f convert --precision fp16``); the graph rewrite itself is ``m2f.export.fp16``.
session.py opens the ONNX Runtime sessions both use.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .ranges import DEFAULT_PERCENTILE, METHODS

__all__ = ["CalibrationOptions", "CalibrationSummary", "calibrate", "METHODS"]


@dataclass
class CalibrationOptions:
    data: str  # validate.data.open_images spec: a folder, a COCO json, synthetic[:N[:SEED]]
    images: int = 32
    seed: int = 0
    method: str = "minmax"
    percentile: float = DEFAULT_PERCENTILE
    exclude: tuple[str, ...] = ()
    cache: Path | None = None  # statistics cache (default: beside the input model)
    threads: int | None = None


@dataclass
class CalibrationSummary:
    path: Path
    quantized: int
    excluded: dict[str, str]
    images: int
    cache_hit: bool
    seconds: dict[str, float] = field(default_factory=dict)
    trt_issues: list = field(default_factory=list)


def default_cache(model_path: Path, fingerprint: str) -> Path:
    return model_path.with_name(f"{model_path.name}.calib-{fingerprint}.npz")


def _metadata(proto, options: CalibrationOptions, selection, images: int) -> dict:
    from m2f.contract import KEY, parse

    meta = parse(next((p.value for p in proto.metadata_props if p.key == KEY), None), "the input model")
    if meta["precision"] != "fp32":
        from m2f.errors import ArgumentError

        raise ArgumentError(f"the input model is already {meta['precision']}; calibrate the fp32 export")
    meta["precision"] = "int8"
    meta["calibration"] = {"method": options.method, "images": images, "data": options.data, "seed": options.seed,
                           "quantized_nodes": len(selection.nodes), "excluded": selection.excluded,
                           **({"percentile": options.percentile} if options.method == "percentile" else {})}
    return meta


def calibrate(model_path: str | Path, output: str | Path, options: CalibrationOptions,
              progress: Callable[[str], None] = lambda s: None) -> CalibrationSummary:
    """fp32 m2f ONNX -> int8 Q/DQ ONNX at ``output`` (written atomically, metadata kept and updated)."""
    import onnx

    from m2f.contract import KEY, dumps, parse
    from m2f.fileio import atomic_path, check_output_file
    from m2f.trt_compat import check_graph

    from .data import CalibrationSet
    from .quantize import amax_table, quantize, select
    from .statistics import Statistics, cache_key, collect

    model_path, output = Path(model_path), check_output_file(output, (".onnx",))
    proto = onnx.load(str(model_path))
    meta = parse(next((p.value for p in proto.metadata_props if p.key == KEY), None), model_path.name)
    selection = select(proto, options.exclude)
    data = CalibrationSet.open(meta, options.data, options.images, options.seed)
    cache = options.cache or default_cache(model_path, data.fingerprint)
    key = cache_key(model_path, data.fingerprint, selection.activations)
    seconds = {}
    stats = Statistics.load(cache, key) if cache.exists() else None
    if stats is None:
        progress(f"[1/3] statistics of {len(selection.activations)} tensors over {len(data.indices)} images")
        t0 = time.perf_counter()
        stats = collect(model_path, selection.activations, data, key, options.threads,
                        progress=lambda done, total: progress(f"      batch {done}/{total}"))
        stats.save(cache)
        seconds["statistics"] = time.perf_counter() - t0
    else:
        progress(f"[1/3] statistics from {cache} (same model and images)")
    progress(f"[2/3] {options.method} ranges, Q/DQ on {len(selection.nodes)} nodes")
    t0 = time.perf_counter()
    quantized = quantize(proto, selection, amax_table(stats, selection.activations, options.method,
                                                      options.percentile))
    meta = _metadata(proto, options, selection, len(data.indices))
    del quantized.metadata_props[:]
    entry = quantized.metadata_props.add()
    entry.key, entry.value = KEY, dumps(meta)
    onnx.checker.check_model(quantized)
    seconds["quantize"] = time.perf_counter() - t0
    progress(f"[3/3] writing {output}")
    issues = check_graph(onnx.shape_inference.infer_shapes(quantized))
    with atomic_path(output) as tmp:
        onnx.save(quantized, str(tmp))
    return CalibrationSummary(output, len(selection.nodes), selection.excluded, len(data.indices), "statistics"
                              not in seconds, seconds, issues)
