"""What a precision conversion measures on: one options object for fp16, int8 and best (and TensorRT 10's implicit
calibrator in ``m2f build --builder-flags``), filled from the command line's precision group (``m2f.cli.args``)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from m2f.errors import ArgumentError

from .ranges import DEFAULT_PERCENTILE, METHODS

IN_GRAPH = ("fp16", "int8", "best")  # the precisions written into the ONNX (fp32 is the export itself)
DEFAULT_FP16_DATA = "synthetic:16:1"  # fp16 needs no calibration, so its sweep may run on synthetic images
CALIBRATION_IMAGES = 32  # int8 / best: calibration images by default
SWEEP_IMAGES = 8  # sensitivity sweeps: images per block measured


@dataclass(frozen=True)
class PrecisionOptions:
    """data: the images (a folder, a COCO json, or synthetic[:N[:SEED]]); images: how many (None: the precision's
    default); seed: which, when the data has more; method / percentile: int8 ranges; exclude: fnmatch patterns of
    nodes kept float; cache: the statistics cache (int8 in the graph) or TensorRT's calibration cache (builder
    flags); threads: ONNX Runtime's CPU threads."""

    data: str | None = None
    images: int | None = None
    seed: int = 0
    method: str = "minmax"
    percentile: float = DEFAULT_PERCENTILE
    exclude: tuple[str, ...] = ()
    cache: Path | None = None
    threads: int | None = None

    def check(self, precision: str) -> None:
        """ArgumentError, before any work, when these options cannot give ``precision``."""
        if precision in ("int8", "best") and not self.data:
            raise ArgumentError(f"--precision {precision} needs --data: the calibration images (a folder, a COCO "
                                f"json, or synthetic:N)")
        if self.method not in METHODS:
            raise ArgumentError(f"--method {self.method} is not one of {', '.join(METHODS)}")
        if not (math.isfinite(self.percentile) and 50.0 < self.percentile <= 100.0):
            raise ArgumentError(f"--percentile {self.percentile} is outside (50, 100]")

    @property
    def calibration_images(self) -> int:
        return self.images or CALIBRATION_IMAGES

    @property
    def fp16_data(self) -> str:
        return self.data or DEFAULT_FP16_DATA
