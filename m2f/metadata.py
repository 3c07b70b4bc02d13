"""The metadata document that travels with every artifact (design.md §2.1): in an ONNX file's ``metadata_props``
under key ``m2f``, and as a ``<artifact>.json`` sidecar next to every engine. Plain JSON, no torch.

Readers call ``parse`` and get either a dict they can rely on or a MetadataError saying why not.
"""
from __future__ import annotations

import json

from .errors import MetadataError

KEY = "m2f"
FORMAT_VERSION = 1
REQUIRED = ("format_version", "m2f_version", "tasks", "num_classes", "num_queries", "class_names", "thing_ids",
            "input", "outputs", "pixel_mean", "pixel_std", "resize", "size_divisibility", "thresholds",
            "op_flavor", "opset", "precision", "source")


def dumps(meta: dict) -> str:
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise MetadataError(f"metadata lacks {missing}")
    return json.dumps(meta, sort_keys=True)


def parse(text: str | None, artifact: str) -> dict:
    """The metadata of ``artifact`` (a name for messages), validated."""
    if not text:
        raise MetadataError(f"{artifact} carries no m2f metadata; it was not written by 'm2f export' "
                            f"(re-export it with m2f, or use an ONNX file that m2f produced)")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise MetadataError(f"{artifact} has unreadable m2f metadata ({e.msg}); re-export it with m2f") from None
    if not isinstance(meta, dict):
        raise MetadataError(f"{artifact} has m2f metadata that is not a JSON object; re-export it with m2f")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise MetadataError(f"{artifact} has m2f metadata format {version!r}; this m2f reads format "
                            f"{FORMAT_VERSION}; re-export it with this version of m2f")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise MetadataError(f"{artifact}'s m2f metadata lacks {', '.join(missing)}; re-export it with m2f")
    return meta
