"""Model-zoo presets: every one builds; parameter counts match the published ones; R50 runs at 512x512 here."""
import pytest
import torch

from m2f.errors import ConfigError
from m2f.model.mask2former import Mask2Former

# MODEL_ZOO.md "#params" of the COCO panoptic models, in millions.
from m2f.model.presets import get_preset, preset_names

# MODEL_ZOO.md "#params" of the COCO panoptic models, in millions.
PUBLISHED_PARAMS_M = {"r50": 44, "r101": 63, "swin-t": 47, "swin-s": 69, "swin-b": 107, "swin-l": 216}


def _params(name):
    with torch.device("meta"):
        return sum(p.numel() for p in Mask2Former(get_preset(name)).parameters())


@pytest.mark.parametrize("backbone,published", sorted(PUBLISHED_PARAMS_M.items()))
def test_published_parameter_counts(backbone, published):
    assert abs(_params(f"coco-panoptic-{backbone}") / 1e6 - published) < 0.5


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds_consistently(name):
    cfg = get_preset(name)
    assert len(cfg.class_names) == cfg.num_classes
    assert all(0 <= i < cfg.num_classes for i in cfg.thing_ids)
    with torch.device("meta"):
        model = Mask2Former(cfg)
    assert model.sem_seg_head.predictor.class_embed.out_features == cfg.num_classes + 1


@pytest.mark.parametrize("name,k,q,sizes,tasks", [
    ("coco-panoptic-r50", 133, 100, (800, 1333), ["semantic", "instance", "panoptic"]),
    ("coco-instance-swin-l", 80, 200, (800, 1333), ["instance"]),
    ("ade20k-semantic-swin-t", 150, 100, (512, 2048), ["semantic"]),
    ("ade20k-semantic-swin-l", 150, 100, (640, 2560), ["semantic"]),
    ("ade20k-panoptic-r50", 150, 100, (640, 2560), ["semantic", "instance", "panoptic"]),
    ("ade20k-instance-swin-l", 100, 200, (640, 2560), ["instance"]),
    ("cityscapes-panoptic-r50", 19, 100, (1024, 2048), ["semantic", "instance", "panoptic"]),
    ("cityscapes-instance-r50", 8, 100, (1024, 2048), ["instance"]),
])
def test_zoo_facts(name, k, q, sizes, tasks):
    cfg = get_preset(name)
    assert (cfg.num_classes, cfg.num_queries, (cfg.min_size_test, cfg.max_size_test), cfg.tasks) == (k, q, sizes,
                                                                                                       tasks)
    assert (cfg.object_mask_threshold, cfg.overlap_threshold, cfg.dec_layers, cfg.enc_layers) == (0.8, 0.8, 9, 6)


def test_thing_ids():
    assert get_preset("coco-panoptic-r50").thing_ids == list(range(80))
    assert get_preset("cityscapes-panoptic-r50").thing_ids == list(range(11, 19))
    assert len(get_preset("ade20k-panoptic-r50").thing_ids) == 100
    assert get_preset("cityscapes-semantic-r50").backbone.norm == "SyncBN"
    assert get_preset("coco-panoptic-r50").backbone.norm == "FrozenBN"


def test_unknown_preset_lists_choices():
    with pytest.raises(ConfigError, match="unknown preset 'coco-r50'; choose one of: coco-panoptic-r50"):
        get_preset("coco-r50")


def test_r50_forward_512():
    torch.manual_seed(0)
    model = Mask2Former(get_preset("coco-panoptic-r50")).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 512, 512))
    assert out["pred_logits"].shape == (1, 100, 134) and out["pred_masks"].shape == (1, 100, 128, 128)
    assert torch.isfinite(out["pred_logits"]).all() and torch.isfinite(out["pred_masks"]).all()


@pytest.mark.parametrize("name", ["coco-panoptic-r50", "ade20k-semantic-swin-b"])
def test_config_dict_round_trip(name):
    from m2f.model.config import Mask2FormerConfig

    cfg = get_preset(name)
    assert Mask2FormerConfig.from_dict(cfg.to_dict()) == cfg
