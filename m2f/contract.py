"""The m2f graph contract and the metadata schema (design.md §2.1), in one torch-free module that export, the
runtime, the engine builder, the plugins and serving all read. Stdlib only.

Inputs (``input_specs``):
    uint8 kind:  image uint8 [N, H, W, 3] RGB 0..255, zero-padded bottom/right; valid_size int32 [N, 2] = (h, w)
    float kind:  pixel_values float32 [N, 3, H, W], normalised and zero-padded (HF's name); with a head also
                 valid_size
Outputs (``output_specs``): pred_logits float32 [N, Q, K+1] (last = no object), pred_masks float32
[N, Q, H/4, W/4]; or one post-processing head's outputs (``m2f.export.heads`` documents their meaning).

Stage taps (``tap_specs``, exported with ``--taps``): intermediate outputs named ``tap.<stage>`` after the raw or
head outputs, in pipeline order (the order validation searches for the first stage that drifts): backbone.res2..res5,
pixel_decoder.level0..2 (the encoder maps at 1/32, 1/16, 1/8), pixel_decoder.mask_features, then the class and mask
predictions of the decoder, decoder.initial (from the raw query features) and decoder.layer0 .. layer{L-1}.

Dims are symbols resolved by ``resolve_dims``: N, H, W, H/s and W/s for the strides s, Q, K+1, k (the instance
head's top-k), and for taps C2..C5 (backbone channels), D (pixel-decoder channels) and E (mask channels).

Metadata: a JSON document stored in an ONNX file's ``metadata_props`` under ``KEY`` and as the ``<engine>.json``
sidecar of every engine; ``parse`` validates it for readers, ``dumps`` for writers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import MetadataError

# ---------------------------------------------------------------------------------------------------------------
# Op numerics every implementation shares (PyTorch, Triton kernels, C launchers, ONNX Runtime custom ops)

# Masked attention blocks a key where sigmoid(logit) < 0.5 in float32, which holds exactly for logit < this
# constant (torch's float32 sigmoid on CPU as the reference): tiny negative logits round to 0.5 and stay open.
MASK_BLOCKED_BELOW = -1.7881390590446244e-07  # float32 -0x1.7ffffcp-23

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


TAP_PREFIX = "tap."
_STRIDE_DIMS = {s: (f"H/{s}", f"W/{s}") for s in (4, 8, 16, 32)}


def tap_specs(decoder_layers: int) -> tuple[TensorSpec, ...]:
    """The stage taps of a model with ``decoder_layers`` decoder layers, in pipeline order."""
    specs = [TensorSpec(f"{TAP_PREFIX}backbone.res{k}", "float32", ("N", f"C{k}", *_STRIDE_DIMS[2 ** k]))
             for k in (2, 3, 4, 5)]
    specs += [TensorSpec(f"{TAP_PREFIX}pixel_decoder.level{i}", "float32", ("N", "D", *_STRIDE_DIMS[s]))
              for i, s in enumerate((32, 16, 8))]
    specs.append(TensorSpec(f"{TAP_PREFIX}pixel_decoder.mask_features", "float32", ("N", "E", *_STRIDE_DIMS[4])))
    for layer in ["initial"] + [f"layer{i}" for i in range(decoder_layers)]:
        specs.append(TensorSpec(f"{TAP_PREFIX}decoder.{layer}.logits", "float32", ("N", "Q", "K+1")))
        specs.append(TensorSpec(f"{TAP_PREFIX}decoder.{layer}.masks", "float32", ("N", "Q", *_STRIDE_DIMS[4])))
    return tuple(specs)


def tap_stage(name: str) -> str:
    """The stage a tap output belongs to: 'tap.decoder.layer3.masks' -> 'decoder.layer3'."""
    parts = name[len(TAP_PREFIX):].split(".")
    return ".".join(parts[:2])


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
                topk: int, channels: dict[str, int] | None = None) -> dict[str, int | str]:
    """The symbol table of one export: ``batch``/``canvas`` None for dynamic ones; ``channels`` gives the taps'
    C2..C5, D and E."""
    sizes: dict[str, int | str] = {"Q": num_queries, "K+1": num_classes + 1, "k": min(topk, num_queries * num_classes)}
    sizes["N"] = "batch" if batch is None else batch
    for s, (h, w) in _STRIDE_DIMS.items():
        if canvas is None:
            sizes[h], sizes[w] = f"height/{s}", f"width/{s}"
        else:
            sizes[h], sizes[w] = canvas[0] // s, canvas[1] // s
    sizes["H"], sizes["W"] = ("height", "width") if canvas is None else canvas
    sizes.update(channels or {})
    return sizes


# ---------------------------------------------------------------------------------------------------------------
# Metadata

KEY = "m2f"
FORMAT_VERSION = 1
REQUIRED = ("format_version", "m2f_version", "tasks", "num_classes", "num_queries", "class_names", "thing_ids",
            "input", "outputs", "pixel_mean", "pixel_std", "resize", "size_divisibility", "thresholds",
            "op_flavor", "opset", "precision", "source")
# Optional keys, by the version that added them: category_ids (dataset ids per class, None when unknown), head,
# model_name, test_topk_per_image, sem_seg_postprocess_before_inference, plugins (the plugin nodes' name, namespace,
# version and library) and min_tensorrt (the oldest TensorRT that has them); for engines also tensorrt (version, gpu).


TASKS = ("semantic", "instance", "panoptic")  # a raw-output graph serves all three; a head serves its own
THINGS_FROM_CONFIG = "config"
THINGS_DEFAULT = "every class (the dataset's thing/stuff split is not known)"


def resolve_thing_ids(class_names: list[str], num_classes: int, known: list[int], thing_classes=(),
                      stuff_classes=()) -> tuple[list[int], str]:
    """(thing class ids, where they come from). ``known``: the config's thing ids ([] when the dataset is not one m2f
    knows: then every class is a thing); ``thing_classes`` makes exactly those classes things, ``stuff_classes``
    makes those stuff (names or ids; ArgumentError naming an unknown one)."""
    from .errors import ArgumentError

    def ids(specs, flag: str) -> set[int]:
        out = set()
        for spec in specs:
            if str(spec).isdigit() and int(spec) < num_classes:
                out.add(int(spec))
            elif spec in class_names:
                out.add(class_names.index(spec))
            else:
                raise ArgumentError(f"{flag} {spec!r} is neither a class name of this model nor an id below "
                                    f"{num_classes}")
        return out

    things = set(known) if known else set(range(num_classes))
    source = THINGS_FROM_CONFIG if known else THINGS_DEFAULT
    if thing_classes:
        things, source = ids(thing_classes, "--thing-classes"), "--thing-classes"
    if stuff_classes:
        stuff = ids(stuff_classes, "--stuff-classes")
        if thing_classes and stuff & things:
            raise ArgumentError("--thing-classes and --stuff-classes name the same class "
                                f"{class_names[min(stuff & things)] if class_names else min(stuff & things)}")
        things -= stuff
        source = f"{source if thing_classes else ''}{' and ' if thing_classes else ''}--stuff-classes"
    return sorted(things), source


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


def read_onnx(model, artifact: str) -> dict:
    """The validated metadata of a loaded ONNX ``model`` (onnx.ModelProto); ``artifact`` names it in messages."""
    return parse(next((p.value for p in model.metadata_props if p.key == KEY), None), artifact)


def write_onnx(model, meta: dict) -> None:
    """Make ``meta`` the only m2f metadata entry of ``model`` (onnx.ModelProto, changed in place)."""
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = KEY, dumps(meta)


def sidecar_path(engine: str | Path) -> Path:
    """Where an engine's metadata lives: ``<engine>.json`` beside it."""
    return Path(str(engine) + ".json")


# ---------------------------------------------------------------------------------------------------------------
# The served model (Triton Inference Server): what ``m2f serve`` and ``m2f triton-repo``'s ensemble take and give.
# Every tensor is BYTES with one element per request (Triton's batch dimension in front when batching).

SERVED_IMAGE = "encoded_image"  # the bytes of one image file (PNG, JPEG, …), decoded by the server
SERVED_RESULT = "result_json"  # UTF-8 JSON: sizes, segments, instances (masks as COCO RLE), timings
SERVED_PANOPTIC = "panoptic_png"  # COCO panoptic PNG (id = R + 256 G + 256^2 B); empty when not computed
SERVED_SEMANTIC = "semantic_png"  # class ids as an 8- or 16-bit grey PNG; empty when not computed
SERVED_ERROR = "error"  # m2f serve only: empty, or one sentence saying why this request was refused
SERVED_OUTPUTS = (SERVED_RESULT, SERVED_PANOPTIC, SERVED_SEMANTIC)
# the model config parameter (config.pbtxt ``parameters``) that carries the metadata JSON to clients
METADATA_PARAMETER = "m2f_metadata"
# between the repository's pre-processing, network and post-processing models: the graph inputs above, plus
ORIGINAL_SIZE = "original_size"  # int32 [2]: (h, w) of the decoded image
FIT_SCALE = "fit_scale"  # float32 [1]: Result.fit_scale
