"""``m2f build model.onnx -o model.engine``: a TensorRT engine and its sidecar, on TensorRT 10.x or 11.x."""
from __future__ import annotations

from . import args as shared

HELP = "build a TensorRT engine (+ sidecar JSON) from an m2f ONNX; prints the equivalent trtexec command"


def add_arguments(p) -> None:
    from m2f.calib.engine import PRECISIONS

    p.add_argument("model", help="an .onnx written by m2f export / convert / calibrate")
    p.add_argument("-o", "--output", required=True, help="the .engine to write (its sidecar: <engine>.json)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="default: what the ONNX holds (strongly typed). On an fp32 ONNX, fp16/int8/best use "
                        "TensorRT 10's builder flags (int8/best with --calib); TensorRT 11 refuses them")
    shapes = p.add_argument_group("shapes (dynamic graphs; trtexec's syntax, e.g. image:1x800x1344x3)")
    shapes.add_argument("--min-shapes", help="smallest input shapes (default: one size_divisibility block)")
    shapes.add_argument("--opt-shapes", help="shapes to optimise for (default: the landscape test size)")
    shapes.add_argument("--max-shapes", help="largest input shapes (default: the longest test side, square)")
    shapes.add_argument("--max-batch", type=shared.positive_int, default=1,
                        help="largest batch of the default profile (default 1)")
    build = p.add_argument_group("build")
    build.add_argument("--plugins", action="append", default=[], metavar="LIB",
                       help="plugin library to load (repeatable), e.g. libm2f_plugins.so from m2f plugins build")
    build.add_argument("--timing-cache", help="TensorRT timing cache file: read if it exists, written after")
    build.add_argument("--workspace", type=shared.positive_int, metavar="MB", help="workspace memory limit, MB")
    build.add_argument("--calib", help="TensorRT 10 implicit INT8: calibration images (a folder, a COCO json, or "
                                       "synthetic:N)")
    build.add_argument("--calib-images", type=shared.positive_int, default=32, help="how many (default 32)")
    build.add_argument("--calib-cache", help="the entropy calibrator's cache file (default: <engine>.calib)")
    build.add_argument("--dla-core", type=shared.non_negative_int, help="build for this DLA core (GPU fallback on)")


def _calibration_batches(meta, spec: str, images: int):
    from m2f.calib.data import CalibrationSet

    return iter(CalibrationSet.open(meta, spec, images))


def run(args) -> int:
    from pathlib import Path

    import onnx

    from m2f.contract import read_onnx
    from m2f.errors import ArgumentError
    from m2f.calib.engine import BuildOptions, build_engine
    from m2f.fileio import check_output_file

    model = Path(args.model)
    if not model.is_file():
        raise ArgumentError(f"{model} does not exist; give an .onnx written by m2f export")
    output = check_output_file(args.output, (".engine", ".plan", ".trt"))
    for lib in args.plugins:
        if not Path(lib).is_file():
            raise ArgumentError(f"plugin library {lib} does not exist; build it with m2f plugins build")
    proto = onnx.load(str(model), load_external_data=False)
    meta = read_onnx(proto, model.name)
    options = BuildOptions(precision=args.precision, min_shapes=args.min_shapes, opt_shapes=args.opt_shapes,
                           max_shapes=args.max_shapes, max_batch=args.max_batch,
                           plugins=[Path(p) for p in args.plugins],
                           timing_cache=Path(args.timing_cache) if args.timing_cache else None,
                           workspace_mb=args.workspace,
                           calib_cache=Path(args.calib_cache) if args.calib_cache else output.with_suffix(".calib"),
                           dla_core=args.dla_core)
    calibration = _calibration_batches(meta, args.calib, args.calib_images) if args.calib else None
    result = build_engine(model, output, meta, options, calibration, progress=print)
    print(f"wrote {output} ({result['plan'].precision}, built in {result['seconds']:.0f} s) and {output.name}.json")
    print(f"same with trtexec: {result['trtexec']}")
    return 0
