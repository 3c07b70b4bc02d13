"""Reading COCO panoptic datasets (json + PNGs) into images and per-segment targets; training and calibration share
this reader. Numpy + Pillow; targets are numpy so that non-torch users (calibration) can read them too."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2f.errors import M2FError


@dataclass
class Sample:
    image: np.ndarray  # uint8 RGB [H, W, 3]
    labels: np.ndarray  # int64 [G] contiguous class ids (things first, as the dataset's categories are ordered)
    masks: np.ndarray  # bool [G, H, W]
    isthing: np.ndarray  # bool [G]
    file_name: str


class CocoPanoptic:
    """``CocoPanoptic(json, image_dir, panoptic_dir)``: len() and [i] -> Sample. Crowd segments are skipped.

    Contiguous ids follow the order of ``categories`` in the json; ``class_names`` and ``thing_ids`` give the model's
    metadata for that order."""

    def __init__(self, json_path: str | Path, image_dir: str | Path | None = None,
                 panoptic_dir: str | Path | None = None):
        json_path = Path(json_path)
        if not json_path.exists():
            raise M2FError(f"panoptic annotations {json_path} do not exist")
        data = json.loads(json_path.read_text())
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise M2FError(f"{json_path} is not a COCO panoptic file (no '{key}')")
        self.image_dir = Path(image_dir) if image_dir else json_path.parent / "images"
        self.panoptic_dir = Path(panoptic_dir) if panoptic_dir else json_path.parent / "panoptic"
        self.categories = data["categories"]
        self.contiguous = {c["id"]: i for i, c in enumerate(self.categories)}
        self.class_names = [c["name"] for c in self.categories]
        self.thing_ids = [i for i, c in enumerate(self.categories) if c.get("isthing")]
        by_id = {im["id"]: im for im in data["images"]}
        self.items = [(by_id[a["image_id"]], a) for a in data["annotations"]]

    def __len__(self) -> int:
        return len(self.items)

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
        return Sample(image, labels, masks, isthing, image_info["file_name"])
