"""``m2f export CKPT -o model.onnx``: checkpoint -> ONNX with the m2f graph contract and metadata."""
from __future__ import annotations

from pathlib import Path

from m2f.contract import HEADS, PRECISIONS, TASKS

from . import args as shared

HELP = "export a checkpoint to ONNX (static or dynamic shapes, optional GPU-side post-processing head)"


def add_arguments(p) -> None:
    shared.add_checkpoint(p)
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--task", choices=TASKS,
                   help="advertise only this task in the metadata (default: every task the config turns on)")
    shapes = p.add_argument_group("shapes")
    shapes.add_argument("--height", type=shared.number_in(32, shared.MAX_CANVAS_SIDE, int),
                        help="static canvas height (multiple of 32; default: the preset's largest test image)")
    shapes.add_argument("--width", type=shared.number_in(32, shared.MAX_CANVAS_SIDE, int),
                        help="static canvas width (multiple of 32)")
    shapes.add_argument("--square", action="store_true",
                        help="square static canvas of the long test side (e.g. 1344x1344 for COCO): portrait and "
                             "landscape images both fit at the reference scale")
    shapes.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width")
    shapes.add_argument("--batch", type=shared.positive_int, help="static batch size (default 1)")
    p.add_argument("--head", choices=HEADS,
                   help="compute this post-processing in the graph (see README, 'Post-processing heads')")
    p.add_argument("--input", choices=("uint8", "float"), default="uint8",
                   help="uint8 NHWC image + valid_size (default), or float pixel_values NCHW (HF's input)")
    p.add_argument("--opset", type=shared.number_in(17, 20, int), default=17, help="ONNX opset, 17 to 20 (default 17)")
    p.add_argument("--no-simplify", action="store_true",
                   help="skip the clean-up after tracing (constant folding, dead nodes)")
    shared.add_plugins(p)
    shared.add_classes(p)
    shared.add_precision(p, PRECISIONS, default="fp32")
    shared.add_threads(p)


def run(args) -> int:
    import tempfile

    from m2f.contract import THINGS_FROM_CONFIG
    from m2f.errors import require

    for module in ("torch", "onnx", "onnxslim"):
        require(module, "export", "m2f export")
    from m2f.export.onnx_export import ExportOptions, check_options, export_onnx, thing_split
    from m2f.fileio import check_output_file, checkpoint_sha256
    from m2f.model.checkpoint import load_checkpoint
    from m2f.threads import use_threads

    things, stuff = shared.class_lists(args)
    options = ExportOptions(input=args.input, head=args.head, height=args.height, width=args.width,
                            square=args.square, dynamic=args.dynamic, batch=args.batch, opset=args.opset,
                            flavor=args.flavor, tensorrt_version=args.trt_version, simplify=not args.no_simplify,
                            thing_classes=things, stuff_classes=stuff, task=args.task)
    output = check_output_file(args.output, (".onnx",))  # before loading, hashing and tracing
    check_options(options)
    precision = shared.precision_options(args)
    if args.precision != "fp32":
        precision.check(args.precision)
        if args.data:  # a wrong --data is said before the export, not after it
            from m2f.validate.data import open_images

            open_images(args.data)
    use_threads(args.threads)
    ckpt = Path(args.checkpoint)
    print(f"loading {ckpt}")
    model = load_checkpoint(ckpt, preset=args.preset, config=args.config, trust=args.trust_checkpoint)
    for note in model.load_report.notes:
        print(f"note: {note}")
    thing_ids, thing_source = thing_split(model.config, options)  # names checked before tracing
    if thing_source != THINGS_FROM_CONFIG:
        print(f"note: thing classes from {thing_source}: {len(thing_ids)} of {model.config.num_classes}")
    source = {"name": ckpt.name, "format": model.load_report.format, "config": model.load_report.config_source,
              "sha256": checkpoint_sha256(ckpt)}
    if args.precision == "fp32":
        _print_export(export_onnx(model, output, options, source=source, progress=print), options)
        return 0
    from m2f.calib.convert import convert

    with tempfile.TemporaryDirectory(prefix="m2f-export-") as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", options, source=source, progress=print)
        print(f"exported fp32 ({fp32.nodes} nodes); converting to {args.precision}")
        shared.print_conversion(convert(fp32.path, output, args.precision, precision, progress=print))
    return 0


def _print_export(summary, options) -> None:
    from m2f.onnx_graph import format_io

    took = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    print(f"wrote {summary.path} ({summary.size_bytes / 1e6:.1f} MB, {summary.nodes} nodes, opset {options.opset}, "
          f"{options.flavor} ops; {took})")
    print("  inputs   " + format_io(summary.inputs))
    print("  outputs  " + format_io(summary.outputs))
    if options.flavor != "portable":
        print("  plugins  " + summary.metadata.describe_plugins())
    print(f"next: m2f inspect --trt-compat {summary.path}")
