"""The PyTorch reference pipeline, image in -> results out, as the original runs at test time (reference §2).

uint8 RGB [H, W, 3] -> ResizeShortestEdge with PIL bilinear on the uint8 image -> normalise -> zero-pad to a
multiple of 32 (one image per canvas, as the original evaluates) -> model -> reference post-processing at the
original size. The runtime's results are judged against this.
"""
from __future__ import annotations

import numpy as np
import torch

from m2f.errors import ImageError
from m2f.runtime.resize import padded_size, shortest_edge_size

from .config import Mask2FormerConfig
from .mask2former import Mask2Former
from .postprocess import postprocess


def preprocess(image: np.ndarray, cfg: Mask2FormerConfig) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 RGB [H, W, 3] -> (pixel_values float32 [1, 3, Hp, Wp], valid (h, w) of the resized image)."""
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {list(image.shape)}")
    h, w = shortest_edge_size(image.shape[0], image.shape[1], cfg.min_size_test, cfg.max_size_test)
    resized = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float()
    mean = torch.tensor(cfg.pixel_mean).view(3, 1, 1)
    std = torch.tensor(cfg.pixel_std).view(3, 1, 1)
    x = (x - mean) / std
    hp, wp = padded_size(h, w, cfg.size_divisibility)
    canvas = torch.zeros(1, 3, hp, wp)
    canvas[0, :, :h, :w] = x
    return canvas, (h, w)


@torch.no_grad()
def predict(model: Mask2Former, image: np.ndarray) -> dict:
    """One uint8 RGB image -> {"sem_seg", "panoptic_seg", "instances"} (those the config enables), at its size."""
    pixel_values, valid = preprocess(image, model.config)
    outputs = model(pixel_values)
    return postprocess(outputs, [valid], [image.shape[:2]], model.config)[0]
