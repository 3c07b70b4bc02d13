"""The m2f command line: inspect, presets, demo, and one-sentence errors."""
import importlib.util
import json

import pytest

pytest.importorskip("torch", reason="the model commands need PyTorch (pip install m2f[model])")

from m2f.cli import main  # noqa: E402
from m2f.model.checkpoint_io import save_detectron2_pkl  # noqa: E402

from .model.helpers import random_model, tiny_config  # noqa: E402


@pytest.fixture
def checkpoint(tmp_path):
    model = random_model(tiny_config("swin", num_classes=8))
    return save_detectron2_pkl(model.state_dict(), tmp_path / "model_final.pkl"), model


def test_inspect_text(checkpoint, capsys):
    path, model = checkpoint
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    n = sum(p.numel() for p in model.parameters())
    assert "(detectron2-pkl)" in out and "Swin (embed 16, depths [1, 2, 1, 1]" in out
    assert "classes (K)  8 " in out and "queries (Q)  8" in out and f"{n / 1e6:.2f} M" in out


def test_inspect_json(checkpoint, capsys):
    path, model = checkpoint
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_classes"] == 8 and info["num_queries"] == 8 and info["decoder_layers"] == 3
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["format"] == "detectron2-pkl" and info["unused_keys"] == []


def test_inspect_wrong_preset_is_one_sentence(checkpoint, capsys):
    path, _ = checkpoint
    assert main(["inspect", str(path), "--preset", "coco-panoptic-r50"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("m2f inspect: error: model_final.pkl does not fit preset coco-panoptic-r50")
    assert err.count("\n") == 1 and "8 classes where the config has 133" in err


def test_inspect_missing_file(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "none.pkl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_presets_lists_zoo(capsys):
    assert main(["presets"]) == 0
    names = capsys.readouterr().out.split()
    assert "coco-panoptic-r50" in names and "cityscapes-instance-swin-l" in names


def test_demo_scores_the_bundled_model(tmp_path, capsys):
    """The README's main job: the bundled model reaches PQ >= 60 on held-out synthetic images, and ONNX Runtime
    scores within 0.1 PQ of PyTorch (on 30 of the demo's 100 images, to keep the suite short)."""
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--held-out", "30"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["preset"] == "synthetic-r50-lite" and summary["held_out"]["images"] == 30
    assert summary["pytorch"]["PQ"] >= 60, summary["pytorch"]
    assert abs(summary["onnxruntime"]["PQ"] - summary["pytorch"]["PQ"]) <= 0.1
    assert summary["pytorch"]["AP"] > 30 and summary["pytorch"]["mIoU"] > 80
    assert summary["max_abs_error_vs_pytorch"]["onnxruntime"] < 1e-3
    if importlib.util.find_spec("tensorrt") is None:  # no TensorRT: no TensorRT scores, and the summary says why
        assert "tensorrt" not in summary and "TensorRT" in summary["tensorrt_skipped"]
        assert "not installed" in summary["tensorrt_skipped"]
    elif not __import__("torch").cuda.is_available():
        assert "tensorrt" not in summary and "GPU" in summary["tensorrt_skipped"]
    else:
        assert "tensorrt_skipped" not in summary and summary["tensorrt"]["PQ"] > 0
    for name in ("sample-0.png", "sample-0.panoptic.png", "sample-0.segments.json", "sample-0.semantic.png",
                 "sample-0.overlay.png", "sample-2.overlay.png", "instances.json", "synthetic-r50-lite.onnx"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*tmp*"))
    assert "look at" in capsys.readouterr().out
    # the sample pictures the demo points users to are right: their written panoptic results, scored here against
    # the samples' ground truth (COCO panoptic; category ids are the dataset's, as in the written segments)
    assert _samples_pq(out) == pytest.approx(summary["samples"]["scores"]["PQ"], abs=0.01)
    assert summary["samples"]["scores"]["PQ"] >= 70
    instances = json.loads((out / "instances.json").read_text())
    assert {r["image_id"] for r in instances} == {0, 1, 2} and {r["category_id"] for r in instances} <= set(range(1, 6))


def _read_panoptic_png(path):
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(path)).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _samples_pq(out) -> float:
    from m2f.assets import SAMPLES, sample_annotations
    from m2f.validate.metrics import PanopticQuality

    gt = json.loads(sample_annotations().read_text())
    pq = PanopticQuality()
    for i, ann in enumerate(gt["annotations"]):
        pred = json.loads((out / f"sample-{i}.segments.json").read_text())["segments_info"]
        pq.add(_read_panoptic_png(SAMPLES / "panoptic" / ann["file_name"]), ann["segments_info"],
               _read_panoptic_png(out / f"sample-{i}.panoptic.png"), pred)
    return pq.result([c["id"] for c in gt["categories"] if c["isthing"]])["all"]["PQ"]


def test_train_command_end_to_end(tmp_path, capsys):
    """m2f synthetic -> m2f train (2 iterations) -> model.pth that the checkpoint loader reads, and --eval scores."""
    from m2f.model.checkpoint import load_checkpoint

    assert main(["synthetic", "-o", str(tmp_path / "data"), "-n", "4", "--seed", "3"]) == 0
    assert main(["train", "--preset", "synthetic-r50-lite", "--data", str(tmp_path / "data"), "-o",
                 str(tmp_path / "run"), "--iters", "2", "--batch-size", "1", "--points", "256",
                 "--eval", str(tmp_path / "data" / "panoptic.json")]) == 0
    out = capsys.readouterr().out
    assert "training synthetic-r50-lite on 4 images (8 classes)" in out
    scores = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert scores["images"] == 4 and {"PQ", "AP", "mIoU"} <= set(scores)
    model = load_checkpoint(tmp_path / "run" / "model.pth")  # the config travels inside
    assert model.load_report.config_source == "the config saved in the checkpoint"
    assert model.config.class_names[:2] == ["circle", "square"] and model.config.thing_ids == [0, 1, 2, 3, 4]
    assert main(["train", "--preset", "synthetic-r50-lite", "--data", str(tmp_path / "nothing"), "-o",
                 str(tmp_path / "run2")]) == 2
    assert "do not exist" in capsys.readouterr().err


def test_demo_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "-o", str(blocker / "sub")]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
