"""``m2f demo``: the main job on the bundled default model, end to end, on a fresh machine.

The bundled model (preset ``synthetic-r50-lite``, trained on the synthetic panoptic dataset; see README) is loaded
through the checkpoint loader, exported to ONNX, and run by the torch-free runtime (ONNX Runtime) and by the
PyTorch reference pipeline on a held-out synthetic set (generated with a seed the training never used). Each backend
is scored (PQ, mask AP, mIoU) and the raw outputs are compared. On a machine with TensorRT and a GPU, an engine is
built from the same ONNX (``m2f build``) and joins the comparison; elsewhere ``summary.json`` says why it is absent.
The bundled sample images (held out too, with ground truth) get overlays, COCO files and their own scores.
"""
from __future__ import annotations

import json
import time

from . import args as shared

HELP = "bundled model -> ONNX -> torch-free runtime, scored (PQ / AP / mIoU) per backend against PyTorch"
RAW_COMPARISON_IMAGES = 10  # held-out images whose raw outputs are compared with PyTorch's


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", default="m2f-demo", help="folder for the results (default: ./m2f-demo)")
    p.add_argument("--held-out", type=shared.positive_int, default=100,
                   help="number of held-out synthetic images to score (default 100)")
    shared.add_threads(p)


def _require_all() -> None:
    from m2f.errors import require

    for module in ("torch", "PIL", "onnx", "onnxslim", "onnxruntime", "pycocotools", "matplotlib"):
        require(module, "demo", "m2f demo")


def _tensorrt_skip_reason() -> str | None:
    """Why no TensorRT backend joins the comparison (None: it does)."""
    from m2f.testing import has_gpu, has_tensorrt

    for ok, reason in (has_tensorrt(), has_gpu()):
        if not ok:
            return reason
    return None


def _engine(onnx_path, out):
    """The exported ONNX built into a TensorRT engine (fp32), as m2f build does."""
    from m2f.calib.engine import BuildOptions, build

    engine = out / (onnx_path.stem + ".engine")
    print(f"      building a TensorRT engine: {engine.name}")
    build(onnx_path, engine, BuildOptions())
    return engine


def _export(model, out):
    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS, sample_images
    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.geometry import padded_size, shortest_edge_size
    from m2f.runtime.image_io import read_image

    cfg = model.config
    first = read_image(sample_images()[0])
    canvas = padded_size(*shortest_edge_size(*first.shape[:2], cfg.min_size_test, cfg.max_size_test),
                         cfg.size_divisibility)
    print(f"[2/5] exporting to ONNX ({canvas[0]}x{canvas[1]} canvas, portable ops)")
    return export_onnx(model, out / f"{DEFAULT_PRESET}.onnx", ExportOptions(height=canvas[0], width=canvas[1]),
                       source={"name": DEFAULT_WEIGHTS.name, "format": "torch"})


def _validate(model, predictors: dict, held_out, out):
    """PyTorch vs each backend (ONNX Runtime, and TensorRT where there is one) on the held-out set through m2f
    validate's parity run: scores, tensor parity on the first images, and report.json / .md / .html in the demo's
    folder."""
    from m2f.validate.data import Annotated
    from m2f.validate.parity import run_parity
    from m2f.validate.reference import LiveReference
    from m2f.validate.report import write_report

    report = run_parity(LiveReference(model), {str(p.path): p for p in predictors.values()}, Annotated(held_out),
                        "held-out", tensor_images=RAW_COMPARISON_IMAGES)
    write_report(report, out, next(iter(predictors.values())).names)
    rows = [("pytorch", report.backends[0].reference_scores)] + \
        [(name, b.scores) for name, b in zip(predictors, report.backends)]
    for name, scores in rows:
        print(f"      {name:<12} PQ {scores['PQ']:.2f}  AP {scores['AP']:.2f}  mIoU {scores['mIoU']:.2f}")
    return report, dict(zip(predictors, report.backends))


def _samples(predictor, out) -> tuple[list[dict], dict]:
    """Overlays and COCO files of the bundled samples, and their scores against the samples' ground truth."""
    from m2f.assets import sample_annotations
    from m2f.datasets.coco import CocoPanoptic
    from m2f.runtime.batch import RunWriter
    from m2f.runtime.formats import write_png
    from m2f.validate.evaluate import evaluate_predictor

    samples = CocoPanoptic(sample_annotations())
    writer = RunWriter(out, predictor.names, predictor.category_ids)
    files = []
    try:
        for i in range(len(samples)):
            sample = samples[i]
            write_png(sample.image, out / f"sample-{i}.png")
            entry = writer.add(sample.image, predictor.predict(sample.image), f"sample-{i}", sample.image_id,
                               sample.file_name)
            files.append({k: entry[k] for k in ("panoptic", "semantic", "overlay") if k in entry})
    finally:
        writer.close({"model": "bundled", "tasks": predictor.tasks})
    return files, evaluate_predictor(predictor, samples)


def run(args) -> int:
    _require_all()
    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS, HELD_OUT_SEED
    from m2f.datasets.coco import CocoPanoptic
    from m2f.datasets.synthetic import generate
    from m2f.errors import M2FError
    from m2f.fileio import write_json
    from m2f.model.checkpoint import load_checkpoint
    from m2f.runtime import Predictor
    from m2f.threads import use_threads

    out = shared.output_folder(args.output)
    if not DEFAULT_WEIGHTS.exists():
        raise M2FError(f"the bundled model {DEFAULT_WEIGHTS} is missing; reinstall m2f (pip install -e .)")
    threads = use_threads(args.threads)
    t0 = time.perf_counter()
    print(f"[1/5] loading the bundled model ({DEFAULT_WEIGHTS.name}, preset {DEFAULT_PRESET}; {threads} threads)")
    model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
    exported = _export(model, out)
    predictors = {"onnxruntime": Predictor(exported.path, providers=["CPUExecutionProvider"], threads=threads)}
    skipped = _tensorrt_skip_reason()
    if skipped is None:
        predictors["tensorrt"] = Predictor(_engine(exported.path, out))

    print(f"[3/5] generating {args.held_out} held-out synthetic images (seed {HELD_OUT_SEED})")
    held_out = CocoPanoptic(generate(out / "held-out", args.held_out, seed=HELD_OUT_SEED))

    print(f"[4/5] scoring PyTorch and {' and '.join(predictors)} on the held-out set (m2f validate)")
    report, backends = _validate(model, predictors, held_out, out)
    reference = backends["onnxruntime"].reference_scores
    print(f"[5/5] writing and scoring the bundled sample images in {out}/")
    files, sample_scores = _samples(predictors["onnxruntime"], out)
    summary = {
        "model": {"preset": DEFAULT_PRESET, "weights": DEFAULT_WEIGHTS.name,
                  "trained_on": "m2f synthetic -n 2000 --seed 0 (README: Reproducing the bundled model)"},
        "held_out": {"images": len(held_out), "seed": HELD_OUT_SEED},
        "pytorch": reference, **{name: b.scores for name, b in backends.items()},
        "max_abs_error_vs_pytorch": {name: max(c.max_abs for c in b.outputs.values()) for name, b in backends.items()},
        "pq_difference_vs_pytorch": {name: round(abs(b.scores["PQ"] - reference["PQ"]), 3)
                                     for name, b in backends.items()},
        "validation": {"passed": report.passed, "report": "report.html"},
        "samples": {"files": files, "scores": sample_scores},
        "onnx": {"path": exported.path.name, "nodes": exported.nodes},
        "threads": threads,
        "total_s": round(time.perf_counter() - t0, 1),
        **({"tensorrt_skipped": skipped} if skipped else {}),
    }
    for predictor in predictors.values():
        predictor.close()
    write_json(out / "summary.json", summary)
    print(json.dumps({k: summary[k] for k in ("pytorch", *predictors, "max_abs_error_vs_pytorch")}, indent=1))
    print(f"samples: PQ {sample_scores['PQ']:.2f} against their ground truth")
    print(f"look at {out}/{files[0]['overlay']} (overlay), {out}/instances.json (COCO results), "
          f"{out}/report.html (PyTorch vs {' and '.join(predictors)}) and {out}/summary.json")
    return 0
