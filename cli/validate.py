"""``m2f validate REFERENCE MODEL [MODEL…] --data …``: accuracy parity of exported models against PyTorch.

REFERENCE is the checkpoint the models were exported from (needs torch) or a reference file saved earlier with
``--save-reference`` (numpy only: validate an engine on a Jetson without torch). Writes report.json / .md / .html.
Exit status: 0 when every model is within the thresholds, 1 when one is not (the failed rules are printed), 2 on
errors.
"""
from __future__ import annotations

from pathlib import Path

from . import args as shared

HELP = "compare exported models (ONNX Runtime, TensorRT) with PyTorch: tensors, stages and task metrics; a report"
EXIT_FAILED = 1


def add_arguments(p) -> None:
    p.add_argument("reference", help="the checkpoint the models came from, or a .npz saved by --save-reference")
    p.add_argument("models", nargs="+", help=".onnx files or TensorRT engines to validate")
    p.add_argument("--data", required=True,
                   help="COCO panoptic json (or its folder), COCO instances json, a folder of images (parity only), "
                        "or synthetic[:N[:SEED]] (default synthetic set: the demo's 100 held-out images)")
    p.add_argument("--limit", type=shared.positive_int, help="use only the first N images")
    p.add_argument("--tensor-images", type=shared.non_negative_int, default=10,
                   help="compare tensors on the first N images (task parity runs on all; default 10)")
    p.add_argument("--taps", action="store_true",
                   help="compare every stage (models exported with --taps) and name the first that drifts")
    p.add_argument("--fail-on", help="thresholds, e.g. 'pq_drop>0.5,max_abs>1e-3' (metrics: pq_drop, ap_drop, "
                                     "miou_drop, max_abs, drift, mismatch, nan, pixel_disagreement); default by "
                                     "precision: fp32 'nan>0,drift>1e-3,pq_drop>0.5', fp16 'nan>0,pq_drop>0.5', "
                                     "int8 'nan>0,pq_drop>1.0'")
    p.add_argument("--worst", type=shared.non_negative_int, default=4, help="worst images shown per model")
    p.add_argument("--save-reference", metavar="FILE.npz",
                   help="also save PyTorch's results on these images, to validate without torch later")
    p.add_argument("-o", "--output", default="m2f-validate", help="folder for the report (default ./m2f-validate)")
    p.add_argument("--preset", help="model-zoo preset of the checkpoint")
    p.add_argument("--config", help="detectron2 YAML config of the checkpoint")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary Python objects in the checkpoint")
    shared.add_runtime(p)


def open_reference(path: str, preset=None, config=None, trust=False, save: str | None = None,
                   tensor_images: int = 10):
    """A SavedReference for a .npz, else the checkpoint as a LiveReference (recording it when ``save``)."""
    from m2f.validate.reference import LiveReference, RecordingReference, SavedReference

    if path.lower().endswith(".npz"):
        if save:
            from m2f.errors import ArgumentError

            raise ArgumentError("--save-reference needs a checkpoint as the reference, not a saved reference")
        return SavedReference(path)
    from m2f.errors import require

    require("torch", "model", "a PyTorch reference (or give a .npz saved with --save-reference)")
    from m2f.model.checkpoint import load_checkpoint

    live = LiveReference(load_checkpoint(path, preset=preset, config=config, trust=trust))
    return RecordingReference(live, tensor_images) if save else live


def _progress(done: int, total: int) -> None:
    import sys

    if done == total or done % 10 == 0:
        tty = sys.stdout.isatty()
        start = "\r" if tty else ""
        print(f"{start}  {done}/{total} images", end="" if tty and done < total else "\n", flush=True)


def run(args) -> int:
    from m2f.fileio import check_output_file
    from m2f.errors import ArgumentError
    from m2f.serving.client import is_server_url
    from m2f.threads import use_threads
    from m2f.validate.data import open_images
    from m2f.validate.parity import parse_rules, run_parity
    from m2f.validate.report import write_report

    served = [m for m in args.models if is_server_url(m)]
    if served:
        raise ArgumentError(f"m2f validate compares the network's raw tensors, which a served model ({served[0]}) "
                            f"does not return; validate the .onnx or engine the server runs, and compare served "
                            f"results with 'm2f infer URL' against 'm2f infer MODEL'")
    if args.fail_on:
        parse_rules(args.fail_on)  # one sentence now rather than after the run
    save = check_output_file(args.save_reference, (".npz",)) if args.save_reference else None
    out = shared.output_folder(args.output)
    threads = use_threads(args.threads)
    data = open_images(args.data)
    reference = open_reference(args.reference, args.preset, args.config, args.trust_checkpoint, save,
                               args.tensor_images)
    predictors = {m: shared.open_predictor(args, m, threads=threads) for m in args.models}
    total = len(data) if args.limit is None else min(args.limit, len(data))
    print(f"validating {', '.join(args.models)} against {reference.name} on {args.data} ({total} images)")
    report = run_parity(reference, predictors, data, args.data, limit=args.limit, tensor_images=args.tensor_images,
                        taps=args.taps, fail_on=args.fail_on, worst=args.worst, progress=_progress)
    names = next(iter(predictors.values())).names
    paths = write_report(report, out, names)
    if save:
        reference.save(save)
        print(f"saved the PyTorch reference to {save}")
    for b in report.backends:
        scores = f"PQ {b.scores['PQ']:.2f}, " if b.scores and "PQ" in b.scores else ""
        worst = max(b.outputs.values(), key=lambda c: c.drift, default=None)
        tensors = f"max drift {worst.drift:.2g} ({worst.name}), " if worst else ""
        drift = f", first stage to drift: {b.first_drift}" if b.first_drift else ""
        failed = [f"{c.rule} (got {c.value:.4g})" for c in b.checks if c.failed]
        print(f"{Path(b.model).name}: {scores}{tensors}{'FAILED ' + ', '.join(failed) if failed else 'passed'}"
              f"{drift}")
    print(f"report: {', '.join(str(p) for p in paths)}")
    return 0 if report.passed else EXIT_FAILED
