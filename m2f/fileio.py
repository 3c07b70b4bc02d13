"""Writing files so that a reader never sees half of one, and fingerprinting them (stdlib only; the runtime uses it
too).

Every file m2f writes (ONNX graphs, engines, checkpoints, datasets, results) goes to a temporary name in the same
folder and is renamed onto its final name only once it is complete; on any failure, Ctrl-C included, the temporary
file is removed and whatever was at the final name before is left untouched.
"""
from __future__ import annotations

import contextlib
import hashlib
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


def check_output_file(path: str | Path, suffixes: tuple[str, ...]) -> Path:
    """Check where a file is about to be written, before any slow work: not an existing folder, one of the
    ``suffixes``, in a folder that exists and is writable. ArgumentError (one sentence) otherwise."""
    from .errors import ArgumentError

    out = Path(path)
    if out.is_dir():
        raise ArgumentError(f"the output {out} is an existing folder; give a file name such as "
                            f"{out / ('model' + suffixes[0])}")
    if out.suffix.lower() not in suffixes:
        raise ArgumentError(f"the output should end in {' or '.join(suffixes)}, not {out.name!r}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ArgumentError(f"cannot write {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ArgumentError(f"cannot write {out}: the folder {parent} is not writable")
    return out


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj, indent: int | None = 1) -> None:
    write_text(path, json.dumps(obj, indent=indent))


HASH_BLOCK = 1 << 20  # bytes read at a time while hashing


def hash_file(digest, path: str | Path) -> None:
    """Feed the bytes of ``path`` into ``digest`` (a hashlib object), a block at a time."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK), b""):
            digest.update(block)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    hash_file(digest, path)
    return digest.hexdigest()


def checkpoint_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint: the file, or for a folder (HuggingFace) its weight files in name order."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    digest = hashlib.sha256()
    for f in files:
        hash_file(digest, f)
    return digest.hexdigest()
