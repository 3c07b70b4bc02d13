"""Serving throughput and latency: C concurrent clients against `m2f serve` (a real Triton server, loopback), with
the in-process Predictor on the same images and thread count, measured in the same run just before and just after
the served phase, as the baseline.

Every served answer is checked against the in-process result (identical panoptic maps). The figures depend on the
machine and on what else runs on it; on a 2-core CPU the server and the clients share the cores.

    python benchmarks/serving.py [MODEL.onnx] [--clients 8] [--requests 50] [--instances 1] [--max-batch 8]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _bundled_model(folder: Path) -> Path:
    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS
    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.model.checkpoint import load_checkpoint

    model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
    return export_onnx(model, folder / "bundled.onnx", ExportOptions(height=192, width=256),
                       source={"name": DEFAULT_WEIGHTS.name}).path


def _start(model: Path, args, ports) -> subprocess.Popen:
    import tritonclient.http as http

    command = [sys.executable, "-m", "m2f", "serve", str(model), "--threads", str(args.threads),
               "--instances", str(args.instances), "--max-batch", str(args.max_batch), "--http-port", str(ports[0]),
               "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = http.InferenceServerClient(f"127.0.0.1:{ports[0]}")
    for _ in range(240):
        try:
            if client.is_model_ready("m2f"):
                return server
        except Exception:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("m2f serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help=".onnx (default: the bundled model, exported at 192x256)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="per client")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads, server and baseline alike")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="grpc")
    args = parser.parse_args()

    import numpy as np

    from m2f.assets import SAMPLES
    from m2f.runtime import Predictor
    from m2f.runtime.image_io import read_image
    from m2f.serving.loadtest import in_process, run_load
    from m2f.serving.local_triton import free_ports

    folder = Path(tempfile.mkdtemp(prefix="m2f-bench-serving-"))
    model = Path(args.model) if args.model else _bundled_model(folder)
    images = [read_image(p) for p in sorted((SAMPLES / "images").glob("*.png"))]
    requests = args.clients * args.requests
    with Predictor(model, threads=args.threads) as predictor:
        expected = [predictor.predict(im).panoptic for im in images]
        before = in_process(predictor, images, requests)  # the baseline brackets the served phase: load drifts
        ports = free_ports(3)
        server = _start(model, args, ports)
        try:
            url = f"grpc://127.0.0.1:{ports[1]}/m2f" if args.protocol == "grpc" else \
                f"http://127.0.0.1:{ports[0]}/m2f"
            served = run_load(url, images, args.clients, args.requests,
                              check=lambda i, r: np.array_equal(r.panoptic, expected[i]))
        finally:
            server.terminate()
            server.wait(timeout=90)
        after = in_process(predictor, images, requests)
    baseline = (before.throughput + after.throughput) / 2
    print(f"model {model.name}; {args.clients} clients x {args.requests} requests over {args.protocol}; "
          f"{args.instances} instance(s), max batch {args.max_batch}, {args.threads} ONNX Runtime thread(s)")
    rows = [("in-process Predictor, before", before), ("m2f serve", served), ("in-process Predictor, after", after)]
    print("| | images/s | p50 ms | p99 ms |\n|---|---|---|---|\n" + "\n".join(
        f"| {name} | {r.throughput:.1f} | {r.percentile_ms(50):.1f} | {r.percentile_ms(99):.1f} |" for name, r in rows))
    print(f"served / in-process throughput: {served.throughput / baseline:.2f}x (baseline: the mean of before and "
          f"after, which differ by {abs(before.throughput - after.throughput) / baseline:.0%}); {served.line()}")


if __name__ == "__main__":
    main()
