"""Writing files so that a reader never sees half of one (stdlib only; the runtime uses it too).

Every file m2f writes (ONNX graphs, engines, checkpoints, datasets, results) goes to a temporary name in the same
folder and is renamed onto its final name only once it is complete; on any failure, Ctrl-C included, the temporary
file is removed and whatever was at the final name before is left untouched.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` to write to; renames it onto ``path`` when the block succeeds.

    The temporary name is hidden (leading dot) and carries the process id, so two processes writing the same file
    never share a temporary file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj, indent: int | None = 1) -> None:
    write_text(path, json.dumps(obj, indent=indent))
