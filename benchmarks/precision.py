"""Accuracy of each precision on the bundled model over the demo's held-out synthetic set (seed 1000), against the
fp32 graph measured in the same run: PQ / AP / mIoU, and the time and peak memory of each conversion.

    fp32 ONNX          the export, ONNX Runtime CPU
    fp16 ONNX          m2f convert --precision fp16 (measured islands); ONNX Runtime CPU rounds every tensor to fp16
                       between nodes but computes most ops in fp32: this is fp16 *storage*
    fp16 autocast      the PyTorch model under torch.autocast(cpu, float16) with the same deformable-sampling island:
                       fp16 *arithmetic* in GEMMs and convolutions (an estimate of what TensorRT computes)
    int8 <method>      m2f calibrate --method <method> (Q/DQ), ONNX Runtime CPU
    best               m2f convert --precision best on an opset-19 export (int8 where measured safe, fp16 elsewhere)

    python benchmarks/precision.py [--held-out 100] [--calib-images 32] [--threads 2]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CALIBRATION_DATA = "synthetic:64:7"  # not the held-out set


# the child reports its own peak: VmHWM belongs to the process image (ru_maxrss would carry over this parent's size
# from fork through exec)
_CHILD = ("import sys; from m2f.cli import main; rc = main(sys.argv[1:]); "
          "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1], file=sys.stderr); "
          "sys.exit(rc)")


def _m2f(*argv: str) -> tuple[float, float]:
    """Run an m2f command in a child process: (seconds, that process's peak resident memory in MB)."""
    t0 = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", _CHILD, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    if child.returncode:
        raise SystemExit(f"m2f {argv[0]} failed:\n{child.stderr}")
    return time.perf_counter() - t0, int(child.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=int, default=100)
    parser.add_argument("--calib-images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS, HELD_OUT_SEED
    from m2f.datasets.coco import open_dataset
    from m2f.model.checkpoint import load_checkpoint
    from m2f.runtime.predictor import Predictor
    from m2f.datasets.synthetic import generate
    from m2f.validate.evaluate import evaluate_predictor, evaluate_pytorch

    torch.set_num_threads(args.threads)
    threads = ["--threads", str(args.threads)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        held_out = open_dataset(generate(Path(tmp) / "held-out", args.held_out, seed=HELD_OUT_SEED))
        fp32 = Path(tmp) / "fp32.onnx"
        cost = {"fp32 ONNX": _m2f("export", str(DEFAULT_WEIGHTS), "--preset", DEFAULT_PRESET, "--height", "192",
                                  "--width", "256", "-o", str(fp32), *threads)}
        models = {"fp32 ONNX": fp32, "fp16 ONNX (storage)": Path(tmp) / "fp16.onnx"}
        cost["fp16 ONNX (storage)"] = _m2f("convert", str(fp32), "--precision", "fp16", "-o",
                                           str(models["fp16 ONNX (storage)"]), *threads)
        fp32_opset19 = Path(tmp) / "fp32-opset19.onnx"  # best's fp16 Q/DQ scales need opset 19
        _m2f("export", str(DEFAULT_WEIGHTS), "--preset", DEFAULT_PRESET, "--height", "192", "--width", "256",
             "--opset", "19", "-o", str(fp32_opset19), *threads)
        models["best (int8 where safe + fp16)"] = Path(tmp) / "best.onnx"
        cost["best (int8 where safe + fp16)"] = _m2f("convert", str(fp32_opset19), "--precision", "best", "--data",
                                                     CALIBRATION_DATA, "--images", str(args.calib_images), "-o",
                                                     str(models["best (int8 where safe + fp16)"]), *threads)
        for method in ("minmax", "percentile", "entropy"):
            name = f"int8 {method}"
            models[name] = Path(tmp) / f"int8-{method}.onnx"
            cost[name] = _m2f("calibrate", str(fp32), "--data", CALIBRATION_DATA, "--images",
                              str(args.calib_images), "--method", method, "-o", str(models[name]), *threads)
        for name, path in models.items():
            rows.append((name, evaluate_predictor(Predictor(path, threads=args.threads), held_out)))
        model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
        with torch.no_grad():
            rows.insert(1, ("PyTorch fp32", evaluate_pytorch(model, held_out)))
            with torch.autocast("cpu", dtype=torch.float16):
                rows.insert(3, ("PyTorch fp16 autocast (arithmetic)", evaluate_pytorch(model, held_out)))
    base = rows[0][1]
    print(f"held-out: {args.held_out} synthetic images (seed {HELD_OUT_SEED}); calibration: {args.calib_images} "
          f"images of {CALIBRATION_DATA}; ONNX Runtime CPU, {args.threads} threads")
    print("| precision | PQ | ΔPQ | AP | ΔAP | mIoU | ΔmIoU | convert time | peak memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        seconds, mb = cost.get(name, (None, None))
        took = f"{seconds:.0f} s" if seconds else "—"
        memory = f"{mb:.0f} MB" if mb else "—"
        print(f"| {name} | {r['PQ']:.2f} | {r['PQ'] - base['PQ']:+.2f} | {r['AP']:.2f} | {r['AP'] - base['AP']:+.2f} "
              f"| {r['mIoU']:.2f} | {r['mIoU'] - base['mIoU']:+.2f} | {took} | {memory} |")


if __name__ == "__main__":
    main()
