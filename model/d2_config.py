"""The official detectron2 YAML configs of the Mask2Former repo, read without detectron2.

``load_d2_config(path)`` follows ``_BASE_`` chains (relative to each file), merges them as yacs does (child keys
override), honours every value that shapes the model or its inference, ignores training-only sections, and stops
with one sentence on a MODEL key outside detectron2's schema (it might change the architecture) or on a value it
cannot build (another meta-architecture, a deformable ResNet, …). The full config a training run dumps
(``output/config.yaml``: every default key of detectron2, DeepLab and Mask2Former, no ``_BASE_``) loads as it is.
Python tags such as ``!!python/object/apply:eval`` (used for training sizes) are read as inert text, never
evaluated; ``!!python/tuple`` (older yacs dumps) is read as a list.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from m2f.errors import ConfigError, first_line

from .config import Mask2FormerConfig, ResNetConfig, SwinConfig
from .presets import dataset_metadata

# Defaults of detectron2 + add_maskformer2_config for every key read below.
_DEFAULTS = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN", "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone",
    "MODEL.PIXEL_MEAN": [103.53, 116.28, 123.675], "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    "MODEL.RESNETS.DEPTH": 50, "MODEL.RESNETS.NORM": "FrozenBN", "MODEL.RESNETS.STEM_OUT_CHANNELS": 64,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 256, "MODEL.RESNETS.NUM_GROUPS": 1, "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
    "MODEL.RESNETS.RES5_DILATION": 1, "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.OUT_FEATURES": ["res4"], "MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False] * 4,
    "MODEL.SWIN.EMBED_DIM": 96, "MODEL.SWIN.DEPTHS": [2, 2, 6, 2], "MODEL.SWIN.NUM_HEADS": [3, 6, 12, 24],
    "MODEL.SWIN.WINDOW_SIZE": 7, "MODEL.SWIN.MLP_RATIO": 4.0, "MODEL.SWIN.PATCH_SIZE": 4, "MODEL.SWIN.QKV_BIAS": True,
    "MODEL.SWIN.QK_SCALE": None, "MODEL.SWIN.APE": False, "MODEL.SWIN.PATCH_NORM": True,
    "MODEL.SWIN.PRETRAIN_IMG_SIZE": 224, "MODEL.SWIN.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
    "MODEL.SEM_SEG_HEAD.NAME": "SemSegFPNHead", "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 54,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": 128, "MODEL.SEM_SEG_HEAD.MASK_DIM": 256, "MODEL.SEM_SEG_HEAD.NORM": "GN",
    "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME": "BasePixelDecoder",
    "MODEL.SEM_SEG_HEAD.IN_FEATURES": ["p2", "p3", "p4", "p5"],
    "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES": ["res3", "res4", "res5"],
    "MODEL.SEM_SEG_HEAD.COMMON_STRIDE": 4, "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS": 0,
    "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME": "MultiScaleMaskedTransformerDecoder",
    "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE": "res5", "MODEL.MASK_FORMER.HIDDEN_DIM": 256,
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": 100, "MODEL.MASK_FORMER.NHEADS": 8,
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD": 2048, "MODEL.MASK_FORMER.DEC_LAYERS": 6, "MODEL.MASK_FORMER.PRE_NORM": False,
    "MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ": False, "MODEL.MASK_FORMER.SIZE_DIVISIBILITY": 32,
    "MODEL.MASK_FORMER.TEST.SEMANTIC_ON": True, "MODEL.MASK_FORMER.TEST.INSTANCE_ON": False,
    "MODEL.MASK_FORMER.TEST.PANOPTIC_ON": False, "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD": 0.0,
    "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD": 0.0,
    "MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE": False,
    "INPUT.MIN_SIZE_TEST": 800, "INPUT.MAX_SIZE_TEST": 1333, "INPUT.FORMAT": "BGR",
    "TEST.DETECTIONS_PER_IMAGE": 100, "DATASETS.TEST": [],
}
# MODEL keys that only matter for training or loading, or that the original code ignores (docs/model.md §4.1).
_IGNORED_MODEL_KEYS = {
    "MODEL.WEIGHTS", "MODEL.DEVICE", "MODEL.MASK_ON", "MODEL.KEYPOINT_ON", "MODEL.LOAD_PROPOSALS",
    "MODEL.BACKBONE.FREEZE_AT", "MODEL.RESNETS.STEM_TYPE", "MODEL.RESNETS.RES5_MULTI_GRID",
    "MODEL.RESNETS.DEFORM_MODULATED", "MODEL.RESNETS.DEFORM_NUM_GROUPS",
    "MODEL.SWIN.DROP_RATE", "MODEL.SWIN.ATTN_DROP_RATE", "MODEL.SWIN.DROP_PATH_RATE", "MODEL.SWIN.USE_CHECKPOINT",
    "MODEL.SEM_SEG_HEAD.IGNORE_VALUE", "MODEL.SEM_SEG_HEAD.LOSS_WEIGHT", "MODEL.SEM_SEG_HEAD.LOSS_TYPE",
    "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS",
    "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS",
    "MODEL.MASK_FORMER.DEEP_SUPERVISION", "MODEL.MASK_FORMER.NO_OBJECT_WEIGHT", "MODEL.MASK_FORMER.CLASS_WEIGHT",
    "MODEL.MASK_FORMER.MASK_WEIGHT", "MODEL.MASK_FORMER.DICE_WEIGHT", "MODEL.MASK_FORMER.DROPOUT",
    "MODEL.MASK_FORMER.ENC_LAYERS", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "MODEL.MASK_FORMER.OVERSAMPLE_RATIO",
    "MODEL.MASK_FORMER.IMPORTANCE_SAMPLE_RATIO",
}
# Values the model here is built for; anything else is refused with the key's name.
_REQUIRED = {
    "MODEL.META_ARCHITECTURE": ("MaskFormer",),
    "MODEL.BACKBONE.NAME": ("build_resnet_backbone", "D2SwinTransformer"),
    "MODEL.SEM_SEG_HEAD.NAME": ("MaskFormerHead",),
    "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME": ("MSDeformAttnPixelDecoder",),
    "MODEL.SEM_SEG_HEAD.NORM": ("GN",),
    "MODEL.SEM_SEG_HEAD.COMMON_STRIDE": (4,),
    "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME": ("MultiScaleMaskedTransformerDecoder",),
    "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE": ("multi_scale_pixel_decoder",),
    "MODEL.SWIN.APE": (False,),
    "MODEL.SWIN.QK_SCALE": (None,),
    "INPUT.FORMAT": ("RGB",),
}
_RES = ["res2", "res3", "res4", "res5"]


class _Inert(str):
    """The text of a Python-tagged YAML node, kept but never evaluated."""


class _Loader(yaml.SafeLoader):
    pass


def _inert(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Inert:
    value = loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else node.value
    return _Inert(f"!!python/{suffix} {value}")


def _tuple(loader: yaml.SafeLoader, node: yaml.Node) -> list:
    """``!!python/tuple`` (older yacs dumps write tuples so): a plain sequence, nothing to evaluate."""
    return loader.construct_sequence(node)


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", _inert)
_Loader.add_constructor("tag:yaml.org,2002:python/tuple", _tuple)


def detectron2_keys() -> frozenset[str]:
    """Every key of the config a detectron2 training run dumps (get_cfg() + add_deeplab_config +
    add_maskformer2_config; m2f/assets/detectron2_config_keys.json, made by tools/detectron2_config_keys.py)."""
    import json

    from m2f.assets import DETECTRON2_CONFIG_KEYS

    return frozenset(json.loads(DETECTRON2_CONFIG_KEYS.read_text()))


def _read_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=_Loader) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a detectron2 config (its top level is not a mapping)")
    return data


def _merge(base: dict, child: dict) -> dict:
    out = dict(base)
    for k, v in child.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config_tree(path: str | Path, _seen: tuple = ()) -> dict:
    """The merged mapping of a YAML file and its ``_BASE_`` chain."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path} includes itself through _BASE_")
    data = _read_yaml(path)
    bases = data.pop("_BASE_", None)
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases or []:
        base_path = (path.parent / base)
        if not base_path.exists():
            raise ConfigError(f"{path.name} names _BASE_ '{base}', which does not exist next to it ({base_path})")
        merged = _merge(merged, read_config_tree(base_path, _seen + (path,)))
    return _merge(merged, data)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        flat.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return flat


def _literal(value: Any) -> Any:
    """yacs turns strings such as '("coco_2017_val",)' into Python literals; so do we (literals only)."""
    if isinstance(value, str) and not isinstance(value, _Inert) and value[:1] in "([{":
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _dataset_classes(test_sets: list, num_classes: int) -> tuple[list[str], list[int], list[int]]:
    """Class names, thing ids and dataset category ids of the first test dataset when it is a known one with the
    same class count (empty lists otherwise)."""
    name = str(test_sets[0]) if test_sets else ""
    dataset = next((d for d in ("coco", "ade20k", "cityscapes") if d in name), None)
    if dataset is None:
        return [], [], []
    task = "panoptic" if "panoptic" in name else "instance" if "instance" in name or name == "coco_2017_val" \
        else "semantic"
    classes = dataset_metadata(dataset).get(task)
    if not classes or len(classes["class_names"]) != num_classes:
        return [], [], []
    return list(classes["class_names"]), list(classes["thing_ids"]), list(classes.get("category_ids", []))


def config_from_tree(tree: dict, source: str) -> Mask2FormerConfig:
    """Map a merged detectron2 config mapping onto Mask2FormerConfig (see module docstring)."""
    flat = {k: _literal(v) for k, v in _flatten(tree).items()}
    # Keys of detectron2's schema that m2f does not read belong to other meta-architectures (RPN, ROI heads, FPN,
    # RetinaNet, DeepLab's head, ...) or to training, so a dumped config (every key) loads; the keys that shape this
    # model are read below and honoured or refused by value. Only keys outside the schema stop loading.
    known = detectron2_keys()
    unknown = [k for k in flat if k.startswith("MODEL.") and k not in known and k not in _DEFAULTS
               and k not in _IGNORED_MODEL_KEYS]
    if unknown:
        raise ConfigError(
            f"{source} sets {', '.join(unknown[:3])}, which is not in detectron2's or Mask2Former's config schema; "
            f"such a key may change the architecture, so loading stops (remove it if it does not)"
        )
    get = lambda key: flat.get(key, _DEFAULTS[key])  # noqa: E731
    for key, allowed in _REQUIRED.items():
        if get(key) not in allowed:
            raise ConfigError(f"{source}: {key} is {get(key)!r}; m2f builds only {' or '.join(map(repr, allowed))}")
    if list(get("MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES")) != _RES[1:]:
        raise ConfigError(f"{source}: the deformable encoder must read res3, res4, res5")
    if get("MODEL.BACKBONE.NAME") == "build_resnet_backbone":
        if get("MODEL.RESNETS.STRIDE_IN_1X1"):
            raise ConfigError(f"{source}: MODEL.RESNETS.STRIDE_IN_1X1 True (MSRA ResNet) is not supported; "
                              f"Mask2Former's configs set it False")
        if any(get("MODEL.RESNETS.DEFORM_ON_PER_STAGE")):
            raise ConfigError(f"{source}: deformable-convolution ResNets are not supported")
        backbone = ResNetConfig(
            depth=get("MODEL.RESNETS.DEPTH"), norm=get("MODEL.RESNETS.NORM"),
            stem_out_channels=get("MODEL.RESNETS.STEM_OUT_CHANNELS"),
            res2_out_channels=get("MODEL.RESNETS.RES2_OUT_CHANNELS"), num_groups=get("MODEL.RESNETS.NUM_GROUPS"),
            width_per_group=get("MODEL.RESNETS.WIDTH_PER_GROUP"), res5_dilation=get("MODEL.RESNETS.RES5_DILATION"),
        )
    else:
        backbone = SwinConfig(
            embed_dim=get("MODEL.SWIN.EMBED_DIM"), depths=tuple(get("MODEL.SWIN.DEPTHS")),
            num_heads=tuple(get("MODEL.SWIN.NUM_HEADS")), window_size=get("MODEL.SWIN.WINDOW_SIZE"),
            mlp_ratio=float(get("MODEL.SWIN.MLP_RATIO")), patch_size=get("MODEL.SWIN.PATCH_SIZE"),
            qkv_bias=get("MODEL.SWIN.QKV_BIAS"), patch_norm=get("MODEL.SWIN.PATCH_NORM"),
            pretrain_img_size=get("MODEL.SWIN.PRETRAIN_IMG_SIZE"),
        )
    num_classes = get("MODEL.SEM_SEG_HEAD.NUM_CLASSES")
    names, things, category_ids = _dataset_classes(list(get("DATASETS.TEST")), num_classes)
    cfg = Mask2FormerConfig(
        backbone=backbone,
        num_classes=num_classes,
        num_queries=get("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES"),
        hidden_dim=get("MODEL.MASK_FORMER.HIDDEN_DIM"),
        num_heads=get("MODEL.MASK_FORMER.NHEADS"),
        dim_feedforward=get("MODEL.MASK_FORMER.DIM_FEEDFORWARD"),
        dec_layers=get("MODEL.MASK_FORMER.DEC_LAYERS") - 1,
        pre_norm=get("MODEL.MASK_FORMER.PRE_NORM"),
        enforce_input_proj=get("MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ"),
        conv_dim=get("MODEL.SEM_SEG_HEAD.CONVS_DIM"),
        mask_dim=get("MODEL.SEM_SEG_HEAD.MASK_DIM"),
        enc_layers=get("MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS"),
        class_names=names,
        thing_ids=things,
        category_ids=category_ids,
        pixel_mean=tuple(float(x) for x in get("MODEL.PIXEL_MEAN")),
        pixel_std=tuple(float(x) for x in get("MODEL.PIXEL_STD")),
        min_size_test=get("INPUT.MIN_SIZE_TEST"),
        max_size_test=get("INPUT.MAX_SIZE_TEST"),
        size_divisibility=get("MODEL.MASK_FORMER.SIZE_DIVISIBILITY"),
        semantic_on=get("MODEL.MASK_FORMER.TEST.SEMANTIC_ON"),
        instance_on=get("MODEL.MASK_FORMER.TEST.INSTANCE_ON"),
        panoptic_on=get("MODEL.MASK_FORMER.TEST.PANOPTIC_ON"),
        object_mask_threshold=get("MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD"),
        overlap_threshold=get("MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD"),
        sem_seg_postprocess_before_inference=get("MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE"),
        test_topk_per_image=get("TEST.DETECTIONS_PER_IMAGE"),
        name=Path(source).stem,
    )
    try:
        cfg.validate()
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


def load_d2_config(path: str | Path) -> Mask2FormerConfig:
    """An official (or user-written) detectron2 Mask2Former YAML -> Mask2FormerConfig."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config {path} does not exist")
    return config_from_tree(read_config_tree(path), str(path))
