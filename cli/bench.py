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
    return h, w


def add_arguments(p) -> None:
    p.add_argument("model", help=".onnx or TensorRT engine")
    p.add_argument("--batch", type=_sizes, default=[1], help="batch sizes, e.g. 1,2,4 (default 1)")
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--iterations", type=shared.positive_int, help="timed runs per batch size (default 20)")
    runs.add_argument("--duration", type=float, help="seconds of timed runs per batch size")
    p.add_argument("--warmup", type=shared.non_negative_int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--images", help="folder of images to run (default: the bundled samples); with --flops, FLOPs "
                                    "are averaged over these images resized as the model resizes them")
    p.add_argument("--json", action="store_true", help="print one JSON record")
    p.add_argument("--flops", action="store_true", help="FLOPs per stage (one multiply-add = one FLOP, as the paper)")
    p.add_argument("--size", type=_hw, help="image size for --flops after the model's resize, e.g. 800x1216 "
                                             "(default: each --images image, or the model's canvas)")
    p.add_argument("--estimate", help="roofline lower bound per stage on these GPUs (comma-separated, or 'all': "
                                      "orin-agx, orin-nx, t4, a10, a100, l4, h100, h200); implies --flops")
    shared.add_runtime(p)


def _flops_record(args, predictor, images) -> dict:
    from m2f.geometry import padded_size
    from m2f.validate.flops import count_flops

    meta = predictor.meta
    if args.size:
        canvases = [padded_size(*args.size, meta.size_divisibility)]
    elif images and meta.input.dynamic:
        canvases = [padded_size(*predictor.preprocess.target_size(*im.shape[:2])[0], meta.size_divisibility)
                    for im in images]
    else:
        canvases = [meta.input.canvas] if not meta.input.dynamic else \
            [padded_size(meta.resize.short, meta.resize.max, meta.size_divisibility)]
    per_size = {c: count_flops(args.model, *c) for c in set(canvases)}
    stages = list(next(iter(per_size.values())))
    mean = {s: sum(per_size[c][s].flops for c in canvases) / len(canvases) for s in stages}
    weights = {s: next(iter(per_size.values()))[s].weight_bytes for s in stages}
    return {"canvases": sorted({f"{h}x{w}" for h, w in canvases}), "images": len(canvases),
            "gflops": {s: mean[s] / 1e9 for s in stages}, "total_gflops": sum(mean.values()) / 1e9,
            "weight_mb": {s: weights[s] / 2**20 for s in stages}}


def _estimates(names: str, flops: dict) -> dict:
    from m2f.errors import ArgumentError
    from m2f.validate.flops import GPUS, StageCost, roofline_ms

    chosen = list(GPUS) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in GPUS]
    if unknown:
        raise ArgumentError(f"--estimate: unknown GPU {', '.join(unknown)}; choose from {', '.join(GPUS)} or all")
    out = {}
    for name in chosen:
        gpu = GPUS[name]
        per = {}
        for precision in ("fp16", "int8"):
            per[precision] = {s: roofline_ms(StageCost(int(g * 1e9), int(flops["weight_mb"][s] * 2**20)), gpu,
                                             precision) for s, g in flops["gflops"].items()}
        out[name] = {"gpu": gpu.name, "source": gpu.source, "lower_bound_ms": per}
    return out


def _print(record: dict) -> None:
    print(f"{record['model']} ({record['backend']}, {record['precision']}); peak host memory "
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
    for name, e in record.get("estimates", {}).items():
        for precision, per in e["lower_bound_ms"].items():
            print(f"{e['gpu']} {precision}: at least {sum(per.values()):.2f} ms (" +
                  ", ".join(f"{s} {ms:.2f}" for s, ms in per.items()) + ") - a roofline lower bound, not a prediction")


def run(args) -> int:
    from pathlib import Path

    from m2f.runtime.image_io import read_image
    from m2f.threads import use_threads
    from m2f.validate.bench import benchmark
    from m2f.validate.data import ImageFolder

    predictor = shared.open_predictor(args, threads=use_threads(args.threads))
    images = [read_image(p) for p in ImageFolder(Path(args.images)).files] if args.images else None
    record = benchmark(predictor, args.batch, images, args.iterations, args.duration, args.warmup,
                       progress=(lambda text: None) if args.json else print)
    if args.flops or args.estimate:
        record["flops"] = _flops_record(args, predictor, images)
    if args.estimate:
        record["estimates"] = _estimates(args.estimate, record["flops"])
    predictor.close()
    if args.json:
        print(json.dumps(record, indent=1))
    else:
        _print(record)
    return 0
