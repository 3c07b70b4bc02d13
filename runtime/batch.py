"""Batch runs over files, folders, videos and cameras (what ``m2f infer`` does), torch-free.

- ``expand_inputs``: command-line inputs -> ``InputItem`` s with unique output names and integer image ids; a
  folder's images in name order, skipping anything inside the output folder (so results are never read back).
- ``RunWriter``: writes each image's files as it is done and streams its COCO instances and index entry to disk, so
  a run of any length (a camera for a day) holds only counters in memory; ``close`` writes ``instances.json`` /
  ``results.json`` on every exit path (an interruption, a full disk) and removes every partial file.
- ``RunLock``: one run at a time per output folder (a lock file naming the other run's process).
"""
from __future__ import annotations

import errno
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from m2f.errors import ArgumentError, DatasetError, M2FError
from m2f.fileio import atomic_path

from .formats import coco_instances, remove_result, write_result
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
            if exclude is not None and path.resolve() == exclude:
                raise DatasetError(f"the input folder {path} is also the output folder; give another -o (results "
                                   f"are never read back as inputs)")
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


# the write errors that end a run: nothing more can be written there, so reading more inputs only loses them
OUTPUT_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}
RESERVE_BYTES = 4 << 20  # held from the start, freed when the disk fills, so the summaries still fit


class OutputError(M2FError):
    """The output folder stopped accepting files (full disk, read-only, quota): the run stops and keeps its work."""


class _JsonArray:
    """A JSON array written to a hidden file beside ``path`` a group of elements at a time, unbuffered, so that a
    group that fails to be written (a full disk) is cut off again and the file always ends after a whole group;
    ``finish`` closes the array and renames it onto ``path``, ``discard`` removes it."""

    def __init__(self, path: Path):
        self.path, self.part = path, path.with_name(f".{path.name}.{os.getpid()}.part")
        self.count = 0
        self.fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.size = 0
        self._write(b"[")

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(data)

    def add(self, records: list[dict]) -> None:
        """Append ``records``, all or none (OSError after cutting the file back)."""
        text = "".join(("," if self.count + k else "") + "\n" + json.dumps(r) for k, r in enumerate(records))
        mark = self.mark()
        try:
            self._write(text.encode())
        except OSError:
            self.cut(mark)
            raise
        self.count += len(records)

    def mark(self) -> tuple[int, int]:
        """Where the array ends now: (bytes, elements), for ``cut``."""
        return self.size, self.count

    def cut(self, mark: tuple[int, int]) -> None:
        """Drop everything written after ``mark`` (a group that did not fit)."""
        os.ftruncate(self.fd, mark[0])
        os.lseek(self.fd, mark[0], os.SEEK_SET)
        self.size, self.count = mark

    def finish(self) -> None:
        self._write(b"\n]\n")
        self.close()
        os.replace(self.part, self.path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        self.close()
        self.part.unlink(missing_ok=True)


class RunLock:
    """``out/.m2f-run.lock`` holding this process's id while a run writes into ``out``. A second run into the same
    folder is refused with the other run's pid; a lock left by a process that no longer exists is taken over."""

    NAME = ".m2f-run.lock"

    def __init__(self, out: Path):
        self.path = out / self.NAME
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self._owner()
                if other is not None and _alive(other):
                    raise ArgumentError(f"another m2f run (pid {other}) is writing into {out}; wait for it to "
                                        f"finish or give another -o folder") from None
                self.path.unlink(missing_ok=True)  # left by a run that was killed
                continue
            except OSError as e:
                raise ArgumentError(f"cannot write into the output folder {out}: {e.strerror}") from None
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return
        raise ArgumentError(f"cannot lock the output folder {out}; remove {self.path} if no m2f run is using it")

    def _owner(self) -> int | None:
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def output_error(error: BaseException) -> bool:
    """Whether ``error`` means the output folder takes no more files (full, read-only, over quota)."""
    return isinstance(error, OSError) and error.errno in OUTPUT_ERRORS


class RunWriter:
    """Per-image files plus the run's summaries under ``out``, in memory bounded by the number of failed inputs.

    names: the model's class names; category_ids: the dataset id of each class (None: contiguous ids);
    score_threshold: overlays show instances scoring at least this (instances.json keeps the full top-k).
    Use as a context manager, or call ``close(run)`` on every path."""

    def __init__(self, out: Path, names: list[str], category_ids: list[int] | None = None, overlays: bool = True,
                 score_threshold: float = 0.5):
        self.out, self.names, self.category_ids = out, names, category_ids
        self.overlays, self.score_threshold = overlays, score_threshold
        self.done = 0  # images and frames written
        self.failures: list[dict] = []  # one per input that failed (bounded by the inputs given)
        self.stopped: str | None = None  # why the output folder took no more files
        self.reserve = out / f".m2f-reserve.{os.getpid()}"
        self._hold_reserve()
        self._instances = _JsonArray(out / "instances.json")
        self._index = _JsonArray(out / "results.json")

    def _hold_reserve(self) -> None:
        try:
            with open(self.reserve, "wb") as fh:
                os.posix_fallocate(fh.fileno(), 0, RESERVE_BYTES)
        except (OSError, AttributeError):  # no room even for that, or no fallocate on this filesystem: no reserve
            self.reserve.unlink(missing_ok=True)

    def add(self, image, result: Result, name: str, image_id: int, source: str) -> dict:
        """Write one image's files and stream its records; returns its index entry. OutputError when the folder
        takes no more files (that image's files are removed: it counts as not done)."""
        try:
            written = write_result(result, image, self.names, self.out, name, overlays=self.overlays,
                                   category_ids=self.category_ids, score_threshold=self.score_threshold)
            records = coco_instances(result, image_id, self.category_ids)
            confident = sum(1 for i in result.instances if i.score >= self.score_threshold)
            entry = {"image_id": image_id, "file_name": source, "height": result.height, "width": result.width,
                     "instances": len(records), "confident_instances": confident, "segments": len(result.segments),
                     **({"fit_scale": round(result.fit_scale, 4)} if result.fit_scale < 1.0 else {}), **written}
            before = self._instances.mark()
            self._instances.add(records)
            try:
                self._index.add([entry])
            except OSError:
                self._instances.cut(before)  # the image's records go with its entry, or neither
                raise
        except OSError as e:
            if not output_error(e):
                raise
            remove_result(self.out, name)
            self.stopped = os.strerror(e.errno)
            raise OutputError(f"the output folder {self.out} takes no more files ({self.stopped}); stopping with "
                              f"the {self.done} images/frames already written") from None
        self.done += 1
        return entry

    def fail(self, source: str, error: BaseException) -> None:
        self.failures.append({"input": source, "error": str(error) or type(error).__name__})

    def close(self, run: dict) -> bool:
        """Write instances.json and results.json (``run``: model, tasks, timing...) and remove every partial file.
        Returns False, writing nothing, when no image succeeded and summaries of an earlier run are there (they are
        kept rather than replaced by an empty run's); OutputError naming what was kept when the summaries cannot be
        written."""
        self.reserve.unlink(missing_ok=True)  # its room is for the summaries
        try:
            if not self.done and (self.out / "results.json").exists():
                return False
            self._instances.finish()
            self._write_results(run)
            return True
        except OSError as e:
            if not output_error(e):
                raise
            raise OutputError(f"could not write the summaries into {self.out} ({os.strerror(e.errno)}); the "
                              f"{self.done} finished images/frames keep their files there") from None
        finally:
            self._instances.discard()
            self._index.discard()

    def _write_results(self, run: dict) -> None:
        """results.json: ``run`` and the class list, then the streamed index copied a line at a time, then the
        failures."""
        self._index.close()
        header = {**run, "class_names": self.names, "category_ids": self.category_ids,
                  "score_threshold_for_overlays": self.score_threshold}
        with atomic_path(self._index.path) as tmp, open(tmp, "w") as fh, open(self._index.part) as index:
            fh.write(json.dumps(header)[:-1] + (", " if header else "") + '"images": [')
            for line in index:
                if line.strip() not in ("", "["):
                    fh.write(line)
            fh.write('\n], "failed": ' + json.dumps(self.failures) + "}\n")
