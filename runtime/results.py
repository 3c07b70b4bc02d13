"""Typed per-image results of the runtime (numpy arrays; no torch)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Segment:
    id: int
    category_id: int
    category: str
    isthing: bool
    area: int


@dataclass
class Instance:
    category_id: int
    category: str
    score: float
    mask: np.ndarray  # bool [H, W] at the original image size
    query: int


@dataclass
class Result:
    """What one image gave; fields are None for tasks the model does not produce or that were not asked for.

    semantic: int32 [H, W] class ids; panoptic: int32 [H, W] segment ids (0 = void) with ``segments``;
    instances: sorted by score, highest first. Sizes are the original image's; class ids are the model's contiguous
    ids (0..K-1). ``timings`` in seconds per stage.

    input_size: (h, w) of the image as the network saw it. fit_scale: 1.0 when that is the reference resize;
    below 1 when a static canvas could not hold the reference resize and the image was shrunk further by this
    factor (objects then appear smaller than the model was trained for; see README, "Static canvases").
    """

    height: int
    width: int
    input_size: tuple[int, int] | None = None
    fit_scale: float = 1.0
    semantic: np.ndarray | None = None
    panoptic: np.ndarray | None = None
    segments: list[Segment] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
