"""Latency and throughput of an exported model through the runtime (torch-free): ``benchmark``.

Per batch size: warm-up runs, then timed runs of the whole pipeline (``Predictor.predict_batch``) for a number of
iterations or a duration. Each run's stages come from the Predictor's own timers (the ones the video and camera
loop reports): pre-processing, inference (host wall time, copies included), post-processing, and end to end. Reported
per stage: min / median / p90 / p99 / max in ms per batch; throughput in images/s from the median end-to-end time;
peak host memory (RSS) of the process; device memory for TensorRT engines.

``pipelined`` compares, on the same images in one run, the sequential loop (one image through every stage, then the
next) with the pipelined stream (``Predictor.stream``: stages on their own threads), alternating the two (A, B, A,
B...): images/s of each (medians over rounds), the paired ratio, and the bound 1 / (slowest stage's median time),
which a pipeline reaches when each stage has a core of its own.

``interleaved`` is the loop the benchmarks/ scripts time both sides of a comparison with (A, B, A, B...);
``host_description`` names the CPU their figures come from.
"""
from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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


def interleaved(runs: dict[str, Callable[[], object]], rounds: int, warmups: int = 2) -> dict[str, np.ndarray]:
    """Seconds of each of ``runs`` per round, the runs alternating (A, B, C, A, B, C...) after ``warmups`` calls of
    each (ONNX Runtime plans its memory on a session's first run and allocates it on the second: two by default),
    as float64 arrays [rounds] in ``runs``' order; paired ratios are ratios of these arrays."""
    for fn in runs.values():
        for _ in range(warmups):
            fn()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: np.asarray(t) for name, t in times.items()}


def host_description(cpuinfo: str | None = None) -> str:
    """The CPU that figures come from, e.g. "AMD EPYC, 2 CPUs, AVX-512": the vector width decides much of what numpy
    and ONNX Runtime reach on one core, and a shared machine may move to another host between runs. ``cpuinfo``: the
    text of /proc/cpuinfo (read when None; empty where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "NEON" if "asimd" in flags else ""
    return ", ".join(part for part in (model, f"{os.cpu_count()} CPUs", vector) if part)


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
              "peak_rss_mb": round(peak_rss_mb(), 1), "host": host_description()}
    device = getattr(predictor.backend, "device_memory_mb", None)
    if device is not None:
        record["device_memory_mb"] = device()
    return record


PIPELINE_STAGES = ("read", "pre", "infer", "post")


def pipelined(predictor, images: list, per_round: int = 16, rounds: int = 3, progress=lambda text: None) -> dict:
    """Sequential vs pipelined throughput on ``per_round`` images (paths or arrays, reused in turn), ``rounds`` of
    each, alternating; returns a JSON-ready record."""
    from m2f.runtime.pipeline import decode_input

    work = [images[i % len(images)] for i in range(per_round)]
    progress(f"pipeline: {rounds} rounds of {per_round} images, sequential and pipelined alternating")
    list(predictor.stream(work[:2]))  # warm-up
    sequential, piped, stages = [], [], {s: [] for s in PIPELINE_STAGES}
    for _ in range(rounds):
        start = time.perf_counter()
        for image in work:
            t0 = time.perf_counter()
            array = decode_input(image)
            read = time.perf_counter() - t0
            timings = predictor.predict(array).timings
            stages["read"].append(read)
            for stage in ("pre", "infer", "post"):
                stages[stage].append(timings[stage])
        sequential.append(per_round / (time.perf_counter() - start))
        start = time.perf_counter()
        failed = [item.error for item in predictor.stream(work) if item.error is not None]
        if failed:
            raise failed[0]
        piped.append(per_round / (time.perf_counter() - start))
    median_ms = {s: 1000.0 * float(np.median(v)) for s, v in stages.items()}
    # reading and pre-processing share the pipeline's first thread
    slowest = max(median_ms["read"] + median_ms["pre"], median_ms["infer"], median_ms["post"])
    return {"images": per_round, "rounds": rounds, "stage_ms": median_ms,
            "sequential_images_per_s": float(np.median(sequential)),
            "pipelined_images_per_s": float(np.median(piped)),
            "pipelined_vs_sequential": float(np.median(np.asarray(piped) / np.asarray(sequential))),
            "slowest_stage_bound_images_per_s": 1000.0 / slowest,
            "pipelined_vs_bound": float(np.median(piped)) * slowest / 1000.0}
