"""detectron2 YAML configs as the Mask2Former repo ships them (_BASE_ chains, python tags, strict unknown keys) and as
every training run dumps them (data/dumped_config_*.yaml: written by yacs' ``cfg.dump()`` from the real detectron2
get_cfg() + add_deeplab_config + add_maskformer2_config and the official COCO panoptic R50 / Swin-T configs, with
the datasets renamed to a custom ``my_robot_panoptic_*``)."""
import dataclasses
import textwrap
from pathlib import Path

import pytest
import torch

from m2f.errors import CheckpointError, ConfigError
from m2f.model.mask2former import Mask2Former
from m2f.model.presets import get_preset
from m2f.model.checkpoint import load_checkpoint
from m2f.model.d2_config import load_d2_config
from m2f.model.checkpoint_io import save_detectron2_pkl

from .helpers import random_model

# The shape of configs/ade20k/semantic-segmentation: a Base file, the R50 file, a Swin file two levels down.
BASE = """\
MODEL:
  BACKBONE:
    FREEZE_AT: 0
    NAME: "build_resnet_backbone"
  WEIGHTS: "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
  PIXEL_MEAN: [123.675, 116.280, 103.530]
  PIXEL_STD: [58.395, 57.120, 57.375]
  RESNETS:
    DEPTH: 50
    STEM_TYPE: "basic"  # not used
    STEM_OUT_CHANNELS: 64
    STRIDE_IN_1X1: False
    OUT_FEATURES: ["res2", "res3", "res4", "res5"]
    RES5_MULTI_GRID: [1, 1, 1]  # not used
DATASETS:
  TRAIN: ("ade20k_sem_seg_train",)
  TEST: ("ade20k_sem_seg_val",)
SOLVER:
  IMS_PER_BATCH: 16
  MAX_ITER: 160000
INPUT:
  MIN_SIZE_TRAIN: !!python/object/apply:eval ["[int(x * 0.1 * 512) for x in range(5, 21)]"]
  MIN_SIZE_TEST: 512
  MAX_SIZE_TEST: 2048
  CROP:
    SIZE: (512, 512)
  FORMAT: "RGB"
TEST:
  AUG:
    ENABLED: False
VERSION: 2
"""
R50 = """\
_BASE_: Base-ADE20K-SemanticSegmentation.yaml
MODEL:
  META_ARCHITECTURE: "MaskFormer"
  SEM_SEG_HEAD:
    NAME: "MaskFormerHead"
    IGNORE_VALUE: 255
    NUM_CLASSES: 150
    LOSS_WEIGHT: 1.0
    CONVS_DIM: 256
    MASK_DIM: 256
    NORM: "GN"
    PIXEL_DECODER_NAME: "MSDeformAttnPixelDecoder"
    IN_FEATURES: ["res2", "res3", "res4", "res5"]
    DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES: ["res3", "res4", "res5"]
    COMMON_STRIDE: 4
    TRANSFORMER_ENC_LAYERS: 6
  MASK_FORMER:
    TRANSFORMER_DECODER_NAME: "MultiScaleMaskedTransformerDecoder"
    TRANSFORMER_IN_FEATURE: "multi_scale_pixel_decoder"
    DEEP_SUPERVISION: True
    NO_OBJECT_WEIGHT: 0.1
    HIDDEN_DIM: 256
    NUM_OBJECT_QUERIES: 100
    NHEADS: 8
    DROPOUT: 0.0
    DIM_FEEDFORWARD: 2048
    ENC_LAYERS: 0
    PRE_NORM: False
    ENFORCE_INPUT_PROJ: False
    SIZE_DIVISIBILITY: 32
    DEC_LAYERS: 10  # 9 decoder layers, add one for the loss on learnable query
    TRAIN_NUM_POINTS: 12544
    TEST:
      SEMANTIC_ON: True
      INSTANCE_ON: False
      PANOPTIC_ON: False
      OVERLAP_THRESHOLD: 0.8
      OBJECT_MASK_THRESHOLD: 0.8
"""
SWIN_L = """\
_BASE_: ../maskformer2_R50_bs16_160k.yaml
MODEL:
  BACKBONE:
    NAME: "D2SwinTransformer"
  SWIN:
    EMBED_DIM: 192
    DEPTHS: [2, 2, 18, 2]
    NUM_HEADS: [6, 12, 24, 48]
    WINDOW_SIZE: 12
    APE: False
    DROP_PATH_RATE: 0.3
    PATCH_NORM: True
    PRETRAIN_IMG_SIZE: 384
  WEIGHTS: "swin_large_patch4_window12_384_22k.pkl"
INPUT:
  MIN_SIZE_TRAIN: !!python/object/apply:eval ["[int(x * 0.1 * 640) for x in range(5, 21)]"]
  MIN_SIZE_TEST: 640
  MAX_SIZE_TEST: 2560
"""


@pytest.fixture
def configs(tmp_path):
    (tmp_path / "swin").mkdir()
    (tmp_path / "Base-ADE20K-SemanticSegmentation.yaml").write_text(BASE)
    (tmp_path / "maskformer2_R50_bs16_160k.yaml").write_text(R50)
    (tmp_path / "swin" / "maskformer2_swin_large_IN21k_384_bs16_160k_res640.yaml").write_text(SWIN_L)
    return tmp_path


def test_r50_chain(configs):
    cfg = load_d2_config(configs / "maskformer2_R50_bs16_160k.yaml")
    assert cfg.backbone.kind == "resnet" and cfg.backbone.depth == 50
    assert (cfg.num_classes, cfg.num_queries, cfg.dec_layers, cfg.enc_layers) == (150, 100, 9, 6)
    assert (cfg.min_size_test, cfg.max_size_test) == (512, 2048)
    assert cfg.tasks == ["semantic"] and cfg.object_mask_threshold == 0.8
    assert cfg.class_names[:3] == ["wall", "building", "sky"] and len(cfg.thing_ids) == 100
    assert cfg.pixel_mean == (123.675, 116.28, 103.53)
    preset = get_preset("ade20k-semantic-r50")
    assert cfg.to_dict() | {"name": preset.name} == preset.to_dict()


def test_swin_l_chain_overrides(configs):
    cfg = load_d2_config(configs / "swin" / "maskformer2_swin_large_IN21k_384_bs16_160k_res640.yaml")
    b = cfg.backbone
    assert b.kind == "swin" and (b.embed_dim, b.depths, b.num_heads, b.window_size) == (192, (2, 2, 18, 2),
                                                                                          (6, 12, 24, 48), 12)
    assert (cfg.min_size_test, cfg.max_size_test, cfg.num_queries) == (640, 2560, 100)
    with torch.device("meta"):
        n = sum(p.numel() for p in Mask2Former(cfg).parameters())
    assert 214e6 < n < 218e6


def _child(configs, text):
    path = configs / "custom.yaml"
    path.write_text("_BASE_: maskformer2_R50_bs16_160k.yaml\n" + textwrap.dedent(text))
    return path


@pytest.mark.parametrize("text,match", [
    ("MODEL:\n  MASK_FORMER:\n    NEW_ARCH_KNOB: 3\n", r"MASK_FORMER\.NEW_ARCH_KNOB, which is not in detectron2.s"),
    ("MODEL:\n  META_ARCHITECTURE: GeneralizedRCNN\n", r"META_ARCHITECTURE is 'GeneralizedRCNN'"),
    ("MODEL:\n  RESNETS:\n    STRIDE_IN_1X1: True\n", "STRIDE_IN_1X1 True"),
    ("MODEL:\n  SEM_SEG_HEAD:\n    PIXEL_DECODER_NAME: BasePixelDecoder\n", "MSDeformAttnPixelDecoder"),
    ("MODEL:\n  SWIN:\n    APE: True\n", "APE"),
    ("INPUT:\n  FORMAT: BGR\n", "FORMAT"),
    ("MODEL: [1, 2\n", "not valid YAML"),
])
def test_refusals(configs, text, match):
    with pytest.raises(ConfigError, match=match):
        load_d2_config(_child(configs, text))


def test_missing_base_and_cycle(configs):
    (configs / "a.yaml").write_text("_BASE_: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_d2_config(configs / "a.yaml")
    (configs / "b.yaml").write_text("_BASE_: c.yaml\n")
    (configs / "c.yaml").write_text("_BASE_: b.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_d2_config(configs / "b.yaml")


def test_python_tags_are_never_evaluated(configs, tmp_path):
    marker = tmp_path / "evaluated"
    path = _child(configs, f"INPUT:\n  MIN_SIZE_TRAIN: !!python/object/apply:os.system [\"touch {marker}\"]\n")
    load_d2_config(path)
    assert not marker.exists()


def test_pkl_plus_yaml_is_all_a_user_needs(configs, tmp_path):
    """A small custom model trained with its own YAML: the pair loads; a wrong pairing is one sentence."""
    yaml_path = _child(configs, """\
        MODEL:
          RESNETS: {STEM_OUT_CHANNELS: 8, RES2_OUT_CHANNELS: 32, WIDTH_PER_GROUP: 8}
          SEM_SEG_HEAD: {NUM_CLASSES: 7, CONVS_DIM: 32, MASK_DIM: 32, TRANSFORMER_ENC_LAYERS: 1}
          MASK_FORMER: {HIDDEN_DIM: 32, NHEADS: 4, DIM_FEEDFORWARD: 48, DEC_LAYERS: 3, NUM_OBJECT_QUERIES: 8}
        DATASETS:
          TEST: ("my_dataset_val",)
        """)
    cfg = load_d2_config(yaml_path)
    cfg.enc_ffn_dim = 1024  # hard-coded in the original, whatever the YAML says
    model = random_model(cfg)
    save_detectron2_pkl(model.state_dict(), tmp_path / "model_final.pkl")
    loaded = load_checkpoint(tmp_path / "model_final.pkl", config=yaml_path)
    assert loaded.config.num_classes == 7 and loaded.config.class_names == []
    assert loaded.load_report.config_source == f"config {yaml_path}"
    with pytest.raises(CheckpointError, match=r"does not fit config .*: the checkpoint has 7 classes where the "
                                              r"config has 150"):
        load_checkpoint(tmp_path / "model_final.pkl", config=configs / "maskformer2_R50_bs16_160k.yaml")


DATA = Path(__file__).parent / "data"
DUMPED = {"r50": "coco-panoptic-r50", "swin_t": "coco-panoptic-swin-t"}


def _without_dataset(cfg):
    return dataclasses.replace(cfg, class_names=[], thing_ids=[], category_ids=[], name="")


@pytest.mark.parametrize("name", sorted(DUMPED))
def test_dumped_config_reproduces_the_model(name):
    """All ~260 keys of a dumped config (ANCHOR_GENERATOR, RPN, ROI_HEADS, FPN, RETINANET, DeepLab's ASPP, ...): the
    keys of other architectures are ignored and the model is exactly the preset's (classes aside: the dataset is a
    custom one)."""
    cfg = load_d2_config(DATA / f"dumped_config_{name}.yaml")
    assert _without_dataset(cfg) == _without_dataset(get_preset(DUMPED[name]))
    assert cfg.num_classes == 133 and cfg.class_names == []


def test_dumped_config_with_python_tuples(tmp_path):
    """Older yacs versions dump tuples as ``!!python/tuple``."""
    text = (DATA / "dumped_config_r50.yaml").read_text()
    text = text.replace("  TEST:\n  - my_robot_panoptic_val", "  TEST: !!python/tuple\n  - my_robot_panoptic_val")
    text = text.replace("  TRAIN:\n  - my_robot_panoptic_train", "  TRAIN: !!python/tuple\n  - my_robot_panoptic_train")
    assert text.count("!!python/tuple") == 2
    path = tmp_path / "dumped_config_r50.yaml"
    path.write_text(text)
    assert load_d2_config(path) == load_d2_config(DATA / "dumped_config_r50.yaml")


def test_dumped_config_still_refuses_keys_outside_the_schema(tmp_path):
    text = (DATA / "dumped_config_r50.yaml").read_text()
    assert "\n  MASK_FORMER:\n" in text
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("\n  MASK_FORMER:\n", "\n  MASK_FORMER:\n    QUERY_ROUTING: 2\n"))
    with pytest.raises(ConfigError, match=r"MODEL\.MASK_FORMER\.QUERY_ROUTING, which is not in detectron2's"):
        load_d2_config(path)
