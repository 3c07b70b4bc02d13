"""Presets for the official Mask2Former model zoo: dataset x task x backbone -> Mask2FormerConfig.

Names read ``<dataset>-<task>-<backbone>``, e.g. ``coco-panoptic-r50``, ``ade20k-semantic-swin-l``,
``cityscapes-instance-swin-b``. Dataset metadata (class names, thing ids, test sizes) lives in the flat YAML files
beside this module; architecture choices that differ per family (queries, norm, window) are the rules below, taken
from the published configs (docs/model.md §4).
"""
from __future__ import annotations

import functools
from pathlib import Path

import yaml

from m2f.contract import TASKS
from m2f.errors import ConfigError

from .config import Mask2FormerConfig, ResNetConfig, SwinConfig

DATASETS = ("coco", "ade20k", "cityscapes")
BACKBONES = ("r50", "r101", "swin-t", "swin-s", "swin-b", "swin-l")
SWIN = {
    "swin-t": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7),
    "swin-s": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=7),
    "swin-b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=12,
                   pretrain_img_size=384),
    "swin-l": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12,
                   pretrain_img_size=384),
}


@functools.lru_cache(maxsize=None)
def dataset_metadata(dataset: str) -> dict:
    with open(Path(__file__).parent / "presets" / f"{dataset}.yaml") as f:
        return yaml.safe_load(f)


def preset_names() -> list[str]:
    zoo = [f"{d}-{t}-{b}" for d in DATASETS for t in reversed(TASKS) for b in BACKBONES if t in dataset_metadata(d)]
    return zoo + list(SMALL)


def _backbone(dataset: str, backbone: str):
    if backbone in SWIN:
        return SwinConfig(**SWIN[backbone])
    depth = int(backbone[1:])
    # Cityscapes R50/R101 and ADE20K R101 train with SyncBN; COCO and ADE20K R50 keep detectron2's FrozenBN.
    norm = "SyncBN" if dataset == "cityscapes" or (dataset == "ade20k" and depth == 101) else "FrozenBN"
    return ResNetConfig(depth=depth, norm=norm)


def get_preset(name: str) -> Mask2FormerConfig:
    """The config of a model-zoo preset; ConfigError naming the valid choices for an unknown name."""
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(names)}")
    if name in SMALL:
        return SMALL[name]()
    dataset, task, backbone = name.split("-", 2)
    info = dataset_metadata(dataset)
    classes = info[task]
    large = backbone in ("swin-b", "swin-l")
    min_size, max_size = info["min_size_test"], info["max_size_test"]
    if dataset == "ade20k" and (task != "semantic" or large):
        min_size, max_size = info["min_size_test_large"], info["max_size_test_large"]
    return Mask2FormerConfig(
        backbone=_backbone(dataset, backbone),
        num_classes=len(classes["class_names"]),
        num_queries=200 if backbone == "swin-l" and task != "semantic" else 100,
        class_names=list(classes["class_names"]),
        thing_ids=list(classes["thing_ids"]),
        category_ids=list(classes.get("category_ids", [])),
        min_size_test=min_size,
        max_size_test=max_size,
        semantic_on=task in ("semantic", "panoptic"),
        instance_on=task in ("instance", "panoptic"),
        panoptic_on=task == "panoptic",
        name=name,
    )


def synthetic_r50_lite() -> Mask2FormerConfig:
    """The bundled default model's architecture: a quarter-width ResNet-50 (trainable BatchNorm, 64..512 channels),
    hidden 64, 2 encoder and 6 decoder layers, 20 queries, on the 8 classes of ``m2f.datasets.synthetic``
    (5 things, 3 stuff). All three tasks on; test size 192 (the synthetic images are 192x256)."""
    classes = dataset_metadata("synthetic")["panoptic"]
    return Mask2FormerConfig(
        backbone=ResNetConfig(depth=50, norm="BN", stem_out_channels=32, res2_out_channels=64, width_per_group=16),
        num_classes=len(classes["class_names"]), num_queries=20, hidden_dim=64, num_heads=4, dim_feedforward=256,
        dec_layers=6, conv_dim=64, mask_dim=64, enc_layers=2, enc_ffn_dim=256,
        class_names=list(classes["class_names"]), thing_ids=list(classes["thing_ids"]),
        category_ids=list(classes["category_ids"]),
        min_size_test=192, max_size_test=320, semantic_on=True, instance_on=True, panoptic_on=True,
        name="synthetic-r50-lite",
    )


SMALL = {"synthetic-r50-lite": synthetic_r50_lite}
