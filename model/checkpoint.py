"""``load_checkpoint``: any supported checkpoint -> an eval-mode Mask2Former with strict key accounting.

Order of authority for the configuration: an explicit ``config`` (a detectron2 YAML path or a Mask2FormerConfig),
else a ``preset``, else the config an m2f-trained ``.pth`` carries ("m2f_config"), else the HuggingFace
config.json, else the architecture read off the weights themselves plus the
metadata of the model-zoo dataset with that many classes. Whatever is chosen, the architecture implied by the
weights must agree with it, or loading stops with one sentence saying what differs.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from m2f.errors import CheckpointError

from . import hf, mmdet
from .checkpoint_io import RawCheckpoint, read_checkpoint
from .config import Mask2FormerConfig, ResNetConfig, SwinConfig
from .mask2former import Mask2Former
from .presets import SMALL, get_preset, preset_names
from .swin import relative_position_index

# Stored by detectron2 but not parameters of the inference model.
_IGNORED = re.compile(r"criterion\.empty_weight|.*\.num_batches_tracked|pixel_(mean|std)")
_LEGACY_RENAMES = [(re.compile(r"(sem_seg_head\.predictor\.)static_query\."), r"\1query_feat.")]
# Which model-zoo dataset/task a class count most likely means, for metadata when nothing else says.
_DATASET_BY_CLASSES = {133: "coco-panoptic", 80: "coco-instance", 150: "ade20k-semantic", 100: "ade20k-instance",
                       19: "cityscapes-semantic", 8: "cityscapes-instance"}


@dataclass
class LoadReport:
    """What loading did: the format, where the config came from, keys not used, and notes for the user."""

    format: str
    config_source: str
    unused_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _count(tensors: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    idx = {int(m.group(1)) for k in tensors for m in [rx.match(k)] if m}
    return max(idx) + 1 if idx else 0


def _need(tensors: dict, key: str, path: Path) -> torch.Tensor:
    if key not in tensors:
        raise CheckpointError(f"{path} has no '{key}', so it is not a Mask2Former checkpoint (or uses unknown names)")
    return tensors[key]


def infer_architecture(tensors: dict[str, torch.Tensor], path: Path) -> Mask2FormerConfig:
    """The architecture fields implied by detectron2-named weights (metadata fields keep their defaults).

    ``pre_norm`` cannot be read from weights (same tensors either way); every published model is post-norm, so a
    pre-norm model needs its config.
    """
    p, pd = "sem_seg_head.predictor.", "sem_seg_head.pixel_decoder."
    if not any(k.startswith("sem_seg_head.") for k in tensors):
        if any(k.startswith(("stem.", "res2.", "patch_embed.", "layers.0.")) for k in tensors):
            raise CheckpointError(f"{path} holds only backbone weights (an ImageNet initialisation), not a trained "
                                  f"Mask2Former; give the model's model_final_*.pkl")
        raise CheckpointError(f"{path} has no 'sem_seg_head.*' weights, so it is not a Mask2Former checkpoint")
    if "backbone.stem.conv1.weight" in tensors:
        n_res4 = _count(tensors, r"backbone\.res4\.(\d+)\.")
        depth = {6: 50, 23: 101, 36: 152}.get(n_res4)
        if depth is None:
            raise CheckpointError(f"{path}: a ResNet with {n_res4} res4 blocks is not a ResNet-50/101/152")
        conv2 = tensors["backbone.res2.0.conv2.weight"]
        groups = conv2.shape[0] // conv2.shape[1]
        backbone = ResNetConfig(
            depth=depth, stem_out_channels=tensors["backbone.stem.conv1.weight"].shape[0],
            res2_out_channels=tensors["backbone.res2.0.conv3.weight"].shape[0], num_groups=groups,
            width_per_group=conv2.shape[0] // groups,
        )
    elif "backbone.patch_embed.proj.weight" in tensors:
        proj = tensors["backbone.patch_embed.proj.weight"]
        n_stages = _count(tensors, r"backbone\.layers\.(\d+)\.")
        depths = tuple(_count(tensors, rf"backbone\.layers\.{s}\.blocks\.(\d+)\.") for s in range(n_stages))
        tables = [tensors[f"backbone.layers.{s}.blocks.0.attn.relative_position_bias_table"] for s in range(n_stages)]
        window = (math.isqrt(tables[0].shape[0]) + 1) // 2
        fc1 = tensors["backbone.layers.0.blocks.0.mlp.fc1.weight"]
        backbone = SwinConfig(
            embed_dim=proj.shape[0], depths=depths, num_heads=tuple(t.shape[1] for t in tables), window_size=window,
            mlp_ratio=fc1.shape[0] / fc1.shape[1], patch_size=proj.shape[-1],
            qkv_bias="backbone.layers.0.blocks.0.attn.qkv.bias" in tensors,
            patch_norm="backbone.patch_embed.norm.weight" in tensors,
        )
    else:
        raise CheckpointError(f"{path}: unknown backbone (neither detectron2 ResNet nor Swin weight names)")
    query_feat = _need(tensors, p + "query_feat.weight", path)
    attn_w = _need(tensors, pd + "transformer.encoder.layers.0.self_attn.attention_weights.weight", path)
    mask_features = _need(tensors, pd + "mask_features.weight", path)
    return Mask2FormerConfig(
        backbone=backbone,
        num_classes=_need(tensors, p + "class_embed.weight", path).shape[0] - 1,
        num_queries=query_feat.shape[0],
        hidden_dim=query_feat.shape[1],
        num_heads=attn_w.shape[0] // (3 * 4),  # MSDA heads = NHEADS; 3 levels x 4 points
        dim_feedforward=_need(tensors, p + "transformer_ffn_layers.0.linear1.weight", path).shape[0],
        dec_layers=_count(tensors, re.escape(p) + r"transformer_ffn_layers\.(\d+)\."),
        enforce_input_proj=p + "input_proj.0.weight" in tensors,
        conv_dim=mask_features.shape[1],
        mask_dim=mask_features.shape[0],
        enc_layers=_count(tensors, re.escape(pd) + r"transformer\.encoder\.layers\.(\d+)\."),
        enc_ffn_dim=_need(tensors, pd + "transformer.encoder.layers.0.linear1.weight", path).shape[0],
    )


_ARCH_FIELDS = {
    "num_classes": "classes", "num_queries": "queries", "hidden_dim": "hidden dim", "dim_feedforward":
    "decoder feed-forward dim", "dec_layers": "decoder layers", "conv_dim": "pixel-decoder channels",
    "mask_dim": "mask dim", "enc_layers": "encoder layers", "enc_ffn_dim": "encoder feed-forward dim",
    "enforce_input_proj": "decoder input projections",
}


def architecture_differences(want: Mask2FormerConfig, have: Mask2FormerConfig) -> list[str]:
    """Human-readable differences 'the checkpoint has X where the config has Y' (empty if they fit), head fields
    (classes, queries, …) first since those are the usual pairing mistakes."""
    diffs = [f"{getattr(have, f)} {label} where the config has {getattr(want, f)}"
             for f, label in _ARCH_FIELDS.items() if getattr(have, f) != getattr(want, f)]
    if type(want.backbone) is not type(have.backbone):
        return diffs + [f"a {have.backbone.kind} backbone where the config has {want.backbone.kind}"]
    b_fields = ("depth", "stem_out_channels", "res2_out_channels", "num_groups", "width_per_group") \
        if isinstance(have.backbone, ResNetConfig) else \
        ("embed_dim", "depths", "num_heads", "window_size", "mlp_ratio", "patch_size", "qkv_bias", "patch_norm")
    for f in b_fields:
        h, w = getattr(have.backbone, f), getattr(want.backbone, f)
        if (tuple(h) != tuple(w)) if isinstance(h, tuple) else h != w:
            diffs.append(f"backbone {f} {h} where the config has {w}")
    return diffs


def matching_presets(arch: Mask2FormerConfig) -> list[str]:
    return [n for n in preset_names() if not architecture_differences(get_preset(n), arch)]


def _with_metadata(arch: Mask2FormerConfig, meta: Mask2FormerConfig) -> Mask2FormerConfig:
    """The architecture of ``arch`` with every non-architecture field (names, sizes, thresholds…) of ``meta``."""
    arch_fields = set(_ARCH_FIELDS) | {"backbone", "num_heads", "pre_norm", "enc_n_points", "common_stride"}
    values = {f.name: getattr(meta, f.name) for f in dataclasses.fields(meta) if f.name not in arch_fields}
    norm = meta.backbone.norm if isinstance(meta.backbone, ResNetConfig) and isinstance(arch.backbone, ResNetConfig) \
        else None
    cfg = dataclasses.replace(arch, **values)
    if norm:
        cfg.backbone = dataclasses.replace(arch.backbone, norm=norm)
    return cfg


def _backbone_suffix(arch: Mask2FormerConfig) -> str:
    """The model-zoo backbone name closest to ``arch`` (only used to pick dataset metadata such as test sizes)."""
    b = arch.backbone
    if isinstance(b, ResNetConfig):
        return "r101" if b.depth >= 101 else "r50"
    return {192: "swin-l", 128: "swin-b"}.get(b.embed_dim, "swin-s" if sum(b.depths) > 12 else "swin-t")


def _guess_metadata(arch: Mask2FormerConfig, report: LoadReport) -> Mask2FormerConfig:
    """Metadata for weights that came without a config: the model-zoo dataset with this many classes."""
    family = _DATASET_BY_CLASSES.get(arch.num_classes)
    fits = matching_presets(arch)
    # m2f's own small presets (the bundled model) have architectures no zoo model has: an exact fit names them
    exact = [n for n in fits if n in SMALL] or [n for n in fits if family and n.startswith(family + "-")]
    name = exact[0] if exact else f"{family}-{_backbone_suffix(arch)}" if family else None
    if name is None:
        report.notes.append(f"no config given and no model-zoo dataset has {arch.num_classes} classes: class names "
                            f"are generic and only semantic inference is on; pass --config for the rest")
        return dataclasses.replace(arch, name="inferred")
    report.notes.append(f"no config given: class names, test sizes and thresholds taken from preset '{name}' by "
                        f"the {arch.num_classes} classes; pass --preset or --config if that is wrong")
    return _with_metadata(arch, get_preset(name))


def _mmdet_metadata(arch: Mask2FormerConfig, meta: dict, report: LoadReport) -> Mask2FormerConfig:
    """An mmdetection checkpoint's architecture with its own class names and thing/stuff split when its meta has
    them (test sizes and thresholds from the model-zoo preset with as many classes, as without a config)."""
    names, things = mmdet.class_split(meta, arch.num_classes)
    if not names:
        return _guess_metadata(arch, report)
    cfg = _guess_metadata(arch, LoadReport(format="", config_source=""))  # sizes, thresholds; not its notes
    sizes = f"from preset {cfg.name}" if cfg.name != "inferred" else "m2f's defaults"
    report.notes.append(f"class names and the thing/stuff split ({len(things)} things) from the checkpoint's meta; "
                        f"test sizes and thresholds {sizes} (pass --preset or --config if they differ)")
    same = names == cfg.class_names
    return dataclasses.replace(cfg, class_names=names, thing_ids=things, category_ids=cfg.category_ids if same else [],
                               semantic_on=True, panoptic_on=cfg.panoptic_on or len(things) < len(names),
                               instance_on=cfg.instance_on or bool(things))


def _check_swin_index(tensors: dict, name: str, window: int) -> None:
    if not torch.equal(tensors[name].long(), relative_position_index(window)):
        raise CheckpointError(f"'{name}' does not match a {window}x{window} window")


def assign_weights(model: Mask2Former, tensors: dict[str, torch.Tensor], source: str) -> list[str]:
    """Copy ``tensors`` into ``model`` with strict accounting; returns the names that were not used.

    Every parameter and persistent buffer must be present with the same shape; a missing key or a shape mismatch
    raises CheckpointError naming the keys (and both shapes).
    """
    expected = model.state_dict()
    ws_by_key = {f"{n}.relative_position_index": m.ws for n, m in model.named_modules() if hasattr(m, "ws")
                 and hasattr(m, "relative_position_bias_table")}
    missing = [k for k in expected if k not in tensors]
    unused = [k for k in tensors if k not in expected and not _IGNORED.fullmatch(k)]
    for k in [k for k in unused if k in ws_by_key]:
        _check_swin_index(tensors, k, ws_by_key[k])
        unused.remove(k)
    if missing:
        hint = f"; unused names in the checkpoint include {', '.join(unused[:5])}" if unused else ""
        raise CheckpointError(
            f"{source} lacks {len(missing)} weight(s) the model needs, e.g. {', '.join(missing[:5])}{hint} "
            f"(renamed keys, or a checkpoint for another architecture)"
        )
    bad = [(k, tuple(tensors[k].shape), tuple(v.shape)) for k, v in expected.items() if tensors[k].shape != v.shape]
    if bad:
        k, got, want = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckpointError(f"{source}: '{k}' has shape {list(got)} but the model expects {list(want)}{more}")
    model.load_state_dict({k: tensors[k].to(v.dtype) for k, v in expected.items()}, strict=True)
    return unused


def _detectron2_names(raw: RawCheckpoint) -> tuple[dict, list[str]]:
    if raw.format == "huggingface":
        return hf.to_detectron2_names(raw.tensors)
    if raw.format == "mmdetection":
        return mmdet.to_detectron2_names(raw.tensors)
    tensors = dict(raw.tensors)
    for rx, repl in _LEGACY_RENAMES:
        for k in [k for k in tensors if rx.match(k)]:
            tensors[rx.sub(repl, k)] = tensors.pop(k)
    return tensors, []


def read_weights(path: str | Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of any checkpoint the loader reads, under detectron2's names (HF names mapped, legacy names
    renamed), without building a model: for fine-tuning initialisation and tools that inspect weights."""
    tensors, _ = _detectron2_names(read_checkpoint(path, trust=trust))
    return tensors


def resolve_config(raw: RawCheckpoint, tensors: dict, preset: str | None,
                   config: "str | Path | Mask2FormerConfig | None") -> tuple[Mask2FormerConfig, LoadReport]:
    """Pick the configuration (see module docstring) and check the weights fit it."""
    from .d2_config import load_d2_config  # the YAML reader is only needed here

    report = LoadReport(format=raw.format, config_source="")
    arch = infer_architecture(tensors, raw.path)
    if config is not None:
        cfg = config if isinstance(config, Mask2FormerConfig) else load_d2_config(config)
        report.config_source = "config object" if isinstance(config, Mask2FormerConfig) else f"config {config}"
    elif preset is not None:
        cfg, report.config_source = get_preset(preset), f"preset {preset}"
    elif raw.m2f_config is not None:
        cfg, report.config_source = Mask2FormerConfig.from_dict(raw.m2f_config), "the config saved in the checkpoint"
    elif raw.hf_config is not None:
        cfg, report.config_source = hf.config_from_hf(raw.hf_config), "HuggingFace config.json"
        if not cfg.class_names or arch.num_classes in _DATASET_BY_CLASSES:
            guessed = _guess_metadata(arch, report)
            names = cfg.class_names or guessed.class_names
            cfg = dataclasses.replace(_with_metadata(cfg, guessed), class_names=names)
    elif raw.mmdet_meta is not None:
        return _mmdet_metadata(arch, raw.mmdet_meta, report), dataclasses.replace(
            report, config_source="inferred from weights and the mmdetection meta")
    else:
        return _guess_metadata(arch, report), dataclasses.replace(report, config_source="inferred from weights")
    diffs = architecture_differences(cfg, arch)
    if diffs:
        fits = matching_presets(arch)
        hint = f"; presets that fit: {', '.join(fits[:4])}" if fits else ""
        raise CheckpointError(
            f"{raw.path.name} does not fit {report.config_source}: the checkpoint has {'; '.join(diffs[:4])}{hint} "
            f"(or omit --preset/--config to read the architecture from the weights)"
        )
    return cfg, report


def load_checkpoint(path: str | Path, preset: str | None = None,
                    config: "str | Path | Mask2FormerConfig | None" = None, trust: bool = False) -> Mask2Former:
    """Load a detectron2 (.pkl/.pth), safetensors, HuggingFace or mmdetection Mask2Former as an eval-mode model.

    The returned module's ``forward(pixel_values)`` takes float32 [N, 3, H, W] (normalised, zero-padded to a
    multiple of 32) and returns {"pred_logits": [N, Q, K+1], "pred_masks": [N, Q, H/4, W/4]}. It carries
    ``.config`` (classes, thing ids, mean/std, resize policy, thresholds) and ``.load_report``.
    """
    raw = read_checkpoint(path, trust=trust)
    tensors, unknown = _detectron2_names(raw)
    cfg, report = resolve_config(raw, tensors, preset, config)
    model = Mask2Former(cfg)
    report.unused_keys = assign_weights(model, tensors, Path(path).name) + unknown
    model.load_report = report
    return model.eval()
