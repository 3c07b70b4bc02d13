"""The images validation and calibration run on: ``open_images(spec)``.

spec is one of
    synthetic[:N[:SEED]]     the synthetic panoptic set, generated into a cache folder (default N 100, seed 1000,
                             the demo's held-out set)
    a COCO panoptic json     (images/ and panoptic/ beside it), or a folder holding panoptic.json
    a COCO instances json    (images/ beside it)
    a folder of images       (no ground truth: parity only)
Each item is (uint8 RGB image, Sample with ground truth or None, name).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from m2f.assets import HELD_OUT_SEED
from m2f.errors import DatasetError

SYNTHETIC_DEFAULT = (100, HELD_OUT_SEED)


class ImageFolder:
    """The images of a folder, sorted by name; no ground truth."""

    has_ground_truth = False
    category_ids: list[int] = []
    class_names: list[str] = []

    def __init__(self, folder: Path):
        from m2f.runtime.image_io import IMAGE_SUFFIXES

        if not folder.is_dir():
            raise DatasetError(f"{folder} {'is not a folder' if folder.exists() else 'does not exist'}; give a folder "
                               f"of images")
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise DatasetError(f"folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")

    def __len__(self) -> int:
        return len(self.files)

    def item(self, index: int):
        from m2f.runtime.image_io import read_image

        return read_image(self.files[index]), None, self.files[index].name


class Annotated:
    """A COCO panoptic or instances dataset (``m2f.datasets.coco``) as validation items."""

    has_ground_truth = True

    def __init__(self, dataset):
        self.dataset = dataset
        self.category_ids, self.class_names = dataset.category_ids, dataset.class_names

    def __len__(self) -> int:
        return len(self.dataset)

    def item(self, index: int):
        sample = self.dataset[index]
        return sample.image, sample, sample.file_name


def _synthetic(spec: str) -> Path:
    from m2f.datasets.synthetic import generate

    parts = spec.split(":")[1:]
    try:
        count, seed = (int(parts[0]) if parts else SYNTHETIC_DEFAULT[0]), \
            (int(parts[1]) if len(parts) > 1 else SYNTHETIC_DEFAULT[1])
    except ValueError:
        raise DatasetError(f"--data {spec!r}: write synthetic, synthetic:N or synthetic:N:SEED") from None
    if count < 1:
        raise DatasetError(f"--data {spec!r}: the synthetic set needs at least one image")
    if seed < 0:
        raise DatasetError(f"--data {spec!r}: the seed must be 0 or more")
    folder = Path(tempfile.gettempdir()) / f"m2f-synthetic-{count}-{seed}-{os.getuid() if hasattr(os, 'getuid') else 0}"
    if not (folder / "panoptic.json").exists():
        # generated privately, then renamed into place: two processes asking at once never read a half-written set
        private = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            generate(private, count, seed=seed)
            try:
                os.rename(private, folder)
            except OSError:  # another process got there first (or a stale partial folder): use or replace it
                if not (folder / "panoptic.json").exists():
                    shutil.rmtree(folder, ignore_errors=True)
                    os.rename(private, folder)
        finally:
            shutil.rmtree(private, ignore_errors=True)
    return folder / "panoptic.json"


def open_images(spec: str):
    """ImageFolder or Annotated for ``spec`` (module docstring); DatasetError with one sentence otherwise."""
    from m2f.datasets.coco import open_dataset

    if spec.startswith("synthetic"):
        return Annotated(open_dataset(_synthetic(spec)))
    path = Path(spec)
    if not path.exists():
        raise DatasetError(f"--data {spec} does not exist (give a COCO json, a folder of images, or synthetic:N)")
    if path.is_dir() and not (path / "panoptic.json").exists():
        return ImageFolder(path)
    return Annotated(open_dataset(path))
