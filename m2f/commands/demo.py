"""``m2f demo``: the main job on the bundled default model, end to end, on a fresh machine.

Until a trained default model is bundled, the default is the ``demo-tiny`` architecture with seeded random
weights: the demo writes it as a detectron2 checkpoint, loads it back through the checkpoint loader, runs the
PyTorch reference pipeline (PIL resize, normalise, pad, model, reference post-processing) on a synthetic image and
writes panoptic, semantic and instance results. The segments are meaningless until real weights exist.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

HELP = "run the bundled default model end to end and write its results (main job of the Quick start)"


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


def _palette(n: int):
    import numpy as np

    rng = np.random.default_rng(12345)
    return rng.integers(40, 256, (max(n, 1), 3)).astype(np.uint8)


def _write_png(array, path: Path) -> None:
    from PIL import Image

    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(array).save(tmp)
    tmp.replace(path)


def _write_json(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def run(args) -> int:
    from m2f.errors import M2FError, require

    require("torch", "model", "m2f demo")
    require("PIL", "model", "m2f demo")
    import numpy as np
    import torch

    from m2f.model import Mask2Former, load_checkpoint
    from m2f.model.checkpoint_io import save_detectron2_pkl
    from m2f.model.presets import demo_tiny
    from m2f.model.reference_pipeline import predict

    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise M2FError(f"cannot create the output folder {out}: {e.strerror}") from None

    t0 = time.perf_counter()
    print("[1/4] building the default model (demo-tiny, seeded random weights: no trained model is bundled yet)")
    torch.manual_seed(args.seed)
    cfg = demo_tiny()
    model = Mask2Former(cfg)
    for p in model.parameters():  # give every layer, incl. zero-initialised ones, a non-trivial value
        p.data.add_(torch.randn_like(p) * 0.05)
    ckpt = save_detectron2_pkl(model.state_dict(), out / "demo-tiny.pkl")

    print(f"[2/4] loading {ckpt} through the detectron2 checkpoint loader")
    model = load_checkpoint(ckpt, config=cfg)

    print("[3/4] running the PyTorch reference pipeline on a synthetic 480x360 image")
    image = synthetic_image(args.seed)
    t1 = time.perf_counter()
    result = predict(model, image)
    infer_s = time.perf_counter() - t1

    print(f"[4/4] writing results to {out}/")
    panoptic, segments = result["panoptic_seg"]
    pan = panoptic.numpy().astype(np.int64)
    pan_rgb = np.stack([pan % 256, pan // 256 % 256, pan // 65536], -1).astype(np.uint8)  # COCO id -> RGB
    semantic = result["sem_seg"].argmax(0).numpy().astype(np.uint8 if cfg.num_classes <= 255 else np.uint16)
    colors = _palette(cfg.num_classes)
    overlay = (0.5 * image + 0.5 * colors[semantic % len(colors)]).astype(np.uint8)
    inst = result["instances"]
    instances = [{"category_id": int(c), "category": cfg.class_names[int(c)], "score": float(s),
                  "area": int(m.sum())} for c, s, m in zip(inst["labels"], inst["scores"], inst["masks"])]
    instances.sort(key=lambda d: -d["score"])
    for name, arr in (("input.png", image), ("panoptic.png", pan_rgb), ("semantic.png", semantic),
                      ("overlay.png", overlay)):
        _write_png(arr, out / name)
    _write_json({"segments_info": [dict(s, category=cfg.class_names[s["category_id"]]) for s in segments]},
                out / "panoptic_segments.json")
    _write_json(instances, out / "instances.json")
    summary = {
        "model": cfg.name, "weights": "seeded random (no trained default model bundled yet)",
        "image_size": list(image.shape[:2]), "panoptic_segments": len(segments), "instances": len(instances),
        "semantic_classes_present": int(len(np.unique(semantic))), "pytorch_inference_s": round(infer_s, 3),
        "total_s": round(time.perf_counter() - t0, 3),
    }
    _write_json(summary, out / "summary.json")
    print(json.dumps(summary, indent=2))
    print(f"look at {out}/overlay.png (semantic overlay), {out}/panoptic.png + panoptic_segments.json (COCO "
          f"panoptic format), {out}/instances.json and {out}/summary.json")
    return 0
