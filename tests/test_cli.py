"""The m2f command line: inspect, presets, demo, and one-sentence errors."""
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


def test_demo_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "demo-tiny" and summary["image_size"] == [360, 480]
    assert summary["agreement"]["max_abs_error_raw_outputs"] < 1e-4
    assert summary["agreement"]["semantic_pixels_equal"] >= 0.999
    for name in ("input.png", "demo.panoptic.png", "demo.segments.json", "demo.semantic.png", "demo.overlay.png",
                 "instances.json", "demo-tiny.pkl", "demo-tiny.onnx"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*tmp*"))
    assert "look at" in capsys.readouterr().out


def test_demo_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "-o", str(blocker / "sub")]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
