"""What each op flavor does to the graph: node count, file size, export time and ONNX Runtime CPU latency, with the
portable graph (measured in the same run) as the baseline, and the largest difference of its outputs from it.

ONNX Runtime runs a plugin flavor's nodes as m2f.runtime.custom_ops' numpy ops, so its latency here says how fast
the CPU check is, not how fast TensorRT will be (the plugins' speed is a GPU measurement: benchmarks/gpu_check.sh).

    python benchmarks/flavors.py [--preset coco-panoptic-r50] [--height 800 --width 1344] [--runs 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

FLAVORS = ("portable", "m2f", "trt-builtin")


def _latency(session, feeds, runs: int) -> float:
    session.run(None, feeds)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="coco-panoptic-r50")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1344)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.model.mask2former import Mask2Former
    from m2f.model.presets import get_preset
    from m2f.runtime import custom_ops
    from m2f.threads import use_threads

    use_threads(args.threads)
    torch.manual_seed(0)
    model = Mask2Former(get_preset(args.preset)).eval()
    rng = np.random.default_rng(0)
    feeds = {"image": rng.integers(0, 256, (1, args.height, args.width, 3), dtype=np.uint8),
             "valid_size": np.asarray([[args.height, args.width - 11]], np.int32)}
    rows, baseline = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for flavor in FLAVORS:
            t0 = time.perf_counter()
            summary = export_onnx(model, Path(tmp) / f"{flavor}.onnx",
                                  ExportOptions(height=args.height, width=args.width, flavor=flavor))
            export_s = time.perf_counter() - t0
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            rewritten, library = custom_ops.prepare(summary.path)
            if library:
                options.register_custom_ops_library(library)
            session = ort.InferenceSession(rewritten or str(summary.path), options, providers=["CPUExecutionProvider"])
            outputs = session.run(None, feeds)
            latency = _latency(session, feeds, args.runs)
            if baseline is None:
                baseline = (summary.nodes, latency, outputs)
            diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs, baseline[2]))
            rows.append((flavor, summary.nodes, summary.size_bytes / 1e6, export_s, latency, diff))
    print(f"{args.preset}, random weights, static 1x{args.height}x{args.width}, ONNX Runtime CPU, "
          f"{args.threads} threads, median of {args.runs}")
    print(f"{'flavor':<12} {'nodes':>6} {'x portable':>10} {'MB':>6} {'export s':>9} {'latency s':>10} "
          f"{'x portable':>10} {'max |diff|':>11}")
    for flavor, nodes, mb, export_s, latency, diff in rows:
        print(f"{flavor:<12} {nodes:>6} {nodes / baseline[0]:>10.2f} {mb:>6.1f} {export_s:>9.1f} {latency:>10.2f} "
              f"{latency / baseline[1]:>10.2f} {diff:>11.2e}")


if __name__ == "__main__":
    main()
