"""``m2f convert model.onnx -o out.onnx --precision fp16|int8|best``: an fp32 export at another precision, measured
(the precision group is the same in m2f export and m2f build)."""
from __future__ import annotations

from . import args as shared

HELP = "convert an fp32 export to fp16 (measured fp32 islands), int8 (calibrated Q/DQ) or best (both, measured)"
PRECISIONS = ("fp16", "int8", "best")


def add_arguments(p) -> None:
    p.add_argument("model", help="an fp32 .onnx written by m2f export (any flavor)")
    p.add_argument("-o", "--output", required=True, help="the .onnx to write")
    shared.add_precision(p, PRECISIONS, required=True)
    shared.add_threads(p)


def run(args) -> int:
    from m2f.calib.convert import convert

    shared.print_conversion(convert(args.model, args.output, args.precision, shared.precision_options(args),
                                    progress=print))
    return 0
