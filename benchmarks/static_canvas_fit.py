"""What shrinking images to fit a static canvas costs: the bundled model on portrait images.

The demo's export has a landscape 192x256 canvas. Portrait images (the held-out synthetic set, transposed to
256x192) are resized by the reference to 256x192, which does not fit, so the runtime shrinks them by 0.75 to 192x144.
The same model exported with ``--square`` (320x320) runs them at the reference scale. Both are scored against the
transposed ground truth; the landscape originals on the landscape canvas are the baseline.

    python benchmarks/static_canvas_fit.py [--images 100]
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path


class Transposed:
    """A dataset whose images and masks are transposed (landscape -> portrait)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        s = self.dataset[i]
        return replace(s, image=s.image.transpose(1, 0, 2).copy(), masks=s.masks.transpose(0, 2, 1).copy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()

    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS
    from m2f.datasets.coco import CocoPanoptic
    from m2f.datasets.synthetic import generate
    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.model.checkpoint import load_checkpoint
    from m2f.runtime import Predictor
    from m2f.validate.evaluate import evaluate_predictor

    model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        held_out = CocoPanoptic(generate(tmp / "data", args.images, seed=1000))
        landscape = export_onnx(model, tmp / "landscape.onnx", ExportOptions(height=192, width=256)).path
        square = export_onnx(model, tmp / "square.onnx", ExportOptions(square=True)).path
        rows = [("landscape images, landscape 192x256 canvas (reference scale)", landscape, held_out),
                ("portrait images, landscape 192x256 canvas (shrunk x0.75 to fit)", landscape, Transposed(held_out)),
                ("portrait images, --square 320x320 canvas (reference scale)", square, Transposed(held_out))]
        print(f"bundled model, {args.images} held-out synthetic images (seed 1000)")
        for label, path, data in rows:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = evaluate_predictor(Predictor(path), data)
            print(f"  {label:<66} PQ {scores['PQ']:6.2f}  AP {scores['AP']:6.2f}  mIoU {scores['mIoU']:6.2f}")


if __name__ == "__main__":
    main()
