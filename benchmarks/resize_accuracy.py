"""The OpenCV resize path vs the reference PIL path: time per resize and what it changes in the results.

Times PIL bilinear vs OpenCV INTER_LINEAR for a 1080x1920 frame resized to 800x1422 (COCO test size), then runs
--images random-content images through one exported model with both paths and reports the share of semantic pixels
and panoptic pixels that agree (the model: a tiny random export made here, or --model MODEL.onnx).
Usage: python benchmarks/resize_accuracy.py [--model M.onnx] [--images 8]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def time_resize(method: str, image: np.ndarray, runs: int = 10) -> float:
    from m2f.runtime.preprocess import resize_image

    resize_image(image, 800, 1422, method)
    t = time.perf_counter()
    for _ in range(runs):
        resize_image(image, 800, 1422, method)
    return (time.perf_counter() - t) / runs


def tiny_model(path: Path) -> Path:
    import dataclasses

    import torch

    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.model.mask2former import Mask2Former
    from m2f.model.config import Mask2FormerConfig, SwinConfig

    cfg = Mask2FormerConfig(backbone=SwinConfig(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8)),
                            num_classes=8, num_queries=16, hidden_dim=64, conv_dim=64, mask_dim=64, num_heads=4,
                            dim_feedforward=128, enc_ffn_dim=128, enc_layers=1, dec_layers=3, thing_ids=[0, 1, 2],
                            panoptic_on=True, instance_on=True, min_size_test=256, max_size_test=416)
    cfg = dataclasses.replace(cfg, object_mask_threshold=0.5, overlap_threshold=0.3)
    torch.manual_seed(0)
    model = Mask2Former(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.sem_seg_head.predictor.class_embed.weight.mul_(15)
    return export_onnx(model, path, ExportOptions(dynamic=True)).path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--images", type=int, default=8)
    args = ap.parse_args()
    from m2f.runtime import HostOptions, Predictor

    frame = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    t_pil, t_cv2 = time_resize("pil", frame), time_resize("cv2", frame)
    print(f"resize 1080x1920 -> 800x1422: PIL {1000 * t_pil:.1f} ms, OpenCV {1000 * t_cv2:.1f} ms "
          f"({t_pil / t_cv2:.1f}x)")
    model = args.model or tiny_model(Path(tempfile.mkdtemp()) / "tiny.onnx")
    pil, cv = Predictor(model, HostOptions(resize="pil")), Predictor(model, HostOptions(resize="cv2"))
    sem, pan = [], []
    rng = np.random.default_rng(1)
    for i in range(args.images):
        h, w = int(rng.integers(300, 700)), int(rng.integers(300, 700))
        yy, xx = np.mgrid[0:h, 0:w]
        image = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) % 256)], -1).astype(np.uint8)
        image = np.clip(image + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
        a, b = pil.predict(image), cv.predict(image)
        sem.append((a.semantic == b.semantic).mean())
        pan.append((a.panoptic == b.panoptic).mean())
    print(f"{args.images} images: semantic pixels agreeing {100 * np.mean(sem):.2f}% (min {100 * np.min(sem):.2f}%), "
          f"panoptic pixels agreeing {100 * np.mean(pan):.2f}% (min {100 * np.min(pan):.2f}%)")


if __name__ == "__main__":
    main()
