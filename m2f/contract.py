"""The m2f graph contract and the metadata schema (design.md §2.1), in one torch-free module that export, the
runtime, the engine builder, the plugins and serving all read. Stdlib only.

Inputs (``input_specs``):
    uint8 kind:  image uint8 [N, H, W, 3] RGB 0..255, zero-padded bottom/right; valid_size int32 [N, 2] = (h, w)
    float kind:  pixel_values float32 [N, 3, H, W], normalised and zero-padded (HF's name); with a head also
                 valid_size
Outputs (``output_specs``): pred_logits float32 [N, Q, K+1] (last = no object), pred_masks float32
[N, Q, H/4, W/4]; or one post-processing head's outputs (``m2f.export.heads`` documents their meaning).

Dims are symbols resolved by ``resolve_dims``: N, H, W, H/4, W/4, Q, K+1 and k (the instance head's top-k).

Metadata: a JSON document stored in an ONNX file's ``metadata_props`` under ``KEY`` and as the ``<engine>.json``
sidecar of every engine; ``parse`` validates it for readers, ``dumps`` for writers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import MetadataError

# ---------------------------------------------------------------------------------------------------------------
# Graph I/O

IMAGE, VALID_SIZE, PIXEL_VALUES = "image", "valid_size", "pixel_values"
PRED_LOGITS, PRED_MASKS = "pred_logits", "pred_masks"
INPUT_KINDS = ("uint8", "float")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "uint8", "int32", "float32", "bool"
    dims: tuple[str | int, ...]  # symbols (see module docstring) or fixed sizes


RAW_OUTPUTS = (TensorSpec(PRED_LOGITS, "float32", ("N", "Q", "K+1")),
               TensorSpec(PRED_MASKS, "float32", ("N", "Q", "H/4", "W/4")))
HEAD_OUTPUTS = {
    "semantic": (TensorSpec("sem_seg", "int32", ("N", "H", "W")),),
    "instance": (TensorSpec("inst_scores", "float32", ("N", "k")), TensorSpec("inst_labels", "int32", ("N", "k")),
                 TensorSpec("inst_query", "int32", ("N", "k")),
                 TensorSpec("inst_masks", "float32", ("N", "k", "H/4", "W/4"))),
    "panoptic": (TensorSpec("pan_ids", "int32", ("N", "H", "W")), TensorSpec("pan_conf", "bool", ("N", "H", "W")),
                 TensorSpec("pan_keep", "bool", ("N", "Q")), TensorSpec("pan_scores", "float32", ("N", "Q")),
                 *(TensorSpec(name, "int32", ("N", "Q")) for name in
                   ("pan_labels", "pan_area", "pan_orig_area", "pan_mask_area"))),
}
HEADS = tuple(HEAD_OUTPUTS)
# Symbolic names of the dynamic dims in exported graphs and metadata.
DYNAMIC_DIM_NAMES = {"N": "batch", "H": "height", "W": "width", "H/4": "height/4", "W/4": "width/4"}


def input_specs(kind: str, head: str | None = None) -> tuple[TensorSpec, ...]:
    valid = TensorSpec(VALID_SIZE, "int32", ("N", 2))
    if kind == "uint8":
        return TensorSpec(IMAGE, "uint8", ("N", "H", "W", 3)), valid
    image = TensorSpec(PIXEL_VALUES, "float32", ("N", 3, "H", "W"))
    return (image, valid) if head else (image,)


def output_specs(head: str | None = None) -> tuple[TensorSpec, ...]:
    return HEAD_OUTPUTS[head] if head else RAW_OUTPUTS


def input_names(kind: str, head: str | None = None) -> list[str]:
    return [s.name for s in input_specs(kind, head)]


def output_names(head: str | None = None) -> list[str]:
    return [s.name for s in output_specs(head)]


def resolve_dims(spec: TensorSpec, sizes: dict[str, int | str]) -> list[int | str]:
    """Concrete dims of ``spec``: each symbol looked up in ``sizes`` (ints for static dims, names for dynamic
    ones); fixed sizes kept."""
    return [sizes[d] if isinstance(d, str) else d for d in spec.dims]


def graph_sizes(batch: int | None, canvas: tuple[int, int] | None, num_queries: int, num_classes: int,
                topk: int) -> dict[str, int | str]:
    """The symbol table of one export: ``batch``/``canvas`` None for dynamic ones."""
    sizes: dict[str, int | str] = {"Q": num_queries, "K+1": num_classes + 1, "k": min(topk, num_queries * num_classes)}
    sizes["N"] = DYNAMIC_DIM_NAMES["N"] if batch is None else batch
    if canvas is None:
        sizes.update({d: DYNAMIC_DIM_NAMES[d] for d in ("H", "W", "H/4", "W/4")})
    else:
        sizes.update({"H": canvas[0], "W": canvas[1], "H/4": canvas[0] // 4, "W/4": canvas[1] // 4})
    return sizes


# ---------------------------------------------------------------------------------------------------------------
# Metadata

KEY = "m2f"
FORMAT_VERSION = 1
REQUIRED = ("format_version", "m2f_version", "tasks", "num_classes", "num_queries", "class_names", "thing_ids",
            "input", "outputs", "pixel_mean", "pixel_std", "resize", "size_divisibility", "thresholds",
            "op_flavor", "opset", "precision", "source")
# Optional keys, by the version that added them: category_ids (dataset ids per class, None when unknown), head,
# model_name, test_topk_per_image, sem_seg_postprocess_before_inference; for engines also tensorrt (version, gpu).


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


def sidecar_path(engine: str | Path) -> Path:
    """Where an engine's metadata lives: ``<engine>.json`` beside it."""
    return Path(str(engine) + ".json")
