"""``m2f demo``: the main job on the bundled default model, end to end, on a fresh machine.

Until a trained default model is bundled, the default is the ``demo-tiny`` architecture with seeded random
weights. The demo writes it as a detectron2 checkpoint, loads it back through the checkpoint loader, exports it to
ONNX, runs the torch-free runtime (ONNX Runtime) and the PyTorch reference pipeline on a synthetic image, writes the
runtime's results (COCO panoptic PNG + segments, semantic PNG, COCO instances, overlay) and a summary comparing the
two backends. The segments are meaningless until real weights exist.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

HELP = "checkpoint -> ONNX -> torch-free runtime on the bundled default model, with a PyTorch comparison"


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", default="m2f-demo", help="folder for the results (default: ./m2f-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic image and the random weights")


def synthetic_image(seed: int, height: int = 360, width: int = 480):
    """uint8 RGB [H, W, 3]: a gradient background with a few filled discs and rectangles."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 200 // width + 30, yy * 150 // height + 60, np.full_like(xx, 120)], -1).astype(np.float32)
    for _ in range(6):
        color = rng.integers(0, 256, 3)
        cy, cx, r = rng.integers(40, height - 40), rng.integers(40, width - 40), rng.integers(15, 60)
        if rng.random() < 0.5:
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = color
        else:
            img[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = color
    return img.clip(0, 255).astype(np.uint8)


def run(args) -> int:
    from m2f.errors import M2FError, require

    for module in ("torch", "PIL", "onnx", "onnxslim", "onnxruntime"):
        require(module, "demo", "m2f demo")
    import numpy as np
    import torch

    from m2f.export import ExportOptions, export_onnx
    from m2f.model import Mask2Former, load_checkpoint
    from m2f.model.checkpoint_io import save_detectron2_pkl
    from m2f.model.presets import demo_tiny
    from m2f.model.postprocess import postprocess
    from m2f.model.reference_pipeline import preprocess
    from m2f.runtime import Predictor
    from m2f.runtime.formats import coco_instances, write_json, write_png, write_result
    from m2f.runtime.resize import padded_size

    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise M2FError(f"cannot create the output folder {out}: {e.strerror}") from None

    t0 = time.perf_counter()
    print("[1/5] building the default model (demo-tiny, seeded random weights: no trained model is bundled yet)")
    torch.manual_seed(args.seed)
    cfg = demo_tiny()
    model = Mask2Former(cfg)
    for p in model.parameters():  # give every layer, incl. zero-initialised ones, a non-trivial value
        p.data.add_(torch.randn_like(p) * 0.05)
    ckpt = save_detectron2_pkl(model.state_dict(), out / "demo-tiny.pkl")

    print(f"[2/5] loading {ckpt} through the detectron2 checkpoint loader")
    model = load_checkpoint(ckpt, config=cfg)

    image = synthetic_image(args.seed)
    pixel_values, valid = preprocess(image, cfg)
    canvas = padded_size(*valid, cfg.size_divisibility)
    print(f"[3/5] exporting to ONNX ({canvas[0]}x{canvas[1]} canvas, portable ops)")
    summary_export = export_onnx(model, out / "demo-tiny.onnx", ExportOptions(height=canvas[0], width=canvas[1]),
                                 source={"name": ckpt.name, "format": "detectron2-pkl"})

    print("[4/5] running the torch-free runtime (ONNX Runtime) and the PyTorch reference on a synthetic image")
    predictor = Predictor(summary_export.path, providers=["CPUExecutionProvider"])
    result = predictor.predict(image)
    t1 = time.perf_counter()
    with torch.no_grad():
        torch_raw = model(pixel_values)
    reference = postprocess(torch_raw, [valid], [image.shape[:2]], cfg)[0]
    torch_s = time.perf_counter() - t1
    ort_raw = predictor.backend.run(predictor.preprocess([image]).feeds)  # raw outputs, for the comparison
    max_logit_error = float(max(np.abs(ort_raw["pred_logits"] - torch_raw["pred_logits"].numpy()).max(),
                                np.abs(ort_raw["pred_masks"] - torch_raw["pred_masks"].numpy()).max()))

    print(f"[5/5] writing results to {out}/")
    written = write_result(result, image, predictor.names, out, "demo")
    write_png(image, out / "input.png")
    write_json(coco_instances(result, "demo"), out / "instances.json")
    ref_seg = reference["panoptic_seg"][0].numpy()
    summary = {
        "model": cfg.name, "weights": "seeded random (no trained default model bundled yet)",
        "image_size": list(image.shape[:2]), "onnx": {"path": summary_export.path.name, "nodes": summary_export.nodes},
        "onnxruntime": {"panoptic_segments": len(result.segments), "instances": len(result.instances),
                        "timing_ms": {k: round(1000 * v, 1) for k, v in result.timings.items()}},
        "pytorch": {"panoptic_segments": len(reference["panoptic_seg"][1]),
                    "instances": int(len(reference["instances"]["scores"])), "total_ms": round(1000 * torch_s, 1)},
        "agreement": {"max_abs_error_raw_outputs": max_logit_error,
                      "semantic_pixels_equal": float((result.semantic == reference["sem_seg"].argmax(0).numpy()).mean()),
                      "panoptic_pixels_equal": float((result.panoptic == ref_seg).mean())},
        "files": written, "total_s": round(time.perf_counter() - t0, 1),
    }
    write_json(summary, out / "summary.json")
    print(json.dumps(summary, indent=2))
    print(f"look at {out}/{written['overlay']} (overlay), {out}/{written['panoptic']} + demo.segments.json (COCO "
          f"panoptic), {out}/instances.json (COCO results) and {out}/summary.json (PyTorch vs ONNX Runtime)")
    return 0
