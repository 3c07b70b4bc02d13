"""Input geometry of detectron2's test-time pipeline, in plain Python (no torch, no numpy needed)."""
from __future__ import annotations


def shortest_edge_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """ResizeShortestEdge: scale so the short side is ``short`` unless the long side would exceed ``max_size``;
    detectron2 rounds with int(x + 0.5). Returns (new_height, new_width)."""
    scale = short / min(height, width)
    new_h, new_w = height * scale, width * scale
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def padded_size(height: int, width: int, divisibility: int = 32) -> tuple[int, int]:
    """The canvas an image is zero-padded to (bottom/right): each side rounded up to a multiple of ``divisibility``."""
    return -(-height // divisibility) * divisibility, -(-width // divisibility) * divisibility
