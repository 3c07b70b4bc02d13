"""Input geometry of detectron2's test-time pipeline, shared by export and the runtime (stdlib only).

The PyTorch reference pipeline (``m2f.model.reference_pipeline``) deliberately has its own copy written from the
reference semantics, so that the end-to-end parity tests notice when either changes.
"""
from __future__ import annotations


def shortest_edge_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """ResizeShortestEdge: the short side becomes ``short``, the long side scales with it, unless the long side would
    then exceed ``max_size``, when both are scaled down; detectron2 rounds with int(x + 0.5). Returns
    (new_height, new_width). The float operations are detectron2's, in its order: computing the short side as
    ``height * scale`` instead of setting it to ``short`` moves some sizes by a pixel (88x176 at 800/1333 is
    666x1333 in detectron2, 667x1333 the other way)."""
    size = float(short)
    scale = size / min(height, width)
    new_h, new_w = (size, scale * width) if height < width else (scale * height, size)
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def padded_size(height: int, width: int, divisibility: int = 32) -> tuple[int, int]:
    """The canvas an image is zero-padded to (bottom/right): each side rounded up to a multiple of ``divisibility``."""
    return -(-height // divisibility) * divisibility, -(-width // divisibility) * divisibility


def fit_within(height: int, width: int, max_height: int, max_width: int) -> tuple[int, int]:
    """The largest (h, w) with the aspect ratio of ``height`` x ``width`` that fits ``max_height`` x ``max_width``
    (rounded with int(x + 0.5), never past the bounds); the size itself when it already fits."""
    if height <= max_height and width <= max_width:
        return height, width
    scale = min(max_height / height, max_width / width)
    return max(1, min(max_height, int(height * scale + 0.5))), max(1, min(max_width, int(width * scale + 0.5)))
