"""mmdetection 3.x Mask2Former checkpoints against mmdetection's own forward.

data/mmdet_{r50,swin}.pth are tiny randomly initialised mmdetection 3.3.0 Mask2Formers (a narrow ResNet-50 and a
small Swin, built from the official config's structure) saved as mmdetection saves checkpoints, and
data/mmdet_*_forward.npz holds mmdetection's forward (panoptic_head on extract_feat) on a random input:
tools/mmdet_reference.py made both, with mmdet 3.3.0 / mmengine 0.10.7 / mmcv-lite 2.1.0 on this CPU (mmcv's
compiled ops replaced by its own pure-PyTorch deformable attention, tools/mmdet_shim.py)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from m2f.cli import main
from m2f.model.checkpoint import load_checkpoint

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("backbone", ["r50", "swin"])
def test_forward_equals_mmdetection(backbone):
    model = load_checkpoint(DATA / f"mmdet_{backbone}.pth")
    ref = np.load(DATA / f"mmdet_{backbone}_forward.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(ref["pixel_values"]))
    for name in ("pred_logits", "pred_masks"):
        np.testing.assert_allclose(out[name].numpy(), ref[name], rtol=0, atol=1e-5, err_msg=name)
    assert model.load_report.format == "mmdetection" and model.load_report.unused_keys == []


def test_classes_and_split_from_the_meta():
    cfg = load_checkpoint(DATA / "mmdet_r50.pth").config
    assert cfg.class_names == ["robot", "person", "cart", "floor", "wall"] and cfg.thing_ids == [0, 1, 2]
    assert cfg.tasks == ["semantic", "instance", "panoptic"]
    assert (cfg.num_heads, cfg.num_queries, cfg.dec_layers, cfg.enc_layers) == (4, 7, 3, 2)


def test_swin_patch_merging_order_matters():
    """The PatchMerging reorder is what makes Swin match: without it the masks differ."""
    from m2f.model import mmdet

    raw = torch.load(DATA / "mmdet_swin.pth", weights_only=True)["state_dict"]
    weight = raw["backbone.stages.0.downsample.reduction.weight"]
    ours = mmdet.to_detectron2_names(raw)[0]["backbone.layers.0.downsample.reduction.weight"]
    assert not torch.equal(ours, weight) and sorted(ours.flatten().tolist()) == sorted(weight.flatten().tolist())


def test_inspect_names_the_source(capsys):
    assert main(["inspect", str(DATA / "mmdet_r50.pth")]) == 0
    out = capsys.readouterr().out
    assert "(mmdetection)" in out and "5 (3 things): robot, person, cart, floor, wall" in out
