"""``m2f calibrate model.onnx --data D -o model.int8.onnx``: the same as ``m2f convert --precision int8``, kept for
scripts that call it (one implementation, one set of options)."""
from __future__ import annotations

from . import args as shared

HELP = "the same as 'm2f convert --precision int8': INT8 as calibrated explicit Q/DQ (TensorRT 10 and 11)"


def add_arguments(p) -> None:
    p.add_argument("model", help="an fp32 .onnx written by m2f export (any flavor)")
    p.add_argument("-o", "--output", required=True, help="the int8 .onnx to write")
    shared.add_precision(p, None)
    shared.add_threads(p)


def run(args) -> int:
    from m2f.calib.convert import convert

    shared.print_conversion(convert(args.model, args.output, "int8", shared.precision_options(args), progress=print))
    return 0
