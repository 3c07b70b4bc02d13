"""``m2f convert model.onnx -o out.onnx --precision fp16|int8``: an fp32 export at another precision, measured."""
from __future__ import annotations

from . import args as shared
from . import calibrate as calibration

HELP = "convert an fp32 export to fp16 (measured fp32 islands), int8 (calibrated Q/DQ) or best (both, measured)"
PRECISIONS = ("fp16", "int8", "best")


def add_arguments(p) -> None:
    p.add_argument("model", help="an fp32 .onnx written by m2f export (any flavor)")
    p.add_argument("-o", "--output", required=True, help="the .onnx to write")
    p.add_argument("--precision", choices=PRECISIONS, required=True,
                   help="fp16: every block fp16 except the fp32 islands a sensitivity sweep keeps (table written "
                        "beside the output); int8: explicit Q/DQ from calibration (as m2f calibrate); best: int8 "
                        "on the blocks where it measures safe, fp16 elsewhere (needs an --opset 19 export)")
    calibration.add_calibration(p, data_required=False)
    shared.add_threads(p)


def print_fp16_summary(summary) -> None:
    sweep = summary.sweep
    print(f"wrote {summary.path}: {summary.fp16_nodes} nodes fp16, {summary.fp32_nodes} fp32, {summary.casts} Casts; "
          f"sweep of {len(sweep.blocks)} blocks on {sweep.images} images took {sweep.seconds:.0f} s")
    print(f"  fp32 islands: {', '.join(sweep.islands) or 'none'}")
    print(f"  whole graph vs fp32: {sweep.whole.flips:.1e} of mask signs flipped, {sweep.whole.decisions:.1e} of query "
          f"decisions changed (ONNX Runtime CPU: fp16 storage, not fp16 arithmetic)")
    print(f"  sensitivity table: {summary.tables[1]}")
    if summary.trt_issues:
        print(f"  note: {len(summary.trt_issues)} node(s) TensorRT's parser would refuse, e.g. {summary.trt_issues[0]}")


def print_best_summary(summary) -> None:
    final = summary.int8.whole
    print(f"wrote {summary.path}: Q/DQ on {summary.quantized} Conv/MatMul/Gemm nodes, fp16 elsewhere")
    print(f"  kept out of int8: {', '.join(summary.int8.islands) or 'nothing (every block measured safe)'}")
    print(f"  fp32 islands: {', '.join(summary.fp16.islands) or 'none'}")
    print(f"  whole graph vs fp32: {final.flips:.1e} of mask signs flipped, {final.decisions:.1e} of query decisions "
          f"changed (ONNX Runtime CPU)")
    print(f"  sensitivity tables: {', '.join(str(p) for p in summary.tables if p.suffix == '.md')}")
    if summary.trt_issues:
        print(f"  note: {len(summary.trt_issues)} node(s) TensorRT's parser would refuse, e.g. {summary.trt_issues[0]}")


def convert_to_fp16(model, output, args) -> None:
    """The fp16 conversion with the command's data options (shared with m2f export --precision fp16)."""
    from m2f.calib.convert import DEFAULT_DATA, convert_fp16
    from m2f.calib.sensitivity import SWEEP_IMAGES

    if not args.data:
        print(f"note: measuring fp16 sensitivity on {DEFAULT_DATA}; pass --data with images of your domain")
    summary = convert_fp16(model, output, args.data or DEFAULT_DATA, args.images or SWEEP_IMAGES, args.seed,
                           args.threads, progress=print)
    print_fp16_summary(summary)


def run(args) -> int:
    from m2f.errors import ArgumentError

    model, output = calibration.model_and_output(args, "m2f convert")
    if args.precision == "fp16":
        convert_to_fp16(model, output, args)
        return 0
    if not args.data:
        raise ArgumentError(f"--precision {args.precision} needs --data: the calibration images (a folder, a COCO "
                            f"json, or synthetic:N)")
    if args.precision == "best":
        from m2f.calib.convert import convert_best
        from m2f.calib.sensitivity import SWEEP_IMAGES

        print_best_summary(convert_best(model, output, calibration.calibration_options(args), SWEEP_IMAGES,
                                        progress=print))
        return 0
    from m2f.calib.int8 import calibrate

    calibration.print_summary(calibrate(model, output, calibration.calibration_options(args), progress=print))
    return 0
