"""``m2f export CKPT -o model.onnx``: checkpoint -> ONNX with the m2f graph contract and metadata."""
from __future__ import annotations

import hashlib
from pathlib import Path

from m2f.fileio import hash_file

from . import args as shared

HELP = "export a checkpoint to ONNX (static or dynamic shapes, optional GPU-side post-processing head)"


def add_arguments(p) -> None:
    shared.add_checkpoint(p)
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--task", choices=("semantic", "instance", "panoptic"),
                   help="advertise only this task in the metadata (default: every task the config turns on)")
    shapes = p.add_argument_group("shapes")
    shapes.add_argument("--height", type=shared.positive_int,
                        help="static canvas height (multiple of 32; default: the preset's largest test image)")
    shapes.add_argument("--width", type=shared.positive_int, help="static canvas width (multiple of 32)")
    shapes.add_argument("--square", action="store_true",
                        help="square static canvas of the long test side (e.g. 1344x1344 for COCO): portrait and "
                             "landscape images both fit at the reference scale")
    shapes.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width")
    shapes.add_argument("--batch", type=shared.positive_int, help="static batch size (default 1)")
    p.add_argument("--head", choices=("semantic", "instance", "panoptic"),
                   help="compute this post-processing in the graph (see README, 'Post-processing heads')")
    p.add_argument("--input", choices=("uint8", "float"), default="uint8",
                   help="uint8 NHWC image + valid_size (default), or float pixel_values NCHW (HF's input)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 to 20 (default 17)")
    p.add_argument("--no-simplify", action="store_true", help="skip the onnxslim clean-up")
    shared.add_plugins(p)
    shared.add_classes(p)
    precision = p.add_argument_group("precision")
    precision.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                           help="fp16: export, then convert with fp32 islands chosen by a sensitivity sweep on "
                                "--data (as m2f convert --precision fp16; int8: m2f calibrate the fp32 export)")
    shared.add_sample_data(precision, required=False)
    shared.add_threads(p)


def checkpoint_fingerprint(path: Path) -> str:
    """sha256 of the checkpoint file (of its weight files, in order, for a directory)."""
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    digest = hashlib.sha256()
    for f in files:
        hash_file(digest, f)
    return digest.hexdigest()


def _restrict_task(model, task: str | None, head: str | None) -> None:
    """Advertise only ``task``, or add the head's task. Any task will do: the raw outputs serve all three, also for
    a model whose config turned on only semantic inference (its semantic post-processing order is kept)."""
    import dataclasses

    cfg = model.config
    keep_order = {"sem_seg_postprocess_before_inference": cfg.postprocess_before_inference}
    if task:
        model.config = dataclasses.replace(
            cfg, semantic_on=task == "semantic", instance_on=task == "instance", panoptic_on=task == "panoptic",
            **keep_order)
    if head and head not in model.config.tasks:
        model.config = dataclasses.replace(model.config, **{f"{head}_on": True}, **keep_order)


def _export_fp16(model, output: Path, options, source: dict, args) -> None:
    """fp32 export into a temporary folder, then the measured fp16 conversion to ``output``."""
    import tempfile

    from m2f.export.onnx_export import export_onnx

    from .convert import convert_to_fp16

    with tempfile.TemporaryDirectory(prefix="m2f-export-") as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", options, source=source, progress=print)
        print(f"exported fp32 ({fp32.nodes} nodes); converting to fp16")
        convert_to_fp16(fp32.path, output, args)


def run(args) -> int:
    from m2f.errors import require

    for module in ("torch", "onnx", "onnxslim"):
        require(module, "export", "m2f export")
    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.contract import THINGS_FROM_CONFIG
    from m2f.export.onnx_export import check_options, thing_split
    from m2f.fileio import check_output_file
    from m2f.model.checkpoint import load_checkpoint
    from m2f.onnx_graph import format_io
    from m2f.threads import use_threads

    things, stuff = shared.class_lists(args)
    options = ExportOptions(input=args.input, head=args.head, height=args.height, width=args.width,
                            square=args.square, dynamic=args.dynamic, batch=args.batch, opset=args.opset,
                            flavor=args.flavor, tensorrt_version=args.trt_version, simplify=not args.no_simplify,
                            thing_classes=things, stuff_classes=stuff)
    output = check_output_file(args.output, (".onnx",))  # before loading, hashing and tracing
    check_options(options)
    if args.precision == "fp16" and args.data:  # a wrong --data is said before the export, not after it
        from m2f.validate.data import open_images

        open_images(args.data)
    use_threads(args.threads)
    ckpt = Path(args.checkpoint)
    print(f"loading {ckpt}")
    model = load_checkpoint(ckpt, preset=args.preset, config=args.config, trust=args.trust_checkpoint)
    for note in model.load_report.notes:
        print(f"note: {note}")
    _restrict_task(model, args.task, args.head)
    thing_ids, thing_source = thing_split(model.config, options)  # names checked before tracing
    if thing_source != THINGS_FROM_CONFIG:
        print(f"note: thing classes from {thing_source}: {len(thing_ids)} of {model.config.num_classes}")
    source = {"name": ckpt.name, "format": model.load_report.format, "config": model.load_report.config_source,
              "sha256": checkpoint_fingerprint(ckpt)}
    if args.precision == "fp16":
        _export_fp16(model, output, options, source, args)
        return 0
    summary = export_onnx(model, output, options, source=source, progress=print)
    took = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    print(f"wrote {summary.path} ({summary.size_bytes / 1e6:.1f} MB, {summary.nodes} nodes, opset {args.opset}, "
          f"{options.flavor} ops; {took})")
    print("  inputs   " + format_io(summary.inputs))
    print("  outputs  " + format_io(summary.outputs))
    if options.flavor != "portable":
        print("  plugins  " + summary.metadata.describe_plugins())
    print(f"next: m2f inspect --trt-compat {summary.path}")
    return 0
