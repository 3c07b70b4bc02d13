"""``m2f bench MODEL``: per-stage latency, throughput and memory through the runtime; FLOPs per stage and roofline
bounds for other GPUs (torch-free; trtexec's flag names where they overlap)."""
from __future__ import annotations

import json

from . import args as shared

HELP = "latency per stage (pre / infer / post / end to end), throughput, memory; --flops and --estimate GPU"


def _sizes(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise shared.argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of batch sizes") from None
    if not values or min(values) < 1:
        raise shared.argparse.ArgumentTypeError(f"{text!r}: batch sizes must be 1 or more")
    return values


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise shared.argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH, e.g. 800x1216") from None
    if not (1 <= h <= shared.MAX_CANVAS_SIDE and 1 <= w <= shared.MAX_CANVAS_SIDE):
        raise shared.argparse.ArgumentTypeError(f"{text!r}: both sides must be 1 to {shared.MAX_CANVAS_SIDE} pixels")
    return h, w


def add_arguments(p) -> None:
    p.add_argument("model", help=".onnx or TensorRT engine")
    p.add_argument("--batch", type=_sizes, default=[1], help="batch sizes, e.g. 1,2,4 (default 1)")
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--iterations", type=shared.positive_int, help="timed runs per batch size (default 20)")
    runs.add_argument("--duration", type=shared.positive_float, help="seconds of timed runs per batch size")
    p.add_argument("--warmup", type=shared.non_negative_int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--images", help="folder of images to run (default: the bundled samples); with --flops, FLOPs "
                                    "are averaged over these images resized as the model resizes them")
    p.add_argument("--pipeline", type=shared.non_negative_int, default=16, metavar="N",
                   help="also compare the sequential loop with the pipelined stream (stages on threads) on N images, "
                        "alternating (default 16; 0 skips it)")
    p.add_argument("--json", action="store_true", help="print one JSON record")
    p.add_argument("--flops", action="store_true", help="FLOPs per stage (one multiply-add = one FLOP, as the paper)")
    p.add_argument("--size", type=_hw, help="image size for --flops after the model's resize, e.g. 800x1216 "
                                             "(default: each --images image, or the model's canvas)")
    p.add_argument("--estimate", help="roofline lower bound per stage on these GPUs (comma-separated, or 'all': "
                                      "orin-agx, orin-nx, t4, a10, a100, l4, h100, h200); implies --flops")
    shared.add_runtime(p)


def _canvases(args, predictor, images) -> list[tuple[int, int]]:
    """The canvases to count FLOPs at: --size, each --images image as the model resizes it, or the model's own."""
    from m2f.errors import ArgumentError
    from m2f.geometry import padded_size

    meta = predictor.meta
    if args.size:
        if not meta.input.dynamic:
            h, w = meta.input.canvas
            raise ArgumentError(f"--size: {args.model} has a static {h}x{w} canvas, so it only runs at that size; "
                                f"leave --size out, or export the size you want (m2f export --height/--width, or "
                                f"--dynamic)")
        return [padded_size(*args.size, meta.size_divisibility)]
    if images and meta.input.dynamic:
        return [padded_size(*predictor.preprocess.target_size(*im.shape[:2])[0], meta.size_divisibility)
                for im in images]
    return [meta.input.canvas] if not meta.input.dynamic else \
        [padded_size(meta.resize.short, meta.resize.max, meta.size_divisibility)]


def _print(record: dict) -> None:
    print(f"{record['model']} ({record['backend']}, {record['precision']}) on {record['host']}; peak host memory "
          f"{record['peak_rss_mb']:.0f} MB" + (f", device memory {record['device_memory_mb']:.0f} MB"
                                               if "device_memory_mb" in record else ""))
    print(f"{'batch':>5} {'stage':<6} {'min':>9} {'median':>9} {'p90':>9} {'p99':>9} {'max':>9}  ms per batch")
    for b in record["batches"]:
        for stage, s in b["ms"].items():
            print(f"{b['batch']:>5} {stage:<6} " + " ".join(f"{s[k]:9.2f}" for k in ("min", "median", "p90", "p99",
                                                                                     "max")))
        print(f"{b['batch']:>5} throughput {b['images_per_s']:.1f} images/s ({b['runs']} runs)")
    if "flops" in record:
        f = record["flops"]
        print(f"FLOPs (one multiply-add = one FLOP) at {', '.join(f['canvases'])} ({f['images']} size(s)): "
              f"{f['total_gflops']:.1f} G = " + ", ".join(f"{s} {g:.1f} G" for s, g in f["gflops"].items()))
        print("activations written by convolutions, matrix products and resizes: " +
              ", ".join(f"{s} {m:.0f} M" for s, m in f["activation_melements"].items()) + " elements")
    if "pipeline" in record:
        p = record["pipeline"]
        stages = ", ".join(f"{s} {ms:.1f}" for s, ms in p["stage_ms"].items())
        print(f"pipelined: {p['pipelined_images_per_s']:.1f} images/s, sequential {p['sequential_images_per_s']:.1f} "
              f"({p['pipelined_vs_sequential']:.2f}x, paired median of {p['rounds']} rounds of {p['images']} "
              f"images); stages {stages} ms per image: the slowest alone allows "
              f"{p['slowest_stage_bound_images_per_s']:.1f} images/s, reached {p['pipelined_vs_bound']:.2f}x")
    for name, e in record.get("estimates", {}).items():
        for precision, bound in e["lower_bound"].items():
            print(f"{e['gpu']} {precision}: at least {bound['total_ms']:.2f} ms, {bound['limit']}-bound (" +
                  ", ".join(f"{s} {b['ms']:.2f} {b['limit']}" for s, b in bound["stages"].items()) +
                  ") - a roofline lower bound, not a prediction")


def _samples() -> list:
    from m2f.assets import sample_images

    return list(sample_images())


def run(args) -> int:
    from pathlib import Path

    from m2f.runtime.image_io import read_image
    from m2f.threads import use_threads
    from m2f.validate.bench import benchmark, pipelined
    from m2f.validate.data import ImageFolder
    from m2f.validate.flops import estimates, flops_record

    if args.estimate:
        estimates(args.estimate, None)  # an unknown GPU name is refused now, not after the benchmark
    files = ImageFolder(Path(args.images)).files if args.images else None  # a missing folder: one sentence, now
    images = [read_image(p) for p in files] if files else None
    with shared.open_predictor(args, threads=use_threads(args.threads)) as predictor:
        canvases = _canvases(args, predictor, images) if args.flops or args.estimate else None
        progress = (lambda text: None) if args.json else print
        record = benchmark(predictor, args.batch, images, args.iterations, args.duration, args.warmup, progress)
        if args.pipeline:
            record["pipeline"] = pipelined(predictor, files or _samples(), args.pipeline, progress=progress)
    if canvases:
        record["flops"] = flops_record(args.model, canvases)
    if args.estimate:
        record["estimates"] = estimates(args.estimate, record["flops"])
    if args.json:
        print(json.dumps(record, indent=1))
    else:
        _print(record)
    return 0
