"""What fp16 costs per op flavor on the bundled model: each flavor exported (fp32) and converted to fp16
(``m2f convert --precision fp16``), both scored on the demo's held-out synthetic images (seed 1000) in ONNX Runtime.

The m2f flavor keeps its deformable-attention sampling inputs fp32 beside an fp16 value (its plugin takes that);
TensorRT's own MultiscaleDeformableAttnPlugin_TRT (trt-builtin) takes every float input in one type, so its sampling
locations and weights are rounded to fp16 at the node; the portable flavor keeps the whole sampling math fp32. ONNX
Runtime's CPU provider computes in fp32 between fp16 tensors: this measures fp16 *storage* (the rounding of every
tensor, the locations included), not TensorRT's fp16 arithmetic.

    python benchmarks/fp16_flavors.py [--held-out 100] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS, HELD_OUT_SEED
    from m2f.calib.convert import convert
    from m2f.calib.options import PrecisionOptions
    from m2f.datasets.coco import open_dataset
    from m2f.datasets.synthetic import generate
    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.model.checkpoint import load_checkpoint
    from m2f.runtime import Predictor
    from m2f.validate.evaluate import evaluate_predictor

    torch.set_num_threads(args.threads)
    model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
    print(f"bundled model, {args.held_out} held-out images (seed {HELD_OUT_SEED}); ONNX Runtime CPU, "
          f"{args.threads} threads")
    print("| flavor | fp32 PQ | fp16 PQ | ΔPQ | fp32 AP | fp16 AP | ΔAP | fp32 mIoU | fp16 mIoU | ΔmIoU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        held_out = open_dataset(generate(tmp / "held-out", args.held_out, seed=HELD_OUT_SEED))
        for flavor in ("portable", "m2f", "trt-builtin"):
            fp32 = export_onnx(model, tmp / f"{flavor}.onnx", ExportOptions(height=192, width=256, flavor=flavor)).path
            fp16 = tmp / f"{flavor}.fp16.onnx"
            convert(fp32, fp16, "fp16", PrecisionOptions(threads=args.threads))
            scores = [evaluate_predictor(Predictor(p, threads=args.threads), held_out) for p in (fp32, fp16)]
            cells = []
            for key in ("PQ", "AP", "mIoU"):
                a, b = scores[0][key], scores[1][key]
                cells += [f"{a:.2f}", f"{b:.2f}", f"{b - a:+.2f}"]
            print(f"| {flavor} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
