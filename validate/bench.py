"""Latency and throughput of an exported model through the runtime (torch-free): ``benchmark``.

Per batch size: warm-up runs, then timed runs of the whole pipeline (``Predictor.predict_batch``) for a number of
iterations or a duration. Each run's stages come from the Predictor's own timers (the ones the video and camera
loop reports): pre-processing, inference (host wall time, copies included), post-processing, and end to end. Reported
per stage: min / median / p90 / p99 / max in ms per batch; throughput in images/s from the median end-to-end time;
peak host memory (RSS) of the process; device memory for TensorRT engines.
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field

import numpy as np

from m2f.errors import ArgumentError

STAGES = ("pre", "infer", "post", "e2e")
PERCENTILES = (("min", 0), ("median", 50), ("p90", 90), ("p99", 99), ("max", 100))


@dataclass
class BatchResult:
    batch: int
    runs: int
    ms: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> statistic -> ms per batch
    images_per_s: float = 0.0


def latency_stats(samples_s: list[float]) -> dict[str, float]:
    """Percentiles of per-run seconds, in ms."""
    values = np.asarray(samples_s) * 1000.0
    return {name: float(np.percentile(values, q)) for name, q in PERCENTILES}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _images_for(predictor, images: list[np.ndarray] | None, count: int) -> list[np.ndarray]:
    if images:
        return [images[i % len(images)] for i in range(count)]
    from m2f.assets import sample_images
    from m2f.runtime.image_io import read_image

    samples = [read_image(p) for p in sample_images()]
    return [samples[i % len(samples)] for i in range(count)]


def run_batch(predictor, batch: int, images: list[np.ndarray] | None, iterations: int | None,
              duration: float | None, warmup: int) -> BatchResult:
    meta = predictor.meta
    if not meta.input.dynamic and batch != meta.input.batch:
        raise ArgumentError(f"this model has a static batch of {meta.input.batch}, not {batch}; export "
                            f"with --dynamic (or --batch {batch}) to measure other batch sizes")
    chunk = _images_for(predictor, images, batch)
    for _ in range(warmup):
        predictor.predict_batch(chunk)
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    end = time.perf_counter() + duration if duration else None
    while (iterations is None or len(samples["e2e"]) < iterations) and (end is None or time.perf_counter() < end):
        start = time.perf_counter()
        results = predictor.predict_batch(chunk)
        samples["e2e"].append(time.perf_counter() - start)
        for stage in ("pre", "infer", "post"):  # results carry per-image shares: a batch's time is their sum
            samples[stage].append(sum(r.timings[stage] for r in results))
    ms = {stage: latency_stats(values) for stage, values in samples.items()}
    return BatchResult(batch, len(samples["e2e"]), ms, 1000.0 * batch / ms["e2e"]["median"])


def benchmark(predictor, batches: list[int], images: list[np.ndarray] | None = None, iterations: int | None = None,
              duration: float | None = None, warmup: int = 3, progress=lambda text: None) -> dict:
    """Every batch size in turn; returns a JSON-ready record."""
    if iterations is None and duration is None:
        iterations = 20
    results = []
    for batch in batches:
        progress(f"batch {batch}: {warmup} warm-up run(s), then "
                 f"{f'{iterations} runs' if iterations else f'{duration:g} s'}")
        results.append(run_batch(predictor, batch, images, iterations, duration, warmup))
    record = {"model": str(predictor.path), "backend": predictor.backend.name, "precision": predictor.meta.precision,
              "batches": [{"batch": r.batch, "runs": r.runs, "ms": r.ms, "images_per_s": r.images_per_s}
                          for r in results],
              "peak_rss_mb": round(peak_rss_mb(), 1)}
    device = getattr(predictor.backend, "device_memory_mb", None)
    if device is not None:
        record["device_memory_mb"] = device()
    return record
