"""The PyTorch reference pipeline, image in -> results out, as the original runs at test time (docs/model.md §2).

uint8 RGB [H, W, 3] -> ResizeShortestEdge with PIL bilinear on the uint8 image -> normalise -> zero-pad to a
multiple of 32 (one image per canvas, as the original evaluates) -> model -> reference post-processing at the
original size. The runtime's results are judged against this.
"""
from __future__ import annotations

import numpy as np
import torch

from m2f.errors import ImageError

from .config import Mask2FormerConfig
from .mask2former import Mask2Former
from .postprocess import postprocess


def resize_shortest_edge_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge.get_output_shape, step for step (docs/model.md §2): the short side becomes
    ``short`` exactly, the long side scales with it; if the long side then exceeds ``max_size`` both are scaled
    down; each is rounded with int(x + 0.5).

    Written independently of the runtime's ``m2f.geometry.shortest_edge_size`` on purpose: the end-to-end parity
    tests compare the two pipelines, so a change to either one's rounding shows up there."""
    size = float(short)
    scale = size / min(height, width)
    if height < width:
        new_h, new_w = size, scale * width
    else:
        new_h, new_w = scale * height, size
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def preprocess(image: np.ndarray, cfg: Mask2FormerConfig) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 RGB [H, W, 3] -> (pixel_values float32 [1, 3, Hp, Wp], valid (h, w) of the resized image)."""
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {list(image.shape)}")
    h, w = resize_shortest_edge_size(image.shape[0], image.shape[1], cfg.min_size_test, cfg.max_size_test)
    resized = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float()
    mean = torch.tensor(cfg.pixel_mean).view(3, 1, 1)
    std = torch.tensor(cfg.pixel_std).view(3, 1, 1)
    x = (x - mean) / std
    div = cfg.size_divisibility  # ImageList.from_tensors: bottom/right zeros up to a multiple of the divisibility
    canvas = torch.zeros(1, 3, (h + div - 1) // div * div, (w + div - 1) // div * div)
    canvas[0, :, :h, :w] = x
    return canvas, (h, w)


@torch.no_grad()
def predict(model: Mask2Former, image: np.ndarray) -> dict:
    """One uint8 RGB image -> {"sem_seg", "panoptic_seg", "instances"} (those the config enables), at its size."""
    pixel_values, valid = preprocess(image, model.config)
    outputs = model(pixel_values)
    return postprocess(outputs, [valid], [image.shape[:2]], model.config)[0]
