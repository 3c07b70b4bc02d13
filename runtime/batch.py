"""Batch runs over files, folders, videos and cameras (what ``m2f infer`` does), torch-free.

- ``expand_inputs``: command-line inputs -> ``InputItem`` s with unique output names and integer image ids; a
  folder's images in name order, skipping anything inside the output folder (so results are never read back).
- ``RunWriter``: writes each image's files as it is done, keeps the run's instances and index, records inputs that
  failed, and writes ``instances.json`` / ``results.json`` at the end (also after an interruption).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from m2f.errors import DatasetError
from m2f.fileio import write_json

from .formats import coco_instances, write_result
from .image_io import IMAGE_SUFFIXES
from .results import Result
from .stream import VIDEO_SUFFIXES


@dataclass
class InputItem:
    kind: str  # "image" | "video" | "camera"
    source: Path | int  # a file, or a camera index
    name: str = ""  # output file stem (or folder, for videos and cameras), unique within the run
    image_id: int = 0  # images: COCO image id (the file stem when every stem is a distinct number, else 1, 2, ...)


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path.resolve() == folder or folder in path.resolve().parents)


def _unique_names(paths: list[Path]) -> list[str]:
    """File stems, made unique where two inputs share one: then the file name with its suffix, then the parent
    folder too, then a counter (a.jpg, a.png -> a.jpg, a.png; x/a.jpg, y/a.jpg -> x_a.jpg, y_a.jpg)."""
    names = [p.stem for p in paths]
    for widen in (lambda p: p.name, lambda p: f"{p.parent.name}_{p.name}"):
        counts = Counter(names)
        names = [widen(p) if counts[n] > 1 else n for p, n in zip(paths, names)]
    seen: Counter = Counter()
    unique = []
    for n in names:
        seen[n] += 1
        unique.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return unique


def expand_inputs(inputs: list[str], exclude: Path | None = None) -> list[InputItem]:
    """Command-line inputs (image files, folders of images, video files, camera indices) -> items in the order
    given. ``exclude``: a folder whose files are never taken (the run's output folder). A missing file or an empty
    folder is a DatasetError: nothing has run yet, so the user fixes the command first."""
    exclude = exclude.resolve() if exclude is not None else None
    items: list[InputItem] = []
    for raw in inputs:
        if raw.isdigit():
            items.append(InputItem("camera", int(raw)))
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not _inside(p, exclude))
            if not found:
                raise DatasetError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            items += [InputItem("image", p) for p in found]
        elif not path.exists():
            raise DatasetError(f"input {path} does not exist")
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            items.append(InputItem("video", path))
        else:
            items.append(InputItem("image", path))
    files = [it for it in items if it.kind != "camera"]
    for item, name in zip(files, _unique_names([it.source for it in files])):
        item.name = name
    for item in items:
        if item.kind == "camera":
            item.name = f"camera{item.source}"
    images = [it for it in items if it.kind == "image"]
    stems = [it.source.stem for it in images]
    numeric = all(s.isdigit() for s in stems) and len(set(map(int, stems))) == len(stems)
    for k, item in enumerate(images):
        item.image_id = int(item.source.stem) if numeric else k + 1
    return items


@dataclass
class RunWriter:
    """Per-image files plus the run's summaries under ``out``.

    names: the model's class names; category_ids: the dataset id of each class (None: contiguous ids);
    score_threshold: overlays show instances scoring at least this (instances.json keeps the full top-k)."""

    out: Path
    names: list[str]
    category_ids: list[int] | None = None
    overlays: bool = True
    score_threshold: float = 0.5
    instances: list[dict] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    def add(self, image, result: Result, name: str, image_id: int, source: str) -> dict:
        """Write one image's files; returns its index entry (also kept for results.json)."""
        written = write_result(result, image, self.names, self.out, name, overlays=self.overlays,
                               category_ids=self.category_ids, score_threshold=self.score_threshold)
        records = coco_instances(result, image_id, self.category_ids)
        self.instances.extend(records)
        confident = sum(1 for i in result.instances if i.score >= self.score_threshold)
        entry = {"image_id": image_id, "file_name": source, "height": result.height, "width": result.width,
                 "instances": len(records), "confident_instances": confident, "segments": len(result.segments),
                 **({"fit_scale": round(result.fit_scale, 4)} if result.fit_scale < 1.0 else {}), **written}
        self.images.append(entry)
        return entry

    def fail(self, source: str, error: BaseException) -> None:
        self.failures.append({"input": source, "error": str(error) or type(error).__name__})

    def write_summaries(self, run: dict) -> bool:
        """instances.json and results.json (``run``: model, tasks, timing...). Returns False, writing nothing, when
        no image succeeded and summaries of an earlier run are there: they are kept rather than replaced by an
        empty run's."""
        earlier = (self.out / "results.json").exists()
        if not self.images and earlier:
            return False
        write_json(self.out / "instances.json", self.instances)
        write_json(self.out / "results.json", {**run, "class_names": self.names, "category_ids": self.category_ids,
                                               "score_threshold_for_overlays": self.score_threshold,
                                               "images": self.images, "failed": self.failures})
        return True
