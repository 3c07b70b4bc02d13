"""A bounded load test of a served model: C clients, each sending R requests one after another (no torch).

Used by ``benchmarks/serving.py`` (figures in the README) and the slow serving test. Every answer can be checked
(``check``); the server's own statistics say how many requests Triton ran per execution, i.e. whether its dynamic
batcher formed batches.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadReport:
    """Latencies in seconds, one per answered request; failures: one line each."""

    requests: int
    wall_s: float
    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wrong: int = 0
    inferences: int = 0  # Triton's count of requests run, over the test
    executions: int = 0  # Triton's count of model executions (batches), over the test

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.wall_s

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1e3) if self.latencies_s else float("nan")

    @property
    def mean_batch(self) -> float:
        return self.inferences / self.executions if self.executions else 0.0

    def line(self) -> str:
        return (f"{len(self.latencies_s)}/{self.requests} answered, {len(self.failures)} failed, {self.wrong} wrong; "
                f"{self.throughput:.1f} images/s; p50 {self.percentile_ms(50):.1f} ms, p99 "
                f"{self.percentile_ms(99):.1f} ms; {self.mean_batch:.2f} requests per execution")


def _statistics(url: str) -> tuple[int, int]:
    """(inference count, execution count) Triton reports for the URL's model."""
    from .client import parse_url

    scheme, address, model = parse_url(url)
    if scheme == "grpc":
        import tritonclient.grpc as grpc

        stats = grpc.InferenceServerClient(address).get_inference_statistics(model, as_json=True)
    else:
        import tritonclient.http as http

        stats = http.InferenceServerClient(address).get_inference_statistics(model)
    entry = stats["model_stats"][0]
    return int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0))


def run_load(url: str, images: list[np.ndarray], clients: int = 8, requests_per_client: int = 50,
             check=None) -> LoadReport:
    """Send ``clients x requests_per_client`` requests (image i of the list in turn); ``check(index, result)``
    returns False for a wrong answer."""
    from .client import RemotePredictor

    predictors = [RemotePredictor(url) for _ in range(clients)]
    before = _statistics(url)
    report = LoadReport(requests=clients * requests_per_client, wall_s=0.0)
    lock = threading.Lock()

    def client(predictor, offset):
        for k in range(requests_per_client):
            index = (offset + k) % len(images)
            start = time.perf_counter()
            try:
                result = predictor.predict(images[index])
            except Exception as e:  # counted, the load goes on
                with lock:
                    report.failures.append(f"{type(e).__name__}: {e}")
                continue
            elapsed = time.perf_counter() - start
            ok = check is None or check(index, result)
            with lock:
                report.latencies_s.append(elapsed)
                report.wrong += 0 if ok else 1

    threads = [threading.Thread(target=client, args=(p, i)) for i, p in enumerate(predictors)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.wall_s = time.perf_counter() - start
    after = _statistics(url)
    report.inferences, report.executions = after[0] - before[0], after[1] - before[1]
    for p in predictors:
        p.close()
    return report


def in_process(predictor, images: list[np.ndarray], requests: int) -> LoadReport:
    """The baseline: the same number of images through an in-process Predictor, one after another."""
    report = LoadReport(requests=requests, wall_s=0.0)
    start = time.perf_counter()
    for k in range(requests):
        t0 = time.perf_counter()
        predictor.predict(images[k % len(images)])
        report.latencies_s.append(time.perf_counter() - t0)
    report.wall_s = time.perf_counter() - start
    return report
