"""``m2f export CKPT -o model.onnx``: checkpoint -> ONNX with the m2f graph contract and metadata."""
from __future__ import annotations

import hashlib
from pathlib import Path

HELP = "export a checkpoint to ONNX (static or dynamic shapes, optional GPU-side post-processing head)"


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="detectron2 .pkl/.pth, .safetensors, or a HuggingFace model directory")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--preset", help="model-zoo preset of the checkpoint (`m2f presets` lists them)")
    p.add_argument("--config", help="detectron2 YAML config of the checkpoint")
    p.add_argument("--task", choices=("semantic", "instance", "panoptic"),
                   help="advertise only this task in the metadata (default: every task the config turns on)")
    p.add_argument("--height", type=int, help="static canvas height (multiple of 32; default from the preset)")
    p.add_argument("--width", type=int, help="static canvas width (multiple of 32)")
    p.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width")
    p.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    p.add_argument("--head", choices=("semantic", "instance", "panoptic"),
                   help="compute this post-processing in the graph (see README, 'Post-processing heads')")
    p.add_argument("--input", choices=("uint8", "float"), default="uint8",
                   help="uint8 NHWC image + valid_size (default), or float pixel_values NCHW (HF's input)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 to 20 (default 17)")
    p.add_argument("--no-simplify", action="store_true", help="skip the onnxslim clean-up")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary Python objects in the checkpoint (only for files you trust)")


def checkpoint_fingerprint(path: Path) -> str:
    """sha256 of the checkpoint file (of its weight files, in order, for a directory)."""
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def run(args) -> int:
    import dataclasses

    from m2f.errors import M2FError, require

    require("torch", "export", "m2f export")
    require("onnx", "export", "m2f export")
    require("onnxslim", "export", "m2f export")
    from m2f.export import ExportOptions, export_onnx
    from m2f.export.onnx_export import check_options
    from m2f.model import load_checkpoint
    from m2f.onnx_graph import format_io

    ckpt = Path(args.checkpoint)
    options = ExportOptions(input=args.input, head=args.head, height=args.height, width=args.width,
                            dynamic=args.dynamic, batch=args.batch, opset=args.opset, simplify=not args.no_simplify)
    print(f"loading {ckpt}")
    model = load_checkpoint(ckpt, preset=args.preset, config=args.config, trust=args.trust_checkpoint)
    for note in model.load_report.notes:
        print(f"note: {note}")
    check_options(model, options, Path(args.output))  # fail fast, before hashing and tracing
    cfg = model.config
    if args.task:
        if args.task not in cfg.tasks:
            raise M2FError(f"this model's config does not produce {args.task} results (it has "
                           f"{', '.join(cfg.tasks)}); pick one of those")
        model.config = dataclasses.replace(
            cfg, semantic_on=args.task == "semantic", instance_on=args.task == "instance",
            panoptic_on=args.task == "panoptic", sem_seg_postprocess_before_inference=cfg.postprocess_before_inference)
    if args.head and args.head not in model.config.tasks:
        raise M2FError(f"--head {args.head} needs a model that produces {args.head} results (this one has "
                       f"{', '.join(model.config.tasks)})")
    source = {"name": ckpt.name, "format": model.load_report.format, "config": model.load_report.config_source,
              "sha256": checkpoint_fingerprint(ckpt)}
    summary = export_onnx(model, args.output, options, source=source, progress=print)
    took = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    print(f"wrote {summary.path} ({summary.size_bytes / 1e6:.1f} MB, {summary.nodes} nodes, opset {args.opset}, "
          f"{options.flavor} ops; {took})")
    print("  inputs   " + format_io(summary.inputs))
    print("  outputs  " + format_io(summary.outputs))
    print(f"next: m2f inspect {summary.path}")
    return 0
