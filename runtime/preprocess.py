"""Pre-processing driven by an artifact's metadata: ResizeShortestEdge, the uint8 canvas + valid_size of the graph
contract, batching (numpy; PIL or OpenCV for the resize; no torch).

The default resize is PIL bilinear on the uint8 image, exactly what the original evaluation does. ``resize="cv2"``
uses OpenCV's INTER_LINEAR, faster and slightly different (PIL antialiases when shrinking; see
benchmarks/resize_accuracy.py for the measured effect on results).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m2f import contract
from m2f.errors import ArgumentError

from m2f.geometry import fit_within, padded_size, shortest_edge_size


@dataclass
class Prepared:
    """One batch ready for a backend, and the geometry needed to map results back."""

    feeds: dict[str, np.ndarray]
    valid_sizes: list[tuple[int, int]]  # (h, w) of each resized image inside the canvas
    original_sizes: list[tuple[int, int]]
    canvas: tuple[int, int]
    # per image: < 1 when the reference resize did not fit a static canvas and the image was shrunk further by
    # this factor to fit (aspect ratio kept); 1.0 otherwise
    fit_scales: list[float]


def resize_image(image: np.ndarray, height: int, width: int, method: str = "pil") -> np.ndarray:
    if (height, width) == image.shape[:2]:
        return image
    if method == "pil":
        from PIL import Image

        return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    if method == "cv2":
        import cv2

        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    raise ArgumentError(f"resize must be 'pil' or 'cv2', not {method!r}")


class Preprocessor:
    """Images (uint8 RGB [H, W, 3]) -> the feeds of an m2f graph, following its metadata.

    ``canvas`` / ``batch`` fix the canvas and batch of a dynamic graph's feeds as a static graph's are (TensorRT's
    implicit calibration runs at exactly one profile shape)."""

    def __init__(self, meta: contract.Metadata, resize: str = "pil", canvas: tuple[int, int] | None = None,
                 batch: int | None = None):
        self.meta, self.method = meta, resize
        self.short, self.max_size = meta.resize.short, meta.resize.max
        self.div = meta.size_divisibility
        self.kind = meta.input.kind
        self.dynamic = meta.input.dynamic and canvas is None
        if not self.dynamic:  # static graphs (or a fixed canvas): a fixed batch and canvas
            self.batch = batch or meta.input.batch or 1
            self.static_canvas = tuple(canvas) if canvas is not None else meta.input.canvas
        self.mean = np.asarray(meta.pixel_mean, np.float32)
        self.std = np.asarray(meta.pixel_std, np.float32)

    def reference_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the reference pipeline resizes an image to (ResizeShortestEdge)."""
        return shortest_edge_size(height, width, self.short, self.max_size)

    def target_size(self, height: int, width: int) -> tuple[tuple[int, int], float]:
        """(the size the network sees, the fit scale): the reference size, shrunk further (aspect kept) by the fit
        scale when a static canvas is too small for it, e.g. a portrait photo on a landscape canvas."""
        h, w = self.reference_size(height, width)
        if self.dynamic:
            return (h, w), 1.0
        canvas_h, canvas_w = self.static_canvas
        return fit_within(h, w, canvas_h, canvas_w), min(1.0, canvas_h / h, canvas_w / w)

    def __call__(self, images: list[np.ndarray]) -> Prepared:
        if not self.dynamic and len(images) > self.batch:
            raise ArgumentError(f"{len(images)} images given to a graph with a static batch of {self.batch}")
        targets = [self.target_size(*im.shape[:2]) for im in images]
        fit_scales = [scale for _, scale in targets]
        resized = [resize_image(im, *size, method=self.method) for im, (size, _) in zip(images, targets)]
        valid = [im.shape[:2] for im in resized]
        if self.dynamic:
            canvas = padded_size(max(h for h, _ in valid), max(w for _, w in valid), self.div)
            n = len(images)
        else:
            canvas, n = self.static_canvas, self.batch
        batch = np.zeros((n, canvas[0], canvas[1], 3), np.uint8)
        for i, im in enumerate(resized):
            batch[i, : im.shape[0], : im.shape[1]] = im
        sizes = np.zeros((n, 2), np.int32)
        sizes[: len(valid)] = valid
        sizes[len(valid):] = canvas  # padding slots of a static batch: any valid size works, results are dropped
        if self.kind == "uint8":
            feeds = {contract.IMAGE: batch, contract.VALID_SIZE: sizes}
        else:
            x = (batch.astype(np.float32) - self.mean) / self.std
            for i, (h, w) in enumerate(sizes):
                x[i, h:] = 0
                x[i, :, w:] = 0
            feeds = {contract.PIXEL_VALUES: np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
            if contract.VALID_SIZE in self.meta.input.names:
                feeds[contract.VALID_SIZE] = sizes
        return Prepared(feeds, [tuple(v) for v in valid], [im.shape[:2] for im in images], canvas, fit_scales)
