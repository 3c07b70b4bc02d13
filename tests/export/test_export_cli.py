"""m2f export / m2f inspect on ONNX: progress and summary, metadata, and one-sentence errors with no partial file."""
import json

import onnx
import pytest

from m2f.cli import main
from m2f.export.onnx_export import ExportOptions, export_onnx
from m2f.model.checkpoint_io import save_detectron2_pkl

from ..model.helpers import random_model, tiny_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = random_model(tiny_config("swin", num_classes=133))  # 133 classes: COCO-panoptic metadata is inferred
    return save_detectron2_pkl(model.state_dict(), tmp_path_factory.mktemp("ckpt") / "model_final.pkl")


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", str(checkpoint), "-o", str(out), "--height", "64", "--width", "96"]) == 0
    return out


def test_export_writes_model_and_metadata(exported, checkpoint):
    import hashlib

    proto = onnx.load(str(exported))
    meta = json.loads(next(p.value for p in proto.metadata_props if p.key == "m2f"))
    assert meta["source"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert meta["input"]["shape"] == [1, 64, 96, 3] and meta["op_flavor"] == "portable"
    assert meta["num_classes"] == 133 and meta["class_names"][0] == "person" and meta["thing_ids"] == list(range(80))
    assert meta["category_ids"][:3] == [1, 2, 3] and meta["category_ids"][-1] == 200  # COCO's own ids
    assert meta["tasks"] == ["semantic", "instance", "panoptic"]
    assert meta["resize"] == {"short": 800, "max": 1333, "interpolation": "bilinear"}
    assert not list(exported.parent.glob(".*tmp"))


def test_inspect_onnx(exported, capsys):
    assert main(["inspect", str(exported)]) == 0
    out = capsys.readouterr().out
    assert "image uint8 [1, 64, 96, 3]" in out and "pred_masks float [1, 8, 16, 24]" in out
    assert "portable ops" in out and "133 classes (80 things)" in out
    assert main(["inspect", str(exported), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["nodes"] == sum(info["op_counts"].values()) and info["metadata"]["opset"] == 17


def test_export_summary_and_progress(checkpoint, tmp_path, capsys):
    out = tmp_path / "dyn.onnx"
    assert main(["export", str(checkpoint), "-o", str(out), "--dynamic", "--head", "panoptic"]) == 0
    text = capsys.readouterr().out
    for line in ("[1/4] tracing", "[2/4] cleaning up", "[3/4]", "[4/4] writing", "next: m2f inspect"):
        assert line in text
    assert "pan_ids int32 [batch, height, width]" in text


@pytest.mark.parametrize("args,message", [
    (["--height", "100", "--width", "96"], "canvas 100x96 is not a positive multiple of 32"),
    (["--dynamic", "--height", "64"], "--dynamic makes batch, height and width symbolic"),
    (["--dynamic", "--batch", "2"], "give it without --batch"),
    (["--square", "--height", "64"], "either --square or --height/--width"),
    (["--preset", "coco-panoptic-r50"], "does not fit preset coco-panoptic-r50"),
    (["--precision", "fp16", "--data", "/no/such/images"], "--data /no/such/images does not exist"),
    (["--thing-classes", "1,zeppelin"], "'zeppelin' is neither a class name of this model nor an id below"),
])
def test_export_errors_are_one_sentence(checkpoint, tmp_path, capsys, args, message):
    out = tmp_path / "bad.onnx"
    assert main(["export", str(checkpoint), "-o", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_export_flavor_cli(checkpoint, tmp_path, capsys):
    """--flavor trt-builtin --trt-version 10.16: the plugin line, then inspect --trt-compat passes (exit 0)."""
    out = tmp_path / "tb.onnx"
    assert main(["export", str(checkpoint), "-o", str(out), "--height", "64", "--width", "96", "--flavor",
                 "trt-builtin", "--trt-version", "10.16"]) == 0
    text = capsys.readouterr().out
    assert "trt-builtin ops" in text and "MultiscaleDeformableAttnPlugin_TRT v2 (TensorRT's libnvinfer_plugin); " \
        "TensorRT >= 10.11" in text and "next: m2f inspect --trt-compat" in text
    assert main(["inspect", str(out), "--trt-compat"]) == 0
    assert "every node is in TensorRT's ONNX-parser operator matrix" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--flavor", "fast"], "invalid choice: 'fast'"),
    (["--trt-version", "8.6"], "'8.6' is not a TensorRT version from 10.0 on"),
])
def test_flavor_options_are_checked_while_parsing(checkpoint, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(checkpoint), "-o", str(tmp_path / "x.onnx"), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_trt_compat_needs_an_onnx_file(checkpoint, capsys):
    assert main(["inspect", str(checkpoint), "--trt-compat"]) == 2
    assert "--trt-compat checks an exported .onnx file" in capsys.readouterr().err


def test_output_is_checked_before_the_checkpoint_is_loaded(tmp_path, capsys):
    """An output path that is a folder is refused at once (the checkpoint here does not even exist)."""
    assert main(["export", str(tmp_path / "missing.pkl"), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is an existing folder" in err and "missing.pkl" not in err and err.count("\n") == 1


def test_square_canvas_takes_both_orientations(tmp_path):
    """--square: the long test side both ways (test size 96/160 -> a 160x160 canvas), so a portrait image runs at
    the reference scale where the landscape default (96x160) would shrink it."""
    import numpy as np

    from m2f.runtime import Predictor

    from ..runtime.conftest import confident_model

    summary = export_onnx(confident_model(), tmp_path / "sq.onnx", ExportOptions(square=True))
    assert summary.inputs[0] == ("image", "uint8", [1, 160, 160, 3])
    portrait = Predictor(summary.path).predict(np.zeros((150, 100, 3), np.uint8))
    assert portrait.input_size == (144, 96) and portrait.fit_scale == 1.0


def test_unwritable_output(checkpoint, tmp_path, capsys):
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "missing" / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "the folder" in err and "does not exist" in err
    blocked = tmp_path / "ro"
    blocked.mkdir()
    blocked.chmod(0o500)
    try:
        import os

        if os.access(blocked, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: a read-only folder is still writable")
        assert main(["export", str(checkpoint), "-o", str(blocked / "m.onnx")]) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        blocked.chmod(0o700)


def test_failure_mid_export_leaves_nothing(tmp_path, monkeypatch):
    """A failure after tracing has started removes the temporary file and writes no output."""
    import m2f.export.onnx_export as onnx_export

    def boom(proto, static):
        raise RuntimeError("simulated clean-up failure")

    monkeypatch.setattr(onnx_export, "_simplify", boom)
    model = random_model(tiny_config("resnet"))
    with pytest.raises(RuntimeError, match="simulated"):
        export_onnx(model, tmp_path / "m.onnx", ExportOptions(height=64, width=64))
    assert list(tmp_path.iterdir()) == []


def test_inspect_foreign_onnx(tmp_path, capsys):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert main(["inspect", str(path)]) == 2
    assert "carries no m2f metadata" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01garbage")
    assert main(["inspect", str(tmp_path / "junk.onnx")]) == 2
    assert "junk.onnx is not an ONNX model (its bytes do not parse)" in capsys.readouterr().err
