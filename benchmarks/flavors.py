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
from functools import partial
from pathlib import Path

FLAVORS = ("portable", "m2f", "trt-builtin")


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
    from m2f.validate.bench import host_description, interleaved

    use_threads(args.threads)
    torch.manual_seed(0)
    model = Mask2Former(get_preset(args.preset)).eval()
    rng = np.random.default_rng(0)
    feeds = {"image": rng.integers(0, 256, (1, args.height, args.width, 3), dtype=np.uint8),
             "valid_size": np.asarray([[args.height, args.width - 11]], np.int32)}
    exported, sessions, outputs = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for flavor in FLAVORS:
            t0 = time.perf_counter()
            summary = export_onnx(model, Path(tmp) / f"{flavor}.onnx",
                                  ExportOptions(height=args.height, width=args.width, flavor=flavor))
            exported[flavor] = (summary.nodes, summary.size_bytes / 1e6, time.perf_counter() - t0)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            rewritten, library = custom_ops.prepare(summary.path)
            if library:
                options.register_custom_ops_library(library)
            sessions[flavor] = ort.InferenceSession(rewritten or str(summary.path), options,
                                                    providers=["CPUExecutionProvider"])
            outputs[flavor] = sessions[flavor].run(None, feeds)
        times = interleaved({name: partial(session.run, None, feeds) for name, session in sessions.items()},
                            args.runs)
    print(f"{args.preset}, random weights, static 1x{args.height}x{args.width}, ONNX Runtime CPU, "
          f"{args.threads} threads of {host_description()}, {args.runs} interleaved runs: medians, ratios are paired "
          f"medians")
    print(f"{'flavor':<12} {'nodes':>6} {'x portable':>10} {'MB':>6} {'export s':>9} {'latency s':>10} "
          f"{'x portable':>10} {'max |diff|':>11}")
    base_nodes = exported["portable"][0]
    for flavor in FLAVORS:
        nodes, mb, export_s = exported[flavor]
        diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs[flavor], outputs["portable"]))
        ratio = float(np.median(times[flavor] / times["portable"]))
        print(f"{flavor:<12} {nodes:>6} {nodes / base_nodes:>10.2f} {mb:>6.1f} {export_s:>9.1f} "
              f"{float(np.median(times[flavor])):>10.2f} {ratio:>10.2f} {diff:>11.2e}")


if __name__ == "__main__":
    main()
