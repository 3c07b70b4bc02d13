"""Every op flavor at every precision as a TensorRT engine, scored against PyTorch: one table. Needs TensorRT and a
GPU (run by benchmarks/gpu_check.sh where TensorRT is installed; says why and exits 2 elsewhere).

Through the commands a user runs: m2f plugins build (for this GPU), m2f export per flavor (the bundled model, the
demo's canvas), m2f build per precision (int8 calibrated on 32 synthetic images of another seed than the
held-out set), then one m2f validate of all the engines against the PyTorch checkpoint on the demo's held-out
images. A step that fails is a row saying which and why; the others still run. With --onnxruntime the same
flavors and precisions are converted with m2f convert and scored in ONNX Runtime instead (no TensorRT, no GPU: the
same table for comparison, and how this script is checked on a CPU).

    python benchmarks/engines.py [-o engines-check] [--held-out 100] [--onnxruntime]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

FLAVORS = ("portable", "m2f", "trt-builtin")
PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION = "synthetic:32:2000"  # another seed than the held-out images (HELD_OUT_SEED)


def _m2f(*args: str, log: Path) -> str | None:
    """Run one m2f command; None when it succeeded, else its last output line."""
    with log.open("a") as out:
        out.write(f"\n$ m2f {' '.join(args)}\n")
        out.flush()
        done = subprocess.run([sys.executable, "-m", "m2f", *args], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode in (0, 1):  # validate's 1 is a failed threshold, reported in its table
        return None
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return f"m2f {args[0]} failed: {lines[-1][:120] if lines else done.returncode}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="engines-check")
    parser.add_argument("--held-out", type=int, default=100)
    parser.add_argument("--onnxruntime", action="store_true", help="converted ONNX graphs in ONNX Runtime instead")
    args = parser.parse_args()

    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS, HELD_OUT_SEED
    from m2f.runtime.doctor import check_tensorrt, query_driver

    trt, trt_version = check_tensorrt()
    driver = query_driver()
    if not args.onnxruntime and (trt_version is None or driver.compute_capability is None):
        print(f"needs TensorRT and a GPU: {trt.found if trt_version is None else driver.problem} "
              f"(--onnxruntime scores the ONNX graphs instead)")
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    library, failed = None, None
    if not args.onnxruntime:
        arch = driver.compute_capability.replace(".", "")
        failed = _m2f("plugins", "build", "--arch", arch, "-o", str(out / "plugins"), log=log)
        library = out / "plugins" / "libm2f_plugins.so" if failed is None else None
    problems: dict[tuple[str, str], str] = {}
    models: dict[tuple[str, str], Path] = {}
    model = [str(DEFAULT_WEIGHTS), "--preset", DEFAULT_PRESET]
    for flavor in FLAVORS:
        onnx = out / f"{flavor}.onnx"
        exported = _m2f("export", *model, "--flavor", flavor, "--trt-version", trt_version or "10.3", "-o",
                        str(onnx), log=log)
        for precision in PRECISIONS:
            key = (flavor, precision)
            if exported:
                problems[key] = exported
            elif args.onnxruntime:
                converted = out / f"{flavor}.{precision}.onnx"
                if precision == "fp32":
                    models[key] = onnx
                elif problem := _m2f("convert", str(onnx), "-o", str(converted), "--precision", precision,
                                     "--data", CALIBRATION, log=log):
                    problems[key] = problem
                else:
                    models[key] = converted
            elif flavor == "m2f" and library is None:
                problems[key] = failed or "no plugin library"
            else:
                engine = out / f"{flavor}.{precision}.engine"
                extra = ["--plugins", str(library)] if flavor == "m2f" else []
                if precision != "fp32":
                    extra += ["--precision", precision, "--data", CALIBRATION]
                if problem := _m2f("build", str(onnx), "-o", str(engine), *extra, log=log):
                    problems[key] = problem
                else:
                    models[key] = engine
    report = None
    if models:
        validate = ["validate", *model, *map(str, models.values()), "--data",
                    f"synthetic:{args.held_out}:{HELD_OUT_SEED}", "-o", str(out / "validate")]
        if library is not None:
            validate += ["--plugins", str(library)]
        problem = _m2f(*validate, log=log)
        if problem is None:
            report = json.loads((out / "validate" / "report.json").read_text())
        else:
            problems.update({key: problem for key in models})
    by_model = {Path(b["model"]).name: b for b in (report or {}).get("backends", [])}
    where = "ONNX Runtime (CPU)" if args.onnxruntime else f"TensorRT {trt_version}, {driver.gpu}"
    print(f"{where}; bundled model, {args.held_out} held-out images; log: {log}")
    print("| flavor | precision | PQ | ΔPQ | AP | ΔAP | mIoU | ΔmIoU | panoptic pixels equal | ms/image | checks |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for flavor in FLAVORS:
        for precision in PRECISIONS:
            key = (flavor, precision)
            b = by_model.get(models[key].name) if key in models else None
            if b is None:
                print(f"| {flavor} | {precision} | {problems.get(key, 'not validated')} |||||||||")
                continue
            s, ref = b["scores"] or {}, b["pytorch_scores"] or {}
            cells = [f"{s.get(m, float('nan')):.2f} | {s.get(m, float('nan')) - ref.get(m, float('nan')):+.2f}"
                     for m in ("PQ", "AP", "mIoU")]
            pixels = b["agreement_with_pytorch"].get("panoptic_pixels", float("nan"))
            print(f"| {flavor} | {precision} | {' | '.join(cells)} | {pixels:.5f} | {b['infer_ms']:.2f} | "
                  f"{'passed' if b['passed'] else 'FAILED'} |")
    return 0 if report and report["passed"] and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
