"""Writing results in the formats people's tools read (numpy + Pillow; no torch, no pycocotools needed).

- COCO instance results: [{"image_id", "category_id", "segmentation": {"size", "counts"}, "score", "bbox"}] with
  compressed RLE exactly as pycocotools encodes it (column-major runs, its 6-bit string code).
- COCO panoptic: PNG with id -> (id % 256, id // 256 % 256, id // 65536) and a segments_info list.
- Semantic: a label PNG (uint8, or 16-bit when there are more than 255 classes).
- Overlays for people: a colour per class or segment, outlines, and a legend with the class names.
Files other tools evaluate (COCO instances, panoptic segments) carry the dataset's category ids when the model's
metadata has them (COCO 1..200, Cityscapes label ids), else the model's contiguous ids (0..K-1); both are written,
as "category_id" and "class". Every file is written to a temporary name and renamed, so an interrupted run never
leaves a half-written file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from m2f.fileio import atomic_path, write_json

from .results import Result


def rle_encode(mask: np.ndarray) -> dict:
    """bool [H, W] -> {"size": [H, W], "counts": str}, pycocotools' compressed RLE."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs
    chars = []
    for i, count in enumerate(runs):
        x = count - runs[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def rle_decode(rle: dict) -> np.ndarray:
    """The inverse of ``rle_encode``: {"size": [H, W], "counts": str} -> bool [H, W]."""
    h, w = rle["size"]
    runs: list[int] = []
    chars = rle["counts"]
    i = 0
    while i < len(chars):  # 5 bits a character, continuation bit 0x20, sign bit 0x10 in the last one
        x, shift, more = 0, 0, True
        while more:
            c = ord(chars[i]) - 48
            x |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            i += 1
            shift += 1
            if not more and c & 0x10:
                x |= -1 << (5 * shift)
        if len(runs) > 2:  # from the fourth run on, counts are stored as differences to the run two before
            x += runs[-2]
        runs.append(x)
    flat = np.zeros(h * w, bool)
    position = 0
    for j, count in enumerate(runs):
        if j % 2:
            flat[position:position + count] = True
        position += count
    return flat.reshape(w, h).T


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO [x, y, width, height] of a bool mask (zeros when empty)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def dataset_id(contiguous: int, category_ids: list[int] | None) -> int:
    """The dataset's category id of a class, or the contiguous id when the dataset's ids are unknown."""
    return int(category_ids[contiguous]) if category_ids else int(contiguous)


def coco_instances(result: Result, image_id: int, category_ids: list[int] | None = None) -> list[dict]:
    """COCO results for one image: every instance of the result (the reference's top-k; COCO's AP needs the low
    scores too), category ids in the dataset's numbering when known."""
    return [{"image_id": image_id, "category_id": dataset_id(i.category_id, category_ids), "class": i.category_id,
             "category": i.category, "score": round(i.score, 6), "segmentation": rle_encode(i.mask),
             "bbox": mask_bbox(i.mask)} for i in result.instances]


def panoptic_rgb(segment_ids: np.ndarray) -> np.ndarray:
    ids = segment_ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def panoptic_ids(rgb: np.ndarray) -> np.ndarray:
    """The inverse of ``panoptic_rgb``: uint8 [H, W, 3] -> int32 segment ids [H, W]."""
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def semantic_label_dtype(num_classes: int):
    """The dtype of a semantic label PNG: uint8 up to 255 classes, uint16 beyond."""
    return np.uint8 if num_classes <= 255 else np.uint16


def palette(n: int) -> np.ndarray:
    """n distinct, stable colours [n, 3] uint8."""
    rng = np.random.default_rng(2024)
    return rng.integers(50, 256, (max(n, 1), 3)).astype(np.uint8)


def _outline(labels: np.ndarray) -> np.ndarray:
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge


def overlay(image: np.ndarray, result: Result, names: list[str], task: str, score_threshold: float = 0.5) -> np.ndarray:
    """uint8 RGB [H, W + legend, 3]: the image blended with the task's result, outlines, and a legend of exactly
    what is drawn (instances: those scoring at least ``score_threshold``, with their scores)."""
    from PIL import Image, ImageDraw

    colors = palette(len(names))
    out = image.astype(np.float32)
    entries: dict[str, np.ndarray] = {}
    if task == "panoptic" and result.panoptic is not None:
        seg_colors = np.zeros((max([s.id for s in result.segments], default=0) + 1, 3), np.uint8)
        numbered: dict[str, int] = {}
        for s in result.segments:  # things get a shade per instance (numbered in the legend), stuff its class colour
            shade = colors[s.category_id].astype(np.int32) + (37 * s.id if s.isthing else 0)
            seg_colors[s.id] = np.clip(shade % 256, 40, 255)
            if s.isthing:
                numbered[s.category] = numbered.get(s.category, 0) + 1
            entries[f"{s.category} {numbered[s.category]}" if s.isthing else s.category] = seg_colors[s.id]
        painted = result.panoptic > 0
        out[painted] = 0.45 * out[painted] + 0.55 * seg_colors[result.panoptic[painted]]
        edges = _outline(result.panoptic)
    elif task == "instance":
        shown = [i for i in result.instances if i.score >= score_threshold]
        labels = np.zeros(image.shape[:2], np.int32)
        for k, inst in enumerate(reversed(shown)):  # highest score painted last, on top
            labels[inst.mask] = len(shown) - k
            out[inst.mask] = 0.45 * out[inst.mask] + 0.55 * colors[inst.category_id]
        for inst in shown:
            entries[f"{inst.category} {inst.score:.2f}"] = colors[inst.category_id]
        edges = _outline(labels)
    elif result.semantic is not None:
        out = 0.45 * out + 0.55 * colors[result.semantic]
        for c in np.unique(result.semantic):
            entries[names[int(c)]] = colors[int(c)]
        edges = _outline(result.semantic)
    else:
        edges = np.zeros(image.shape[:2], bool)
    out[edges] = 255
    canvas = Image.new("RGB", (image.shape[1] + 180, max(image.shape[0], 20 + 16 * len(entries))), (24, 24, 24))
    canvas.paste(Image.fromarray(out.astype(np.uint8)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    ordered = entries.items() if task == "instance" else sorted(entries.items())  # instances: best first
    for k, (name, color) in enumerate(ordered):
        y = 6 + 16 * k
        draw.rectangle([image.shape[1] + 6, y, image.shape[1] + 18, y + 12], fill=tuple(int(v) for v in color))
        draw.text((image.shape[1] + 24, y), name[:24], fill=(235, 235, 235))
    return np.asarray(canvas)


def write_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


# the files write_result may write for one image, after its stem
RESULT_SUFFIXES = (".panoptic.png", ".segments.json", ".semantic.png", ".overlay.png")


def remove_result(out_dir: Path, stem: str) -> None:
    """Remove whatever write_result wrote for ``stem`` (an image whose run could not record it)."""
    for suffix in RESULT_SUFFIXES:
        (out_dir / f"{stem}{suffix}").unlink(missing_ok=True)


def write_result(result: Result, image: np.ndarray, names: list[str], out_dir: Path, stem: str,
                 overlays: bool = True, category_ids: list[int] | None = None, score_threshold: float = 0.5) -> dict:
    """Per-image files (``stem`` may name a subfolder, e.g. a video's frames); returns the files written."""
    written = {}
    if result.panoptic is not None:
        write_png(panoptic_rgb(result.panoptic), out_dir / f"{stem}.panoptic.png")
        write_json(out_dir / f"{stem}.segments.json", {"file_name": f"{stem}.panoptic.png", "segments_info": [
            {"id": s.id, "category_id": dataset_id(s.category_id, category_ids), "class": s.category_id,
             "category": s.category, "isthing": s.isthing, "area": s.area,
             "bbox": mask_bbox(result.panoptic == s.id)} for s in result.segments]})
        written["panoptic"] = f"{stem}.panoptic.png"
    if result.semantic is not None:
        write_png(result.semantic.astype(semantic_label_dtype(len(names))), out_dir / f"{stem}.semantic.png")
        written["semantic"] = f"{stem}.semantic.png"
    if overlays:
        task = "panoptic" if result.panoptic is not None else "instance" if result.instances else "semantic"
        write_png(overlay(image, result, names, task, score_threshold), out_dir / f"{stem}.overlay.png")
        written["overlay"] = f"{stem}.overlay.png"
    return written
