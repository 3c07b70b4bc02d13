"""Calibration data: images from a folder, a COCO json or the synthetic generator, through the runtime's own
pre-processing, so calibration sees exactly the tensors the engine will see.

    feeds = CalibrationSet.open(meta, "synthetic:64:0", images=32, seed=0)
    for batch in feeds: ...          # dicts of graph inputs (image uint8 [N, H, W, 3], valid_size int32 [N, 2])

``fingerprint`` identifies the set (spec, count, seed and the pre-processing the metadata asks for), so statistics
collected on it can be cached and reused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from m2f.errors import DatasetError

DEFAULT_IMAGES = 32


@dataclass
class CalibrationSet:
    """The chosen images of a dataset, pre-processed batch by batch on iteration (never all in memory)."""

    dataset: object  # m2f.validate.data.ImageFolder | Annotated
    indices: list[int]
    preprocessor: object  # m2f.runtime.preprocess.Preprocessor
    fingerprint: str

    @classmethod
    def open(cls, meta, spec: str, images: int = DEFAULT_IMAGES, seed: int = 0, canvas: tuple[int, int] | None = None,
             batch: int | None = None) -> "CalibrationSet":
        """``images`` of ``spec`` (validate.data.open_images' forms), chosen at random with ``seed`` when the dataset
        has more; DatasetError with one sentence when it has none. ``canvas`` / ``batch``: every batch at exactly
        this shape, also for a dynamic graph (TensorRT's implicit calibration at one profile shape)."""
        from m2f.runtime.preprocess import Preprocessor
        from m2f.validate.data import open_images

        dataset = open_images(spec)
        if len(dataset) == 0:
            raise DatasetError(f"--data {spec} holds no images to calibrate on")
        count = min(images, len(dataset))
        indices = sorted(np.random.default_rng(seed).permutation(len(dataset))[:count].tolist())
        document = meta.to_dict()
        preprocessing = {k: document[k] for k in ("resize", "size_divisibility", "pixel_mean", "pixel_std", "input")}
        key = json.dumps({"spec": spec, "indices": indices, "preprocessing": preprocessing,
                          **({"canvas": list(canvas), "batch": batch} if canvas else {})}, sort_keys=True)
        return cls(dataset, indices, Preprocessor(meta, canvas=canvas, batch=batch),
                   hashlib.sha256(key.encode()).hexdigest()[:16])

    @property
    def batch_size(self) -> int:
        """A static graph's batch, else 1."""
        return 1 if self.preprocessor.dynamic else self.preprocessor.batch

    def __len__(self) -> int:
        """Number of batches."""
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self):
        size = self.batch_size
        for start in range(0, len(self.indices), size):
            images = [self.dataset.item(i)[0] for i in self.indices[start:start + size]]
            yield self.preprocessor(images).feeds
