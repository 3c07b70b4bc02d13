"""LSJ, trainable BatchNorm, optimiser groups and schedules, the training loop's resume, readers and evaluation."""
import dataclasses
import json
import time

import numpy as np
import pytest
import torch

pytest.importorskip("scipy", reason="scipy is a training dependency (pip install m2f[train])")

from m2f.model.mask2former import Mask2Former  # noqa: E402
from m2f.train.augment import LSJ  # noqa: E402
from m2f.train.batchnorm import freeze_batchnorm, unfreeze_batchnorm  # noqa: E402
from m2f.datasets.coco import CocoInstances, CocoPanoptic, open_dataset  # noqa: E402
from m2f.train.optim import build_optimizer, lr_factor  # noqa: E402
from m2f.datasets.synthetic import generate  # noqa: E402
from m2f.train.trainer import TrainConfig, train  # noqa: E402

from ..model.helpers import random_model, tiny_config  # noqa: E402


def test_lsj_scales_crops_pads_and_flips_image_and_masks_together():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    masks = np.zeros((2, 30, 40), bool)
    masks[0, 5:15, 10:20] = True
    masks[1, 0:3, 0:3] = True
    # scale 1 on a 60x80 canvas: exact 2x upsampling, no crop, no padding; the masks follow the image
    out, out_masks, keep, valid = LSJ(60, 80, 1.0, 1.0, flip=False)(image, masks, rng)
    assert out.shape == (3, 60, 80) and valid == (60, 80) and keep.all()
    assert out_masks[0].sum() == 4 * masks[0].sum() and out_masks[0, 10:30, 20:40].all()
    # scale 0.5: a 30x40 image in the top-left, 128 padding elsewhere, padding is void for every mask
    out, out_masks, _, valid = LSJ(60, 80, 0.5, 0.5, flip=False)(image, masks, rng)
    assert valid == (30, 40) and (out[:, 30:] == 128).all() and (out[:, :, 40:] == 128).all()
    assert not out_masks[:, 30:].any() and not out_masks[:, :, 40:].any()
    np.testing.assert_allclose(out[:, :30, :40], image.transpose(2, 0, 1), atol=1e-4)
    # scale 2: a random 60x80 window of the 120x160 resize; the tiny corner mask can drop out, and keep says so
    seen_drop = False
    for _ in range(10):
        out, out_masks, keep, _ = LSJ(60, 80, 2.0, 2.0, flip=False)(image, masks, rng)
        assert out_masks.shape[0] == keep.sum() and out_masks.shape[1:] == (60, 80)
        seen_drop |= not keep[1]
    assert seen_drop
    # flips mirror image and masks alike
    flips = [LSJ(30, 40, 1.0, 1.0, flip=True)(image, masks, np.random.default_rng(s)) for s in range(6)]
    mirrored = [f for f in flips if not np.array_equal(f[0], image.transpose(2, 0, 1).astype(np.float32))]
    assert mirrored, "no flip in six draws"
    np.testing.assert_allclose(mirrored[0][0], image[:, ::-1].transpose(2, 0, 1), atol=1e-4)
    assert np.array_equal(mirrored[0][1][0], masks[0][:, ::-1])


def test_trainable_batchnorm_round_trip_keeps_eval_outputs():
    cfg = tiny_config("resnet")
    cfg.backbone.norm = "BN"
    model = random_model(cfg)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)["pred_logits"]
    unfreeze_batchnorm(model)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        assert torch.allclose(model.eval()(x)["pred_logits"], before, atol=1e-5)
    freeze_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert set(model.state_dict()) == set(Mask2Former(cfg).state_dict())
    with torch.no_grad():
        assert torch.allclose(model(x)["pred_logits"], before, atol=1e-5)


def test_optimizer_groups_follow_the_recipe():
    cfg = tiny_config("swin")
    model = Mask2Former(cfg)
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.05, backbone_multiplier=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    by_name = {names[id(g["params"][0])]: g for g in optimizer.param_groups}
    assert len(by_name) == sum(1 for _ in model.parameters())
    assert by_name["backbone.patch_embed.proj.weight"]["lr"] == pytest.approx(1e-5)
    assert by_name["backbone.patch_embed.proj.weight"]["weight_decay"] == 0.05
    table = next(n for n in by_name if n.endswith("relative_position_bias_table"))
    assert by_name[table]["weight_decay"] == 0.0 and by_name[table]["lr"] == pytest.approx(1e-5)
    assert by_name["sem_seg_head.predictor.query_embed.weight"]["weight_decay"] == 0.0  # nn.Embedding
    assert by_name["sem_seg_head.predictor.query_embed.weight"]["lr"] == pytest.approx(1e-4)
    assert by_name["sem_seg_head.predictor.decoder_norm.weight"]["weight_decay"] == 0.0  # LayerNorm
    assert by_name["sem_seg_head.predictor.class_embed.weight"]["weight_decay"] == 0.05


def test_schedules():
    # COCO: x0.1 at 327,778 and x0.01 at 355,092 of 368,750
    assert lr_factor(327_777, 368_750, "step") == 1.0
    assert lr_factor(327_778, 368_750, "step") == pytest.approx(0.1)
    assert lr_factor(355_100, 368_750, "step") == pytest.approx(0.01)
    assert lr_factor(0, 100, "poly") == 1.0 and lr_factor(50, 100, "poly") == pytest.approx(0.5 ** 0.9)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0, 10, "cosine")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, 6, seed=5, height=64, width=96)
    return CocoPanoptic(root / "panoptic.json")


def _tiny_model(dataset):
    cfg = tiny_config("resnet", num_classes=len(dataset.class_names))
    cfg = dataclasses.replace(cfg, thing_ids=dataset.thing_ids, class_names=dataset.class_names)
    cfg.backbone.norm = "BN"
    torch.manual_seed(0)
    return Mask2Former(cfg)


class _InterruptAfter:
    """A dataset that raises KeyboardInterrupt (as Ctrl-C would) once ``samples`` samples have been read."""

    def __init__(self, dataset, samples):
        self.dataset, self.left = dataset, samples

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.dataset[i]


def test_interrupt_and_resume_continue_exactly(tiny_data, tmp_path):
    """6 iterations in one go == 6 iterations interrupted during the 5th, resumed from the checkpoint at 3."""
    cfg = TrainConfig(iterations=6, batch_size=2, lr=1e-3, crop_height=64, crop_width=96, min_scale=0.5,
                      max_scale=1.5, num_points=64, checkpoint_every=3, log_every=1)
    straight = _tiny_model(tiny_data)
    train(straight, tiny_data, tmp_path / "a", cfg, progress=False)

    run = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        train(_tiny_model(tiny_data), _InterruptAfter(tiny_data, 9), run, cfg, progress=False)
    assert torch.load(run / "last.pth", weights_only=False)["iteration"] == 3 and not (run / "model.pth").exists()
    resumed = _tiny_model(tiny_data)
    train(resumed, tiny_data, run, cfg, resume=True, progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    final = torch.load(run / "model.pth", weights_only=True)["model"]
    assert all(torch.equal(final[k], v) for k, v in straight.state_dict().items())
    with pytest.raises(Exception, match="no .*last.pth to resume from"):
        train(_tiny_model(tiny_data), tiny_data, tmp_path / "empty", cfg, resume=True, progress=False)


def test_a_few_iterations_reduce_the_loss(tiny_data, tmp_path):
    model = _tiny_model(tiny_data)
    cfg = TrainConfig(iterations=30, batch_size=2, lr=1e-3, backbone_multiplier=1.0, crop_height=64, crop_width=96,
                      min_scale=0.8, max_scale=1.2, num_points=128, checkpoint_every=100, log_every=5)
    train(model, tiny_data, tmp_path, cfg, progress=False)
    log = [json.loads(line)["loss"] for line in (tmp_path / "loss_log.jsonl").read_text().splitlines()]
    assert np.mean(log[-2:]) < 0.9 * log[0], log


def test_progress_from_the_first_iteration_with_true_seconds(tiny_data, tmp_path):
    """Logged at iteration 1 and then every log_every; seconds per iteration are measured over the iterations since
    the previous line, so their sum matches the loop's wall time."""
    cfg = TrainConfig(iterations=7, batch_size=1, crop_height=64, crop_width=96, num_points=64, log_every=3)
    t0 = time.perf_counter()
    train(_tiny_model(tiny_data), tiny_data, tmp_path, cfg, progress=False)
    wall = time.perf_counter() - t0
    lines = [json.loads(line) for line in (tmp_path / "loss_log.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [1, 3, 6, 7]
    spent = sum(line["s_per_it"] * n for line, n in zip(lines, (1, 2, 3, 1)))
    assert 0 < spent <= wall


def test_training_checks_every_file_before_it_starts(tmp_path, capsys):
    from m2f.cli import main

    root = tmp_path / "data"
    generate(root, 3, seed=1, height=64, width=96)
    (root / "images" / "000001.png").unlink()
    (root / "panoptic" / "000002.png").write_bytes(b"truncated")
    assert main(["train", "--preset", "synthetic-r50-lite", "--data", str(root), "-o", str(tmp_path / "run"),
                 "--iters", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("m2f train: error: COCO panoptic images: ") and "000001.png does not exist" in err
    assert not (tmp_path / "run" / "last.pth").exists() and not (tmp_path / "run" / "loss_log.jsonl").exists()
    (root / "images" / "000001.png").write_bytes((root / "images" / "000000.png").read_bytes())
    assert main(["train", "--preset", "synthetic-r50-lite", "--data", str(root), "-o", str(tmp_path / "run"),
                 "--iters", "2"]) == 2
    assert "000002.png is not a readable image" in capsys.readouterr().err


def test_coco_instances_reader_polygons_and_rle(tmp_path):
    from PIL import Image
    from pycocotools import mask as mask_utils

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    square = np.zeros((20, 30), np.uint8)
    square[2:8, 3:9] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    data = {"images": [{"id": 7, "file_name": "a.png", "height": 20, "width": 30}],
            "categories": [{"id": 3, "name": "cat"}, {"id": 9, "name": "dog"}],
            "annotations": [
                {"image_id": 7, "category_id": 9, "iscrowd": 0,
                 "segmentation": [[10, 10, 20, 10, 20, 15, 10, 15]]},  # polygon
                {"image_id": 7, "category_id": 3, "iscrowd": 0,
                 "segmentation": {"size": [20, 30], "counts": rle["counts"].decode()}},
                {"image_id": 7, "category_id": 3, "iscrowd": 1,
                 "segmentation": {"size": [20, 30], "counts": rle["counts"].decode()}}]}
    (tmp_path / "instances.json").write_text(json.dumps(data))
    ds = open_dataset(tmp_path / "instances.json", image_dir=tmp_path)
    assert isinstance(ds, CocoInstances) and ds.class_names == ["cat", "dog"] and len(ds) == 1
    sample = ds[0]
    assert sample.labels.tolist() == [1, 0] and sample.isthing.all()
    assert np.array_equal(sample.masks[1], square.astype(bool))
    assert sample.masks[0, 10:15, 10:20].all() and not sample.masks[0, :9].any()


def test_open_dataset_errors(tmp_path):
    from m2f.errors import M2FError

    with pytest.raises(M2FError, match="do not exist"):
        open_dataset(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("not json")
    with pytest.raises(M2FError, match="is not a JSON file"):
        open_dataset(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"annotations": [{"foo": 1}]}))
    with pytest.raises(M2FError, match="neither COCO panoptic"):
        open_dataset(tmp_path / "y.json")
