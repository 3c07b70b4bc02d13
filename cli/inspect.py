"""``m2f inspect CKPT``: what a checkpoint is (format, architecture, K, Q, parameter count, metadata)."""
from __future__ import annotations

import json

HELP = "show a checkpoint (format, architecture, K, Q, parameters) or an exported .onnx (I/O, nodes, metadata)"


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="detectron2 .pkl/.pth, .safetensors, a HuggingFace model directory, or an "
                                      ".onnx file written by m2f export")
    p.add_argument("--preset", help="model-zoo preset to check the checkpoint against (`m2f presets` lists them)")
    p.add_argument("--config", help="detectron2 YAML config of the checkpoint (its _BASE_ chain is followed)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary Python objects in the file (only for files you trust)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--trt-compat", action="store_true",
                   help="(.onnx) check every node against TensorRT's ONNX-parser operator matrix; exit 1 when a "
                        "node would be refused")


MAX_LISTED = 20  # compat issues printed in text mode


def describe_backbone(cfg) -> str:
    b = cfg.backbone
    if b.kind == "resnet":
        return f"ResNet-{b.depth} ({b.norm})"
    return (f"Swin (embed {b.embed_dim}, depths {list(b.depths)}, heads {list(b.num_heads)}, "
            f"window {b.window_size})")


def inspect_onnx(args) -> int:
    from m2f.contract import read_onnx
    from m2f.errors import require
    from m2f.onnx_graph import describe_graph, format_io, load_onnx

    require("onnx", "export", "m2f inspect on an ONNX file")
    proto = load_onnx(args.checkpoint, external_data=False)
    meta = read_onnx(proto, args.checkpoint)
    graph = describe_graph(proto)
    issues = check_trt_compat(proto) if args.trt_compat else None
    if args.json:
        doc = {"inputs": graph.inputs, "outputs": graph.outputs, "nodes": graph.nodes,
               "op_counts": graph.op_counts, "metadata": meta.to_dict()}
        if issues is not None:
            doc["trt_compat"] = [vars(i) for i in issues]
        print(json.dumps(doc, indent=2))
        return 1 if issues else 0
    top = ", ".join(f"{op} {n}" for op, n in graph.op_counts.items())
    rows = [
        ("onnx", f"{args.checkpoint} (opset {meta.opset}, IR {proto.ir_version}, {meta.op_flavor} ops, "
                 f"{meta.precision})"),
        ("inputs", format_io(graph.inputs)),
        ("outputs", format_io(graph.outputs) + (f"  (head: {meta.head})" if meta.head else "")),
        ("nodes", f"{graph.nodes}: {top}"),
        ("model", f"{meta.model_name}: {meta.num_classes} classes ({len(meta.thing_ids)} things), "
                  f"{meta.num_queries} queries, tasks {', '.join(meta.tasks)}"),
        ("preprocess", f"resize short {meta.resize.short} / max {meta.resize.max}, pad to "
                       f"{meta.size_divisibility}, mean {list(meta.pixel_mean)}, std {list(meta.pixel_std)}"),
        ("thresholds", f"object mask {meta.thresholds.object_mask}, overlap {meta.thresholds.overlap}"),
        ("source", f"{meta.source.name} ({meta.source.format}, sha256 "
                   f"{str(meta.source.sha256)[:16]}…), m2f {meta.m2f_version}"),
        ("plugins", meta.describe_plugins()),
    ]
    if issues is not None:
        rows.append(("trt compat", f"{len(issues)} node(s) TensorRT's parser would refuse" if issues else
                     "every node is in TensorRT's ONNX-parser operator matrix (10.1 GA) with supported types"))
        rows += [("", str(i)) for i in issues[:MAX_LISTED]]
        if len(issues) > MAX_LISTED:
            rows.append(("", f"… {len(issues) - MAX_LISTED} more (--json lists all)"))
    for k, v in rows:
        print(f"{k:<13}{v}")
    return 1 if issues else 0


def check_trt_compat(proto) -> list:
    """Shape-inferred graph (types for every node) -> m2f.calib.trt_compat issues."""
    import onnx

    from m2f.calib.trt_compat import check_graph

    inferred = onnx.shape_inference.infer_shapes(proto)
    return check_graph(inferred)


def run(args) -> int:
    from m2f.errors import ArgumentError, require

    if args.trt_compat and not str(args.checkpoint).lower().endswith(".onnx"):
        raise ArgumentError("--trt-compat checks an exported .onnx file; export the checkpoint first (m2f export)")

    if str(args.checkpoint).lower().endswith(".onnx"):
        return inspect_onnx(args)
    require("torch", "model", "m2f inspect")
    from m2f.model.checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint, preset=args.preset, config=args.config, trust=args.trust_checkpoint)
    cfg, report = model.config, model.load_report
    n_params = sum(p.numel() for p in model.parameters())
    info = {
        "checkpoint": str(args.checkpoint), "format": report.format, "config_source": report.config_source,
        "backbone": describe_backbone(cfg), "num_classes": cfg.num_classes, "num_things": len(cfg.thing_ids),
        "num_queries": cfg.num_queries, "hidden_dim": cfg.hidden_dim, "encoder_layers": cfg.enc_layers,
        "decoder_layers": cfg.dec_layers, "parameters": n_params, "tasks": cfg.tasks,
        "test_resize": {"short": cfg.min_size_test, "max": cfg.max_size_test, "divisibility": cfg.size_divisibility},
        "thresholds": {"object_mask": cfg.object_mask_threshold, "overlap": cfg.overlap_threshold},
        "unused_keys": report.unused_keys, "notes": report.notes,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    names = ", ".join(cfg.class_names[:6]) + (", …" if len(cfg.class_names) > 6 else "") if cfg.class_names \
        else "(generic)"
    unused = ", ".join(report.unused_keys[:5]) + (" …" if len(report.unused_keys) > 5 else "") \
        if report.unused_keys else "none"
    rows = [
        ("checkpoint", f"{args.checkpoint} ({report.format})"),
        ("config", report.config_source),
        ("backbone", info["backbone"]),
        ("layers", f"{cfg.enc_layers} deformable encoder, {cfg.dec_layers} masked-attention decoder, "
                   f"hidden {cfg.hidden_dim}, {cfg.num_heads} heads"),
        ("classes (K)", f"{cfg.num_classes} ({len(cfg.thing_ids)} things): {names}"),
        ("queries (Q)", str(cfg.num_queries)),
        ("parameters", f"{n_params / 1e6:.2f} M"),
        ("tasks", f"{', '.join(cfg.tasks)} (object-mask threshold {cfg.object_mask_threshold}, "
                  f"overlap {cfg.overlap_threshold})"),
        ("test resize", f"short side {cfg.min_size_test}, long side <= {cfg.max_size_test}, "
                        f"pad to {cfg.size_divisibility}"),
        ("unused keys", unused),
    ] + [("note", n) for n in report.notes]
    for k, v in rows:
        print(f"{k:<13}{v}")
    return 0
