"""The m2f graph contract and the metadata schema (docs/architecture.md), in one torch-free module that export, the
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
from dataclasses import MISSING, asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin, get_type_hints

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
# Metadata: what every artifact carries about itself (docs/metadata.md explains each key and its history)

KEY = "m2f"  # the ONNX metadata_props key; an engine's copy is the <engine>.json sidecar
FORMAT_VERSION = 2  # 1: m2f 0.1's document (read and migrated by ``migrate``)
PRECISIONS = ("fp32", "fp16", "int8", "best")
OP_FLAVORS = ("portable", "m2f", "trt-builtin")
TASKS = ("semantic", "instance", "panoptic")  # a raw-output graph serves all three; a head serves its own
THINGS_FROM_CONFIG = "config"
THINGS_DEFAULT = "every class (the dataset's thing/stuff split is not known)"


class _Record:
    """Base of the metadata records: frozen dataclasses whose list-valued fields are stored as tuples, so a
    record really cannot change after it is made (``dataclasses.replace`` makes a changed copy)."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class DynamicRange(_Record):
    multiple_of: int  # every canvas side of a dynamic graph is a multiple of this


@dataclass(frozen=True)
class InputInfo(_Record):
    """``input``: how the graph takes images."""

    names: tuple[str, ...]  # the graph's input names, in order (``input_specs``)
    kind: str  # "uint8": image [N, H, W, 3] + valid_size; "float": pixel_values [N, 3, H, W]
    layout: str  # the same in words
    shape: tuple[int | str, ...]  # the first input's dims: sizes, or symbol names where dynamic
    dynamic: bool  # N, H and W symbolic
    dynamic_range: DynamicRange | None = None  # dynamic graphs only

    @property
    def canvas(self) -> tuple[int, int] | None:
        """(H, W) of a static graph's canvas; None when dynamic."""
        if self.dynamic:
            return None
        return (self.shape[1], self.shape[2]) if self.kind == "uint8" else (self.shape[2], self.shape[3])

    @property
    def batch(self) -> int | None:
        """A static graph's batch size; None when dynamic."""
        return None if self.dynamic else self.shape[0]


@dataclass(frozen=True)
class Resize(_Record):
    short: int  # the short side's target (detectron2's MIN_SIZE_TEST)
    max: int  # the long side's limit (MAX_SIZE_TEST)
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class Thresholds(_Record):
    object_mask: float  # a query takes part in panoptic inference above this class score
    overlap: float  # a panoptic segment survives when this share of its mask is its own


@dataclass(frozen=True)
class Source(_Record):
    name: str  # the checkpoint's file or folder name
    format: str | None = None  # detectron2 | hf | mmdet | torch
    config: str | None = None  # where the architecture came from (a config file, a preset, the weights)
    sha256: str | None = None  # of the checkpoint file (its weight files, in order, for a folder)


@dataclass(frozen=True)
class PluginInfo(_Record):
    """A plugin a TensorRT build of the graph needs (``plugins``)."""

    name: str
    namespace: str
    version: str
    library: str  # where it comes from, in words


@dataclass(frozen=True)
class GraphChange(_Record):
    """How a converted graph's outputs moved against fp32 on the measurement images."""

    flips: float  # share of mask-logit signs flipped
    decisions: float  # share of query decisions (class, confident) changed


@dataclass(frozen=True)
class Calibration(_Record):
    """``calibration``: how the int8 Q/DQ scales were found (int8 and best graphs)."""

    method: str  # minmax | percentile | entropy
    images: int
    data: str  # the --data spec
    seed: int
    quantized_nodes: int
    excluded: dict[str, str]  # node name -> why it stayed float
    percentile: float | None = None  # method percentile only
    int8_sensitive_blocks: tuple[str, ...] = ()  # best: blocks kept out of int8 by measurement


@dataclass(frozen=True)
class Fp16Info(_Record):
    """``fp16``: the fp32 islands of an fp16 or best graph."""

    islands: tuple[str, ...]  # blocks kept fp32 (required ones and measured ones)
    images: int  # measurement images
    data: str | None = None
    whole_graph: GraphChange | None = None


@dataclass(frozen=True)
class ProfileShapes(_Record):
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class FileRecord(_Record):
    path: str
    sha256: str


@dataclass(frozen=True)
class EngineInfo(_Record):
    """``tensorrt``: an engine's build (sidecars only)."""

    version: str  # TensorRT that built it: the only one that can run it
    gpu: str
    compute_capability: str  # "major.minor": the only GPU kind that can run it
    strongly_typed: bool
    builder_flags: tuple[str, ...]
    profiles: dict[str, ProfileShapes]  # per input; empty for static graphs
    flavor: str
    plugins: tuple[FileRecord, ...]
    onnx: FileRecord


@dataclass(frozen=True)
class Metadata(_Record):
    """The m2f metadata of an artifact (ONNX graph or engine), format ``FORMAT_VERSION``; read with ``parse`` /
    ``read_onnx``, written with ``to_json`` / ``write_onnx``; changed copies with ``dataclasses.replace``."""

    format_version: int
    m2f_version: str  # the m2f that wrote it
    tasks: tuple[str, ...]  # what the config turned on (any of TASKS); raw outputs serve all three
    num_classes: int  # K, without the no-object class
    num_queries: int  # Q
    class_names: tuple[str, ...]  # K names, contiguous ids 0..K-1
    thing_ids: tuple[int, ...]  # contiguous ids of the countable classes
    input: InputInfo
    outputs: tuple[str, ...]  # the graph's output names (raw, or a head's), then its taps
    pixel_mean: tuple[float, ...]  # RGB, 0..255 scale
    pixel_std: tuple[float, ...]
    resize: Resize
    size_divisibility: int  # canvases are padded to a multiple of this
    thresholds: Thresholds
    op_flavor: str  # OP_FLAVORS
    opset: int
    precision: str  # PRECISIONS: what the graph (or engine) computes in
    source: Source
    thing_source: str = THINGS_FROM_CONFIG  # where thing_ids came from (config, default, --thing-classes ...)
    category_ids: tuple[int, ...] | None = None  # the dataset's id of each class (COCO: 1..200); None: unknown
    model_name: str | None = None  # the preset or config name
    head: str | None = None  # the in-graph post-processing head (HEADS), None for raw outputs
    taps: tuple[str, ...] = ()  # stage-tap outputs (``tap_specs``), exported with --taps
    test_topk_per_image: int = 100  # instances kept per image
    sem_seg_postprocess_before_inference: bool = True  # False: semantic scores at the canvas, then resized
    plugins: tuple[PluginInfo, ...] = ()
    min_tensorrt: str = "10.0"  # the oldest TensorRT that can build the graph
    calibration: Calibration | None = None
    fp16: Fp16Info | None = None
    tensorrt: EngineInfo | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        problem = self._problem()
        if problem:
            raise MetadataError(problem)

    def _problem(self) -> str | None:
        """What makes this document inconsistent, in words; None when it is sound."""
        if self.format_version != FORMAT_VERSION:
            return f"has format {self.format_version}, not {FORMAT_VERSION}"
        for name, value, allowed in (("tasks", self.tasks, TASKS), ("precision", (self.precision,), PRECISIONS),
                                     ("op_flavor", (self.op_flavor,), OP_FLAVORS),
                                     ("input.kind", (self.input.kind,), INPUT_KINDS),
                                     ("head", (self.head,) if self.head else (), HEADS)):
            unknown = [v for v in value if v not in allowed]
            if unknown:
                return f"has {name} {unknown[0]!r}, which is not one of {', '.join(allowed)}"
        if len(self.class_names) != self.num_classes:
            return f"names {len(self.class_names)} classes for num_classes {self.num_classes}"
        if any(not 0 <= t < self.num_classes for t in self.thing_ids):
            return f"has thing_ids outside 0..{self.num_classes - 1}"
        if self.category_ids is not None and len(self.category_ids) != self.num_classes:
            return f"has {len(self.category_ids)} category_ids for {self.num_classes} classes"
        return None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe_plugins(self) -> str:
        """The plugins a TensorRT build needs, in one line (name, version, library; the oldest TensorRT)."""
        names = ", ".join(f"{p.name} v{p.version} ({p.library})" for p in self.plugins)
        return f"{names or 'none'}; TensorRT >= {self.min_tensorrt}"


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return get_type_hints(cls)


def _value(hint, value, where: str):
    """``value`` (parsed JSON) as the type ``hint`` says, or MetadataError naming ``where``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _value(option, value, where)
            except MetadataError:
                continue
        raise MetadataError(f"has {where} = {value!r}, which is not {_describe(hint)}")
    if isinstance(hint, type) and issubclass(hint, _Record):
        return _record(hint, value, where)
    if origin is tuple and isinstance(value, list):
        return tuple(_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict and isinstance(value, dict):
        return {k: _value(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise MetadataError(f"has {where} = {value!r}, which is not {_describe(hint)}")


def _describe(hint) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (tuple, dict):
        return "a list" if origin is tuple else "an object"
    return {type(None): "null", int: "a whole number", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, "an object")


def _record(cls, value, where: str):
    if not isinstance(value, dict):
        raise MetadataError(f"has {where or 'a document'} that is not a JSON object")
    hints = _hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise MetadataError(f"has the unknown key {_join(where, unknown[0])!r}")
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [n for n in required if n not in value]
    if missing:
        raise MetadataError(f"lacks the key {_join(where, missing[0])!r}")
    return cls(**{k: _value(hints[k], v, _join(where, k)) for k, v in value.items()})


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def migrate(document: dict) -> dict:
    """A format-1 document (m2f 0.1) as format 2: thing_source made explicit (an empty thing_ids then meant every
    class is a thing), and the engine record's onnx entry names its file under ``path``."""
    document = dict(document)
    if "thing_source" not in document:
        if document.get("thing_ids"):
            document["thing_source"] = THINGS_FROM_CONFIG
        else:
            document["thing_ids"] = list(range(document.get("num_classes", 0)))
            document["thing_source"] = THINGS_DEFAULT
    engine = document.get("tensorrt")
    if isinstance(engine, dict) and isinstance(engine.get("onnx"), dict) and "name" in engine["onnx"]:
        onnx_record = dict(engine["onnx"])
        onnx_record["path"] = onnx_record.pop("name")
        document["tensorrt"] = {**engine, "onnx": onnx_record}
    document["format_version"] = FORMAT_VERSION
    return document


def parse(text: str | None, artifact: str) -> Metadata:
    """The metadata of ``artifact`` (a name for messages): parsed, migrated from older formats, checked; one
    sentence (MetadataError) naming what is wrong otherwise."""
    if not text:
        raise MetadataError(f"{artifact} carries no m2f metadata; it was not written by 'm2f export' "
                            f"(re-export it with m2f, or use an ONNX file that m2f produced)")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise MetadataError(f"{artifact} has unreadable m2f metadata ({e.msg}); re-export it with m2f") from None
    if not isinstance(document, dict):
        raise MetadataError(f"{artifact} has m2f metadata that is not a JSON object; re-export it with m2f")
    version = document.get("format_version")
    if version == 1:
        document = migrate(document)
    elif version != FORMAT_VERSION:
        raise MetadataError(f"{artifact} has m2f metadata format {version!r}; this m2f reads formats 1 to "
                            f"{FORMAT_VERSION}; re-export it with this version of m2f")
    try:
        return _record(Metadata, document, "")
    except MetadataError as e:
        raise MetadataError(f"{artifact}'s m2f metadata {e}; re-export it with m2f") from None


def read_onnx(model, artifact: str) -> Metadata:
    """The metadata of a loaded ONNX ``model`` (onnx.ModelProto); ``artifact`` names it in messages."""
    return parse(next((p.value for p in model.metadata_props if p.key == KEY), None), artifact)


def write_onnx(model, meta: Metadata) -> None:
    """Make ``meta`` the only m2f metadata entry of ``model`` (onnx.ModelProto, changed in place)."""
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = KEY, meta.to_json()


def sidecar_path(engine: str | Path) -> Path:
    """Where an engine's metadata lives: ``<engine>.json`` beside it."""
    return Path(str(engine) + ".json")


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
