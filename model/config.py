"""Plain dataclass configuration of a Mask2Former model: architecture plus the inference metadata it carries.

Field names follow the detectron2 config keys they come from (noted beside each), so a reader can map an official
YAML file onto them; ``m2f.model.d2_config`` does that mapping, ``m2f.model.hf`` the HuggingFace one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Union

from m2f.errors import ConfigError

# RGB order, 0..255 scale; every published Mask2Former config uses these (docs/model.md §1.1).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass
class ResNetConfig:
    """detectron2 ResNet (MODEL.RESNETS.*): bottleneck blocks, stride on the 3x3 conv (STRIDE_IN_1X1 False)."""

    depth: int = 50  # DEPTH: 50 or 101 (152 also builds)
    norm: str = "FrozenBN"  # NORM: FrozenBN, or BN / SyncBN (plain BatchNorm with running stats at eval)
    stem_out_channels: int = 64  # STEM_OUT_CHANNELS
    res2_out_channels: int = 256  # RES2_OUT_CHANNELS
    num_groups: int = 1  # NUM_GROUPS
    width_per_group: int = 64  # WIDTH_PER_GROUP
    res5_dilation: int = 1  # RES5_DILATION

    kind = "resnet"

    @property
    def num_blocks(self) -> tuple[int, int, int, int]:
        blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
        if self.depth not in (50, 101, 152):
            raise ConfigError(f"ResNet depth {self.depth} is not supported; use 50, 101 or 152 (bottleneck ResNets)")
        return blocks[self.depth]

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        c = self.res2_out_channels
        return (c, 2 * c, 4 * c, 8 * c)


@dataclass
class SwinConfig:
    """Swin Transformer as D2SwinTransformer (MODEL.SWIN.*); no absolute position embedding."""

    embed_dim: int = 96  # EMBED_DIM
    depths: tuple[int, ...] = (2, 2, 6, 2)  # DEPTHS
    num_heads: tuple[int, ...] = (3, 6, 12, 24)  # NUM_HEADS
    window_size: int = 7  # WINDOW_SIZE
    mlp_ratio: float = 4.0  # MLP_RATIO
    patch_size: int = 4  # PATCH_SIZE
    qkv_bias: bool = True  # QKV_BIAS
    patch_norm: bool = True  # PATCH_NORM
    pretrain_img_size: int = 224  # PRETRAIN_IMG_SIZE (only used by the absolute embedding, which we do not support)

    kind = "swin"

    @property
    def out_channels(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))


BackboneConfig = Union[ResNetConfig, SwinConfig]


@dataclass
class Mask2FormerConfig:
    """Architecture (MODEL.SEM_SEG_HEAD.*, MODEL.MASK_FORMER.*) and inference metadata of one model."""

    backbone: BackboneConfig = field(default_factory=ResNetConfig)
    num_classes: int = 133  # SEM_SEG_HEAD.NUM_CLASSES (K; the logits have K + 1 entries, the last is no-object)
    num_queries: int = 100  # MASK_FORMER.NUM_OBJECT_QUERIES
    hidden_dim: int = 256  # MASK_FORMER.HIDDEN_DIM
    num_heads: int = 8  # MASK_FORMER.NHEADS (also the pixel decoder's deformable-attention heads)
    dim_feedforward: int = 2048  # MASK_FORMER.DIM_FEEDFORWARD (transformer decoder FFN)
    dec_layers: int = 9  # MASK_FORMER.DEC_LAYERS - 1: the number of real decoder layers
    pre_norm: bool = False  # MASK_FORMER.PRE_NORM
    enforce_input_proj: bool = False  # MASK_FORMER.ENFORCE_INPUT_PROJ
    conv_dim: int = 256  # SEM_SEG_HEAD.CONVS_DIM
    mask_dim: int = 256  # SEM_SEG_HEAD.MASK_DIM
    enc_layers: int = 6  # SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS
    enc_ffn_dim: int = 1024  # hard-coded in the original pixel decoder (DIM_FEEDFORWARD is NOT used there)
    enc_n_points: int = 4  # hard-coded 4 in the original (the config key is not wired in)
    common_stride: int = 4  # SEM_SEG_HEAD.COMMON_STRIDE

    # Inference metadata.
    class_names: list[str] = field(default_factory=list)
    thing_ids: list[int] = field(default_factory=list)  # contiguous ids (0..K-1) of thing classes
    # the dataset's own category id of each contiguous class (COCO: 1..200), what its evaluation tools expect;
    # empty when unknown (results then carry the contiguous ids)
    category_ids: list[int] = field(default_factory=list)
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB, 0..255
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    min_size_test: int = 800  # INPUT.MIN_SIZE_TEST
    max_size_test: int = 1333  # INPUT.MAX_SIZE_TEST
    size_divisibility: int = 32  # MASK_FORMER.SIZE_DIVISIBILITY
    semantic_on: bool = True  # MASK_FORMER.TEST.SEMANTIC_ON
    instance_on: bool = False  # MASK_FORMER.TEST.INSTANCE_ON
    panoptic_on: bool = False  # MASK_FORMER.TEST.PANOPTIC_ON
    object_mask_threshold: float = 0.8  # MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD
    overlap_threshold: float = 0.8  # MASK_FORMER.TEST.OVERLAP_THRESHOLD
    sem_seg_postprocess_before_inference: bool = False  # MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE
    test_topk_per_image: int = 100  # TEST.DETECTIONS_PER_IMAGE
    name: str = "custom"

    @property
    def tasks(self) -> list[str]:
        return [t for t, on in (("semantic", self.semantic_on), ("instance", self.instance_on),
                                ("panoptic", self.panoptic_on)) if on]

    @property
    def postprocess_before_inference(self) -> bool:
        """Whether masks are cropped and resized to the output size before semantic inference (docs/model.md §2)."""
        return self.sem_seg_postprocess_before_inference or self.panoptic_on or self.instance_on

    def to_dict(self) -> dict:
        d = asdict(self)
        d["backbone"] = {"kind": self.backbone.kind, **asdict(self.backbone)}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Mask2FormerConfig":
        """The inverse of ``to_dict``; ConfigError for a document this version cannot read."""
        d = dict(d)
        bb = dict(d.pop("backbone", None) or {})
        kinds = {"resnet": ResNetConfig, "swin": SwinConfig}
        kind = bb.pop("kind", None)
        if kind not in kinds:
            raise ConfigError(f"a saved model config has backbone kind {kind!r}; this m2f knows {', '.join(kinds)}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        unknown += sorted(set(bb) - {f.name for f in fields(kinds[kind])})
        if unknown:
            raise ConfigError(f"a saved model config has fields this m2f does not know ({', '.join(unknown)}); it "
                              f"was written by a newer m2f: upgrade, or pass --preset/--config")
        backbone = kinds[kind](**bb)
        if isinstance(backbone, SwinConfig):
            backbone.depths, backbone.num_heads = tuple(backbone.depths), tuple(backbone.num_heads)
        for key in ("pixel_mean", "pixel_std"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(backbone=backbone, **d)

    def validate(self) -> None:
        """Raise ConfigError with one sentence when the combination cannot build a model."""
        if self.hidden_dim % self.num_heads or self.conv_dim % self.num_heads:
            raise ConfigError(f"hidden_dim {self.hidden_dim} / conv_dim {self.conv_dim} must be divisible by "
                              f"num_heads {self.num_heads}")
        if self.conv_dim % 32:
            raise ConfigError(f"conv_dim {self.conv_dim} must be a multiple of 32 (GroupNorm with 32 groups)")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class names given for {self.num_classes} classes")
        if self.category_ids and (len(self.category_ids) != self.num_classes
                                  or len(set(self.category_ids)) != self.num_classes):
            raise ConfigError(f"category_ids must give {self.num_classes} distinct dataset ids, one per class "
                              f"(got {len(self.category_ids)}, {len(set(self.category_ids))} distinct)")
        bad = [i for i in self.thing_ids if not 0 <= i < self.num_classes]
        if bad:
            raise ConfigError(f"thing ids {bad} are outside 0..{self.num_classes - 1}")
        if isinstance(self.backbone, SwinConfig):
            b = self.backbone
            if len(b.depths) != 4 or len(b.num_heads) != 4:
                raise ConfigError("Swin needs 4 stages (depths and num_heads of length 4)")
            for i, h in enumerate(b.num_heads):
                if (b.embed_dim * 2**i) % h:
                    raise ConfigError(f"Swin stage {i}: {b.embed_dim * 2**i} channels not divisible by {h} heads")
