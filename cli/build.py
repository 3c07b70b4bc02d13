"""``m2f build model.onnx -o model.engine``: a TensorRT engine and its sidecar, on TensorRT 10.x or 11.x."""
from __future__ import annotations

from . import args as shared

HELP = "build a TensorRT engine (+ sidecar JSON) from an m2f ONNX; prints the equivalent trtexec command"


def add_arguments(p) -> None:
    from m2f.calib.engine import PRECISIONS

    p.add_argument("model", help="an .onnx written by m2f export or m2f convert")
    p.add_argument("-o", "--output", required=True, help="the .engine to write (its sidecar: <engine>.json)")
    shared.add_precision(p, PRECISIONS)
    p.add_argument("--builder-flags", action="store_true",
                   help="TensorRT 10 only: on an fp32 ONNX, ask for --precision by builder flags (int8/best with "
                        "TensorRT's implicit entropy calibrator on --data) instead of writing it into the graph")
    shapes = p.add_argument_group("shapes (dynamic graphs; trtexec's syntax, e.g. image:1x800x1344x3)")
    shapes.add_argument("--min-shapes", help="smallest input shapes (default: one size_divisibility block)")
    shapes.add_argument("--opt-shapes", help="shapes to optimise for (default: the landscape test size)")
    shapes.add_argument("--max-shapes", help="largest input shapes (default: the longest test side, square)")
    shapes.add_argument("--max-batch", type=shared.positive_int, default=1,
                        help="largest batch of the default profile (default 1)")
    build = p.add_argument_group("build")
    build.add_argument("--plugins", type=shared.existing_file, action="append", default=[], metavar="LIB",
                       help="plugin library to load (repeatable), e.g. libm2f_plugins.so from m2f plugins build")
    build.add_argument("--timing-cache", help="TensorRT timing cache file: read if it exists, written after")
    build.add_argument("--workspace", type=shared.positive_int, metavar="MB", help="workspace memory limit, MB")
    build.add_argument("--dla-core", type=shared.non_negative_int, help="build for this DLA core (GPU fallback on)")
    shared.add_threads(p)


def run(args) -> int:
    from pathlib import Path

    from m2f.calib.engine import BuildOptions, build

    options = BuildOptions(precision=args.precision, builder_flags=args.builder_flags, min_shapes=args.min_shapes,
                           opt_shapes=args.opt_shapes, max_shapes=args.max_shapes, max_batch=args.max_batch,
                           plugins=[Path(p) for p in args.plugins],
                           timing_cache=Path(args.timing_cache) if args.timing_cache else None,
                           workspace_mb=args.workspace, dla_core=args.dla_core)
    result = build(args.model, args.output, options, shared.precision_options(args), progress=print)
    print(f"wrote {args.output} ({result['plan'].precision}, built in {result['seconds']:.0f} s) and "
          f"{Path(args.output).name}.json")
    print(f"same with trtexec: {result['trtexec']}")
    return 0
