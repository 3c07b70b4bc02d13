"""A synthetic panoptic dataset in COCO panoptic format, deterministic by seed (numpy + Pillow).

Stuff (3 classes): horizontal bands of "sky" (smooth gradient), "wall" (brick-like stripes) and "ground" (noisy
texture), with a random horizon per image. Things (5 classes): circles, squares, triangles, diamonds and rings,
several instances per image, scales from small to large, drawn back to front so that later shapes occlude earlier
ones (an instance that ends up fully hidden is dropped, one that is mostly hidden is kept). Each thing class has
its own colour family (red, yellow, magenta, cyan, white, each instance jittered): shape alone is too weak a cue
for a small model trained for minutes on a CPU, and the dataset exists to give the bundled model real accuracy to
measure (instances still have to be separated and outlined, and touching instances of one class share a colour).

Layout written by ``generate``:
    DIR/images/000000.png           RGB image
    DIR/panoptic/000000.png         segment ids as RGB (id = R + 256 G + 65536 B; 0 = void)
    DIR/panoptic.json               {"images", "annotations" (segments_info with id, category_id, iscrowd, bbox,
                                     area), "categories" (id, name, isthing, color)}
Category ids are 1-based as in COCO; ``CATEGORIES`` lists them (things first, so contiguous ids 0..4 are things).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from m2f.fileio import write_json

THINGS = ("circle", "square", "triangle", "diamond", "ring")
STUFF = ("sky", "wall", "ground")
THING_COLORS = {"circle": (220, 40, 40), "square": (230, 210, 40), "triangle": (200, 50, 200),
                "diamond": (40, 210, 220), "ring": (235, 235, 235)}  # RGB centre of each class's colour family
CATEGORIES = [{"id": i + 1, "name": n, "isthing": 1 if n in THINGS else 0} for i, n in enumerate(THINGS + STUFF)]


def _shape_mask(kind: str, h: int, w: int, cy: float, cx: float, r: float, angle: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotated coordinates
    if kind == "circle":
        return dx ** 2 + dy ** 2 <= r ** 2
    if kind == "square":
        return (np.abs(u) <= r * 0.85) & (np.abs(v) <= r * 0.85)
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= r
    if kind == "ring":
        d2 = dx ** 2 + dy ** 2
        return (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)
    # triangle: three half-planes of an equilateral triangle of circumradius r
    inside = np.ones((h, w), bool)
    for k in range(3):
        a = angle + k * 2 * np.pi / 3
        inside &= (np.cos(a) * dx + np.sin(a) * dy) <= r * 0.5
    return inside


def _stuff_texture(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "sky":
        base = np.array([90, 150, 230], np.float32) + rng.uniform(-20, 20, 3)
        return base[None, None] * (0.75 + 0.25 * (1 - yy[..., None] / h))
    if kind == "wall":
        base = np.array([170, 90, 70], np.float32) + rng.uniform(-20, 20, 3)
        bricks = ((yy // 8) % 2 == 0) ^ (((xx + 8 * ((yy // 8) % 2)) // 16) % 2 == 0)
        return base[None, None] * (0.8 + 0.2 * bricks[..., None])
    base = np.array([90, 140, 60], np.float32) + rng.uniform(-20, 20, 3)
    return base[None, None] * (0.85 + 0.3 * rng.random((h, w, 1)).astype(np.float32))


def make_sample(rng: np.random.Generator, height: int = 192, width: int = 256, max_things: int = 7):
    """-> (image uint8 [H, W, 3], segment ids int32 [H, W], segments [{id, category_id}])."""
    image = np.zeros((height, width, 3), np.float32)
    seg = np.zeros((height, width), np.int32)
    segments = []
    # stuff: 2 or 3 horizontal bands with a wavy horizon
    kinds = list(rng.permutation(STUFF))[: rng.integers(2, 4)]
    cuts = np.sort(rng.uniform(0.2, 0.8, len(kinds) - 1)) * height
    xx = np.arange(width)
    band = np.zeros((height, width), np.int32)
    for i, cut in enumerate(cuts):
        wave = cut + 8 * np.sin(xx / rng.uniform(15, 40) + rng.uniform(0, 6))
        band[np.arange(height)[:, None] >= wave[None, :]] = i + 1
    for i, kind in enumerate(kinds):
        region = band == i
        if not region.any():
            continue
        image[region] = _stuff_texture(kind, height, width, rng)[region]
        segments.append({"id": len(segments) + 1, "category_id": STUFF.index(kind) + len(THINGS) + 1})
        seg[region] = segments[-1]["id"]
    # things, back to front
    for _ in range(rng.integers(2, max_things + 1)):
        kind = THINGS[rng.integers(len(THINGS))]
        r = float(rng.choice([rng.uniform(8, 14), rng.uniform(14, 30), rng.uniform(30, 55)]))
        mask = _shape_mask(kind, height, width, rng.uniform(0, height), rng.uniform(0, width), r,
                           rng.uniform(0, 2 * np.pi))
        if mask.sum() < 20:
            continue
        image[mask] = np.clip(np.array(THING_COLORS[kind]) + rng.uniform(-25, 25, 3), 0, 255)
        segments.append({"id": len(segments) + 1, "category_id": THINGS.index(kind) + 1})
        seg[mask] = segments[-1]["id"]
    image += rng.normal(0, 4, image.shape)
    alive = set(np.unique(seg).tolist())
    return np.clip(image, 0, 255).astype(np.uint8), seg, [s for s in segments if s["id"] in alive]


def _bbox(mask: np.ndarray) -> list[int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def generate(out: str | Path, num_images: int, seed: int = 0, height: int = 192, width: int = 256,
             progress=lambda done, total: None) -> Path:
    """Write ``num_images`` samples to ``out`` in COCO panoptic format; returns the JSON path."""
    from PIL import Image

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "panoptic").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(num_images):
        image, seg, segments = make_sample(rng, height, width)
        name = f"{i:06d}"
        Image.fromarray(image).save(out / "images" / f"{name}.png")
        rgb = np.stack([seg % 256, seg // 256 % 256, seg // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(out / "panoptic" / f"{name}.png")
        images.append({"id": i, "file_name": f"{name}.png", "height": height, "width": width})
        annotations.append({"image_id": i, "file_name": f"{name}.png", "segments_info": [
            {"id": s["id"], "category_id": s["category_id"], "iscrowd": 0, "area": int((seg == s["id"]).sum()),
             "bbox": _bbox(seg == s["id"])} for s in segments]})
        progress(i + 1, num_images)
    palette = np.random.default_rng(7).integers(0, 256, (len(CATEGORIES), 3)).tolist()
    categories = [dict(c, color=palette[k]) for k, c in enumerate(CATEGORIES)]
    path = out / "panoptic.json"
    write_json(path, {"images": images, "annotations": annotations, "categories": categories}, indent=None)
    return path
