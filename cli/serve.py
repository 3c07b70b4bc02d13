"""``m2f serve MODEL``: a real Triton Inference Server (PyTriton) serving an exported model until Ctrl-C / SIGTERM.

Prints the endpoints, the model name and client examples; the server's own log goes to ``--log-file`` (default: a
temporary file, removed on a clean stop and named when the server failed). Stopping answers the requests in flight
first.
"""
from __future__ import annotations

import shutil
import sys

from m2f.errors import M2FError

from . import args as shared
from .signals import StopSignals

HELP = "serve an exported model on a real Triton Inference Server (HTTP, gRPC, metrics; dynamic batching)"


def add_arguments(p) -> None:
    from m2f.serving import DEFAULT_MAX_PIXELS, DEFAULT_MODEL_NAME, DEFAULT_QUEUE_DELAY_US

    p.add_argument("model", help=".onnx from 'm2f export', or a TensorRT engine with its .json sidecar")
    group = p.add_argument_group("server")
    group.add_argument("--model-name", default=DEFAULT_MODEL_NAME, type=shared.model_name,
                       help=f"the name clients use (default {DEFAULT_MODEL_NAME})")
    group.add_argument("--address", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    group.add_argument("--http-port", type=shared.tcp_port, default=8000, help="default 8000")
    group.add_argument("--grpc-port", type=shared.tcp_port, default=8001, help="default 8001")
    group.add_argument("--metrics-port", type=shared.tcp_port, default=8002,
                       help="Prometheus metrics at /metrics (default 8002)")
    group.add_argument("--max-batch", type=shared.positive_int, default=8,
                       help="largest batch the dynamic batcher forms (default 8)")
    group.add_argument("--max-queue-delay", type=shared.non_negative_int, default=DEFAULT_QUEUE_DELAY_US,
                       help=f"microseconds a request may wait for a batch to fill (default {DEFAULT_QUEUE_DELAY_US})")
    group.add_argument("--instances", type=shared.positive_int, default=1,
                       help="model instances run in parallel, one runtime each (default 1)")
    group.add_argument("--max-pixels", type=shared.positive_int, default=DEFAULT_MAX_PIXELS,
                       help=f"largest image accepted, in pixels (default {DEFAULT_MAX_PIXELS})")
    group.add_argument("--log-file", help="the Triton server's log (default: a temporary file)")
    group.add_argument("--verbose", action="store_true", help="Triton's verbose log")
    p.add_argument("--threshold", type=shared.probability, help="object-mask threshold (default: the model's)")
    p.add_argument("--overlap-threshold", type=shared.probability,
                   help="panoptic overlap threshold (default: the model's)")
    shared.add_runtime(p)
    shared.add_classes(p)


def _predictors(args) -> list:
    from m2f.runtime import Predictor

    options = shared.host_options(args)
    return [Predictor(args.model, options, providers=shared.providers(args), plugins=args.plugins,
                      threads=args.threads) for _ in range(args.instances)]


def run(args) -> int:
    import dataclasses
    import tempfile
    from pathlib import Path

    from m2f.serving.server import ServeOptions

    options = ServeOptions(model_name=args.model_name, address=args.address, http_port=args.http_port,
                           grpc_port=args.grpc_port, metrics_port=args.metrics_port, max_batch=args.max_batch,
                           queue_delay_us=args.max_queue_delay, instances=args.instances, max_pixels=args.max_pixels,
                           log_verbose=1 if args.verbose else 0)  # checks names, ports and address first
    log_dir = None if args.log_file else Path(tempfile.mkdtemp(prefix="m2f-serve-"))
    log_file = Path(args.log_file) if args.log_file else log_dir / "triton.log"
    options = dataclasses.replace(options, log_file=log_file)
    failed = True
    try:
        code = _serve(args, options, log_file)
        failed = False
        return code
    finally:
        if log_dir is not None:
            if failed and log_file.exists() and log_file.stat().st_size:  # it says why the server failed: kept
                print(f"m2f serve: the server's log is kept in {log_file}", file=sys.stderr)
            else:
                shutil.rmtree(log_dir, ignore_errors=True)


def _serve(args, options, log_file) -> int:
    from m2f.serving.server import Server, client_example

    predictors = _predictors(args)
    stop = StopSignals()
    server = Server(predictors, options)
    try:
        server.start()
        urls = options.urls()
        print(f"serving {args.model} as model '{options.model_name}' (tasks {', '.join(predictors[0].tasks)}; "
              f"{options.instances} instance(s), dynamic batching up to {options.max_batch})", flush=True)
        print(f"  HTTP    {urls['http']}\n  gRPC    {urls['grpc']}\n  metrics {urls['metrics']}\n"
              f"  health  {urls['http'].rsplit('/', 1)[0]}/v2/health/ready\n  log     {log_file}\n"
              f"try:\n{client_example(options)}\nCtrl-C stops (requests in flight are answered first)", flush=True)
        while not stop.event.wait(1.0):
            if not server.is_alive():
                raise M2FError(f"the Triton server stopped by itself; see {log_file}")
    finally:
        try:
            server.stop()
        finally:
            stop.restore()
            for p in predictors:
                p.close()
    print("server stopped", flush=True)
    return stop.code
