"""``Predictor("model.onnx").predict(image)``: the runtime's Python API (no torch).

A runner (ONNX Runtime or a TensorRT engine, ``m2f.runtime.backends``) between the host steps
(``m2f.runtime.host``: pre-processing from the artifact's metadata, reference-exact post-processing). A model served
by Triton is used the same way through ``m2f.serving.client.RemotePredictor``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np

from .backends import open_backend
from .host import HostOptions, HostSteps
from .image_io import read_image, to_rgb8
from .pipeline import DEFAULT_DEPTH, Item, Pipeline
from .results import Result


class Predictor:
    """Run an m2f artifact on images.

    model: ``.onnx`` from ``m2f export``, or a TensorRT engine with its ``.json`` sidecar.
    options: the host steps' settings (tasks, resize, thresholds, thing classes; ``HostOptions``).
    providers / plugins / threads: the backend's (ONNX Runtime providers, TensorRT plugin libraries, CPU threads of
    ONNX Runtime; default m2f.threads).
    """

    def __init__(self, model: str | Path, options: HostOptions = HostOptions(), providers: list[str] | None = None,
                 plugins: str | None = None, threads: int | None = None):
        self.path = Path(model)
        self.backend = open_backend(model, providers=providers, plugins=plugins, threads=threads)
        try:
            self.host = HostSteps(self.backend.meta, options, name=self.path.name)
        except BaseException:
            self.backend.close()
            raise
        self.meta, self.preprocess, self.postprocess = self.backend.meta, self.host.preprocess, self.host.postprocess
        self.tasks, self.names, self.category_ids = self.host.tasks, self.host.names, self.host.category_ids

    def predict(self, image: np.ndarray | str | Path) -> Result:
        """One image (a path, or an array: HxW gray, HxWx3 RGB, HxWx4 RGBA; uint8 or uint16) -> Result."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: list) -> list[Result]:
        """Several images; batched up to the model's batch size. Result.timings: per-image share of each stage."""
        arrays = [read_image(im) if isinstance(im, (str, Path)) else to_rgb8(im) for im in images]
        step = self.host.batch_size
        results: list[Result] = []
        for start in range(0, len(arrays), step):
            chunk = arrays[start:start + step]
            t0 = time.perf_counter()
            prepared = self.preprocess(chunk)
            t1 = time.perf_counter()
            outputs = self.backend.infer(prepared.feeds)
            t2 = time.perf_counter()
            done = self.postprocess(outputs, prepared)
            t3 = time.perf_counter()
            for r in done:
                r.timings = {"pre": (t1 - t0) / len(chunk), "infer": (t2 - t1) / len(chunk),
                             "post": (t3 - t2) / len(chunk)}
            results += done
        return results

    def stream(self, images, depth: int = DEFAULT_DEPTH) -> Iterator[Item]:
        """Images (paths, arrays, or (tag, image) pairs) -> ``Item`` s in the same order, each with ``.result`` or
        ``.error`` (one image's failure is its own), reading, pre-processing, inference and post-processing
        overlapped on threads with at most ``depth`` images between two stages (m2f.runtime.pipeline):

            for item in predictor.stream(sorted(Path("photos").glob("*.jpg"))):
                print(item.tag, item.error or len(item.result.segments))
        """
        return Pipeline(self, depth).stream(images)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
