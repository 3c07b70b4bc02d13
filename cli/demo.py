"""``m2f demo``: the main job on the bundled default model, end to end, on a fresh machine.

The bundled model (preset ``synthetic-r50-lite``, trained on the synthetic panoptic dataset; see README) is loaded
through the checkpoint loader, exported to ONNX, and run by the torch-free runtime (ONNX Runtime) and by the
PyTorch reference pipeline on a held-out synthetic set (generated with a seed the training never used). Each backend
is scored (PQ, mask AP, mIoU) and the raw outputs are compared. The bundled sample images (held out too, with
ground truth) get overlays, COCO files and their own scores. A TensorRT backend is not in the comparison yet:
building engines comes with a later version, and ``summary.json`` says why it is absent.
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


def _tensorrt_skip_reason() -> str:
    """Why no TensorRT backend joins the comparison."""
    from m2f.testing import has_gpu, has_tensorrt

    for ok, reason in (has_tensorrt(), has_gpu()):
        if not ok:
            return reason
    return "building TensorRT engines (m2f build) is not part of this version yet"


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


def _validate(model, predictor, held_out, out):
    """PyTorch vs ONNX Runtime on the held-out set through m2f validate's parity run: scores, tensor parity on the
    first images, and report.json / .md / .html in the demo's folder."""
    from m2f.validate.data import Annotated
    from m2f.validate.parity import run_parity
    from m2f.validate.reference import LiveReference
    from m2f.validate.report import write_report

    report = run_parity(LiveReference(model), {str(predictor.path): predictor}, Annotated(held_out), "held-out",
                        tensor_images=RAW_COMPARISON_IMAGES)
    write_report(report, out, predictor.names)
    backend = report.backends[0]
    for name, scores in (("pytorch", backend.reference_scores), ("onnxruntime", backend.scores)):
        print(f"      {name:<12} PQ {scores['PQ']:.2f}  AP {scores['AP']:.2f}  mIoU {scores['mIoU']:.2f}")
    return report, backend


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
    for i in range(len(samples)):
        sample = samples[i]
        write_png(sample.image, out / f"sample-{i}.png")
        entry = writer.add(sample.image, predictor.predict(sample.image), f"sample-{i}", sample.image_id,
                           sample.file_name)
        files.append({k: entry[k] for k in ("panoptic", "semantic", "overlay") if k in entry})
    writer.write_summaries({"model": "bundled", "tasks": predictor.tasks})
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
    predictor = Predictor(exported.path, providers=["CPUExecutionProvider"], threads=threads)

    print(f"[3/5] generating {args.held_out} held-out synthetic images (seed {HELD_OUT_SEED})")
    held_out = CocoPanoptic(generate(out / "held-out", args.held_out, seed=HELD_OUT_SEED))

    print("[4/5] scoring PyTorch and ONNX Runtime on the held-out set (m2f validate)")
    report, backend = _validate(model, predictor, held_out, out)
    raw_error = max(c.max_abs for c in backend.outputs.values())
    print(f"[5/5] writing and scoring the bundled sample images in {out}/")
    files, sample_scores = _samples(predictor, out)
    summary = {
        "model": {"preset": DEFAULT_PRESET, "weights": DEFAULT_WEIGHTS.name,
                  "trained_on": "m2f synthetic -n 2000 --seed 0 (README: Reproducing the bundled model)"},
        "held_out": {"images": len(held_out), "seed": HELD_OUT_SEED},
        "pytorch": backend.reference_scores, "onnxruntime": backend.scores,
        "max_abs_error_vs_pytorch": {"onnxruntime": raw_error},
        "pq_difference_vs_pytorch": {"onnxruntime": round(abs(backend.scores["PQ"] - backend.reference_scores["PQ"]),
                                                          3)},
        "validation": {"passed": report.passed, "report": "report.html"},
        "samples": {"files": files, "scores": sample_scores},
        "onnx": {"path": exported.path.name, "nodes": exported.nodes},
        "threads": threads,
        "total_s": round(time.perf_counter() - t0, 1),
        "tensorrt_skipped": _tensorrt_skip_reason(),
    }
    write_json(out / "summary.json", summary)
    print(json.dumps({k: summary[k] for k in ("pytorch", "onnxruntime", "max_abs_error_vs_pytorch")}, indent=1))
    print(f"samples: PQ {sample_scores['PQ']:.2f} against their ground truth")
    print(f"look at {out}/{files[0]['overlay']} (overlay), {out}/instances.json (COCO results), "
          f"{out}/report.html (PyTorch vs ONNX Runtime) and {out}/summary.json")
    return 0
