"""Reading COCO datasets into images and per-segment targets: COCO panoptic (json + PNGs) and COCO instances (json
with polygons or RLE; needs pycocotools). Training, the demo, validation and calibration share these readers.
Numpy + Pillow; targets are numpy so that torch-free users (validation, calibration) can read them too."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2f.errors import DatasetError


@dataclass
class Sample:
    image: np.ndarray  # uint8 RGB [H, W, 3]
    labels: np.ndarray  # int64 [G] contiguous class ids (things first, as the dataset's categories are ordered)
    masks: np.ndarray  # bool [G, H, W]
    isthing: np.ndarray  # bool [G]
    file_name: str
    image_id: int = 0  # the dataset's image id


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path} is not a JSON file: {e}") from None


def _coco_json(path: Path, kind: str, data: dict | None) -> dict:
    """The parsed COCO file (read from ``path`` unless ``data`` is given), checked for its three top-level keys."""
    if data is None:
        if not path.exists():
            raise DatasetError(f"{kind} annotations {path} do not exist")
        data = _read_json(path)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetError(f"{path} is not a COCO {kind} file (no '{key}')")
    return data


def _verify_files(files: list[Path], what: str) -> None:
    """DatasetError naming the first of ``files`` that is missing or not a readable image (and how many more are
    bad), so a long run never stops hours in on a file that was never there. PIL's verify() reads each file's
    structure without decoding every pixel."""
    from PIL import Image

    bad = []
    for path in files:
        try:
            with Image.open(path) as im:
                im.verify()
        except FileNotFoundError:
            bad.append(f"{path} does not exist")
        except Exception as e:  # PIL raises many types for broken files
            bad.append(f"{path} is not a readable image ({type(e).__name__})")
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DatasetError(f"{what}: {bad[0]}{more}; fix the files or the paths (--image-dir, --panoptic-dir)")


def _categories(data: dict) -> tuple[list[dict], dict[int, int], list[str]]:
    """(categories, dataset id -> contiguous id in file order, class names)."""
    categories = data["categories"]
    return categories, {c["id"]: i for i, c in enumerate(categories)}, [c["name"] for c in categories]


class CocoPanoptic:
    """``CocoPanoptic(json, image_dir, panoptic_dir)``: len() and [i] -> Sample. Crowd segments are skipped.

    Contiguous ids follow the order of ``categories`` in the json; ``class_names`` and ``thing_ids`` give the model's
    metadata for that order."""

    def __init__(self, json_path: str | Path, image_dir: str | Path | None = None,
                 panoptic_dir: str | Path | None = None, data: dict | None = None):
        json_path = Path(json_path)
        data = _coco_json(json_path, "panoptic", data)
        self.image_dir = Path(image_dir) if image_dir else json_path.parent / "images"
        self.panoptic_dir = Path(panoptic_dir) if panoptic_dir else json_path.parent / "panoptic"
        self.categories, self.contiguous, self.class_names = _categories(data)
        self.category_ids = [c["id"] for c in self.categories]  # the dataset's id of each contiguous class
        self.thing_ids = [i for i, c in enumerate(self.categories) if c.get("isthing")]
        by_id = {im["id"]: im for im in data["images"]}
        self.items = [(by_id[a["image_id"]], a) for a in data["annotations"]]

    def __len__(self) -> int:
        return len(self.items)

    def verify(self) -> None:
        """Every referenced image and panoptic PNG exists and is readable, or a DatasetError naming the first."""
        _verify_files([self.image_dir / info["file_name"] for info, _ in self.items], "COCO panoptic images")
        _verify_files([self.panoptic_dir / ann["file_name"] for _, ann in self.items], "COCO panoptic PNGs")

    def __getitem__(self, index: int) -> Sample:
        from PIL import Image

        image_info, ann = self.items[index]
        image = np.asarray(Image.open(self.image_dir / image_info["file_name"]).convert("RGB"))
        rgb = np.asarray(Image.open(self.panoptic_dir / ann["file_name"]).convert("RGB")).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        segments = [s for s in ann["segments_info"] if not s.get("iscrowd")]
        masks = np.stack([ids == s["id"] for s in segments]) if segments else np.zeros((0, *ids.shape), bool)
        labels = np.array([self.contiguous[s["category_id"]] for s in segments], np.int64)
        isthing = np.array([self.categories[c].get("isthing", 0) == 1 for c in labels], bool)
        return Sample(image, labels, masks, isthing, image_info["file_name"], image_info["id"])


class CocoInstances:
    """``CocoInstances(json, image_dir)``: a COCO instance-segmentation file (polygons or RLE) -> Samples of things
    only. Crowd annotations are skipped; contiguous ids follow the order of ``categories``. Needs pycocotools."""

    def __init__(self, json_path: str | Path, image_dir: str | Path | None = None, data: dict | None = None):
        json_path = Path(json_path)
        data = _coco_json(json_path, "instances", data)
        self.image_dir = Path(image_dir) if image_dir else json_path.parent / "images"
        self.categories, self.contiguous, self.class_names = _categories(data)
        self.category_ids = [c["id"] for c in self.categories]  # the dataset's id of each contiguous class
        self.thing_ids = list(range(len(self.categories)))
        self.images = data["images"]
        self.by_image: dict[int, list[dict]] = {im["id"]: [] for im in self.images}
        for a in data["annotations"]:
            if not a.get("iscrowd") and a["image_id"] in self.by_image:
                self.by_image[a["image_id"]].append(a)

    def __len__(self) -> int:
        return len(self.images)

    def verify(self) -> None:
        """Every referenced image exists and is readable, or a DatasetError naming the first."""
        _verify_files([self.image_dir / info["file_name"] for info in self.images], "COCO instances images")

    def __getitem__(self, index: int) -> Sample:
        from PIL import Image
        from pycocotools import mask as mask_utils

        info = self.images[index]
        image = np.asarray(Image.open(self.image_dir / info["file_name"]).convert("RGB"))
        h, w = image.shape[:2]
        masks, labels = [], []
        for a in self.by_image[info["id"]]:
            seg = a["segmentation"]
            if isinstance(seg, list):  # polygons
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            elif isinstance(seg.get("counts"), list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(seg, h, w)
            else:
                rle = seg
            masks.append(mask_utils.decode(rle).astype(bool))
            labels.append(self.contiguous[a["category_id"]])
        stacked = np.stack(masks) if masks else np.zeros((0, h, w), bool)
        return Sample(image, np.array(labels, np.int64), stacked, np.ones(len(labels), bool), info["file_name"],
                      info["id"])


def open_dataset(json_path: str | Path, image_dir=None, panoptic_dir=None):
    """A COCO panoptic file (annotations with ``segments_info``) -> CocoPanoptic; a COCO instances file
    (annotations with ``segmentation``) -> CocoInstances."""
    json_path = Path(json_path)
    if json_path.is_dir():
        json_path = json_path / "panoptic.json"
    if not json_path.exists():
        raise DatasetError(f"dataset annotations {json_path} do not exist (give a COCO panoptic or instances json)")
    data = _read_json(json_path)  # read once: COCO files can be hundreds of MB
    first = (data.get("annotations") or [{}])[0]
    if "segments_info" in first:
        return CocoPanoptic(json_path, image_dir, panoptic_dir, data=data)
    if "segmentation" in first:
        return CocoInstances(json_path, image_dir, data=data)
    raise DatasetError(f"{json_path} is neither COCO panoptic (segments_info) nor COCO instances (segmentation)")
