"""``m2f demo``: the main job on the bundled default model, end to end, on a fresh machine.

The bundled model (preset ``synthetic-r50-lite``, trained on the synthetic panoptic dataset; see README) is loaded
through the checkpoint loader, exported to ONNX, and run by the torch-free runtime (ONNX Runtime) and by the
PyTorch reference pipeline on the bundled sample images and on a held-out synthetic set (generated with a seed the
training never used). Each backend is scored (PQ, mask AP, mIoU) and the raw outputs are compared. A TensorRT
backend is not in the comparison yet: building engines comes with a later version, and ``summary.json`` says why it
is absent. Results: overlays and COCO files for the samples, and ``summary.json``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

HELP = "bundled model -> ONNX -> torch-free runtime, scored (PQ / AP / mIoU) per backend against PyTorch"
HELD_OUT_SEED = 1000  # the training set uses seed 0 (README: "Reproducing the bundled model")


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", default="m2f-demo", help="folder for the results (default: ./m2f-demo)")
    p.add_argument("--held-out", type=int, default=100, help="number of held-out synthetic images to score")


def _require_all() -> None:
    from m2f.errors import require

    for module in ("torch", "PIL", "onnx", "onnxslim", "onnxruntime", "pycocotools"):
        require(module, "demo", "m2f demo")


def _tensorrt_skip_reason() -> str:
    """Why no TensorRT backend joins the comparison."""
    from m2f.testing import has_gpu, has_tensorrt

    for ok, reason in (has_tensorrt(), has_gpu()):
        if not ok:
            return reason
    return "building TensorRT engines (m2f build) is not part of this version yet"


def run(args) -> int:
    _require_all()
    import numpy as np
    import torch

    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS, sample_images
    from m2f.errors import M2FError
    from m2f.export import ExportOptions, export_onnx
    from m2f.model import load_checkpoint
    from m2f.model.reference_pipeline import preprocess
    from m2f.runtime import Predictor
    from m2f.fileio import write_json
    from m2f.runtime.formats import coco_instances, write_png, write_result
    from m2f.runtime.image_io import read_image
    from m2f.geometry import padded_size
    from m2f.datasets.coco import CocoPanoptic
    from m2f.datasets.synthetic import generate
    from m2f.validate.evaluate import evaluate_predictor, evaluate_pytorch

    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise M2FError(f"cannot create the output folder {out}: {e.strerror}") from None
    if not DEFAULT_WEIGHTS.exists():
        raise M2FError(f"the bundled model {DEFAULT_WEIGHTS} is missing; reinstall m2f (pip install -e .)")

    t0 = time.perf_counter()
    print(f"[1/5] loading the bundled model ({DEFAULT_WEIGHTS.name}, preset {DEFAULT_PRESET})")
    model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
    cfg = model.config

    sample_paths = sample_images()
    samples = [read_image(p) for p in sample_paths]
    canvas = padded_size(*preprocess(samples[0], cfg)[1], cfg.size_divisibility)
    print(f"[2/5] exporting to ONNX ({canvas[0]}x{canvas[1]} canvas, portable ops)")
    exported = export_onnx(model, out / f"{DEFAULT_PRESET}.onnx", ExportOptions(height=canvas[0], width=canvas[1]),
                           source={"name": DEFAULT_WEIGHTS.name, "format": "torch"})
    predictor = Predictor(exported.path, providers=["CPUExecutionProvider"])

    print(f"[3/5] generating {args.held_out} held-out synthetic images (seed {HELD_OUT_SEED})")
    held_out = CocoPanoptic(generate(out / "held-out", args.held_out, seed=HELD_OUT_SEED))

    print("[4/5] scoring each backend on the held-out set")
    backends = {"pytorch": None, "onnxruntime": predictor}
    scores, seconds = {}, {}
    for name, backend in backends.items():
        t1 = time.perf_counter()
        scores[name] = evaluate_pytorch(model, held_out) if backend is None else evaluate_predictor(backend, held_out)
        seconds[name] = round(time.perf_counter() - t1, 1)
        print(f"      {name:<12} PQ {scores[name]['PQ']:.2f}  AP {scores[name]['AP']:.2f}  "
              f"mIoU {scores[name]['mIoU']:.2f}  ({seconds[name]} s)")

    raw_error = {name: 0.0 for name in backends if name != "pytorch"}
    for image in samples + [held_out[i].image for i in range(min(10, len(held_out)))]:
        pixel_values, _ = preprocess(image, cfg)
        with torch.no_grad():
            ref = model(pixel_values)
        for name in raw_error:
            got = backends[name].backend.run(backends[name].preprocess([image]).feeds)
            raw_error[name] = max(raw_error[name], float(max(
                np.abs(got["pred_logits"] - ref["pred_logits"].numpy()).max(),
                np.abs(got["pred_masks"] - ref["pred_masks"].numpy()).max())))

    print(f"[5/5] writing results for {len(samples)} sample images to {out}/")
    files, instances = [], []
    for path, image in zip(sample_paths, samples):
        stem = path.stem
        result = predictor.predict(image)
        write_png(image, out / f"{stem}.png")
        files.append(write_result(result, image, predictor.names, out, stem))
        instances += coco_instances(result, stem)
    write_json(out / "instances.json", instances)
    summary = {
        "model": {"preset": DEFAULT_PRESET, "weights": DEFAULT_WEIGHTS.name,
                  "trained_on": "m2f synthetic -n 2000 --seed 0 (README: Reproducing the bundled model)"},
        "held_out": {"images": len(held_out), "seed": HELD_OUT_SEED},
        **{name: dict(scores[name], seconds=seconds[name]) for name in backends},
        "max_abs_error_vs_pytorch": raw_error,
        "pq_difference_vs_pytorch": {name: round(abs(scores[name]["PQ"] - scores["pytorch"]["PQ"]), 3)
                                     for name in raw_error},
        "onnx": {"path": exported.path.name, "nodes": exported.nodes},
        "samples": files,
        "total_s": round(time.perf_counter() - t0, 1),
    }
    summary["tensorrt_skipped"] = _tensorrt_skip_reason()
    write_json(out / "summary.json", summary)
    print(json.dumps({k: summary[k] for k in ("pytorch", "onnxruntime", "max_abs_error_vs_pytorch")}, indent=1))
    print(f"look at {out}/{files[0]['overlay']} (overlay), {out}/instances.json (COCO results) and "
          f"{out}/summary.json (scores per backend)")
    return 0
