"""``m2f calibrate model.onnx --data D -o model.int8.onnx``: INT8 as explicit Q/DQ from calibration images."""
from __future__ import annotations

from . import args as shared

HELP = "calibrate an fp32 export on images and write INT8 (explicit symmetric Q/DQ, for TensorRT 10 and 11)"


def add_arguments(p) -> None:
    p.add_argument("model", help="an fp32 .onnx written by m2f export (any flavor)")
    p.add_argument("-o", "--output", required=True, help="the int8 .onnx to write")
    add_calibration(p)
    shared.add_threads(p)


def add_calibration(p, data_required: bool = True) -> None:
    """Calibration options (shared with m2f convert --precision int8)."""
    from m2f.calib.ranges import DEFAULT_PERCENTILE, METHODS

    from m2f.calib.data import DEFAULT_IMAGES

    group = p.add_argument_group("calibration")
    shared.add_sample_data(group, data_required, DEFAULT_IMAGES if data_required else None)
    group.add_argument("--method", choices=METHODS, default="minmax",
                       help="range per activation tensor: the largest |x| (default), a percentile of |x|, or "
                            "TensorRT's entropy (KL) method")
    group.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE,
                       help=f"for --method percentile (default {DEFAULT_PERCENTILE})")
    group.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                       help="keep nodes whose name matches this fnmatch pattern in float (repeatable), e.g. "
                            "'*/predictor/*'")
    group.add_argument("--calib-cache", help="statistics cache (.npz; default beside the input model): a second run "
                                             "with another --method reuses it")


def calibration_options(args):
    from pathlib import Path

    from m2f.calib.int8 import CalibrationOptions
    from m2f.calib.data import DEFAULT_IMAGES
    from m2f.errors import ArgumentError

    if not 50.0 < args.percentile <= 100.0:
        raise ArgumentError(f"--percentile {args.percentile} is outside (50, 100]")
    return CalibrationOptions(data=args.data, images=args.images or DEFAULT_IMAGES, seed=args.seed, method=args.method,
                              percentile=args.percentile, exclude=tuple(args.exclude),
                              cache=Path(args.calib_cache) if args.calib_cache else None, threads=args.threads)


def print_summary(summary) -> None:
    took = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    print(f"wrote {summary.path}: Q/DQ on {summary.quantized} Conv/MatMul/Gemm nodes, calibrated on "
          f"{summary.images} images{' (statistics from the cache)' if summary.cache_hit else ''}; {took}")
    reasons: dict[str, int] = {}
    for reason in summary.excluded.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        print("  kept float: " + "; ".join(f"{n} ({reason})" for reason, n in reasons.items()))
    if summary.trt_issues:
        print(f"  note: {len(summary.trt_issues)} node(s) TensorRT's parser would refuse, e.g. {summary.trt_issues[0]}")
    print(f"next: m2f validate CKPT {summary.path} --data ...   (accuracy against fp32 / PyTorch)")


def model_and_output(args, command: str):
    """The fp32 input model and a different output .onnx, checked before any work (shared with m2f convert)."""
    from pathlib import Path

    from m2f.errors import ArgumentError, require
    from m2f.fileio import check_output_file

    for module in ("onnx", "onnxruntime"):
        require(module, "export", command)
    model = Path(args.model)
    if not model.is_file():
        raise ArgumentError(f"{model} does not exist; give the fp32 .onnx that m2f export wrote")
    output = check_output_file(args.output, (".onnx",))
    if output.resolve() == model.resolve():
        raise ArgumentError("--output is the input model; write the new graph to another file")
    return model, output


def run(args) -> int:
    from m2f.calib.int8 import calibrate

    model, output = model_and_output(args, "m2f calibrate")
    print_summary(calibrate(model, output, calibration_options(args), progress=print))
    return 0
