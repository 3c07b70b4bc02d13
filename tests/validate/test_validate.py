"""m2f validate: a deliberately broken model is caught at the stage that was broken; the unchanged one passes;
scores equal the demo's scorer; the reports are written; a saved reference validates without torch."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch", reason="a PyTorch reference needs torch")

from m2f.cli import main  # noqa: E402
from m2f.export.onnx_export import ExportOptions, export_onnx  # noqa: E402

from ..runtime.conftest import confident_model  # noqa: E402

BROKEN_LAYER = 1  # decoder layer whose weight the broken model changes


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(checkpoint, unchanged ONNX with taps, broken ONNX with taps, folder of images)."""
    root = tmp_path_factory.mktemp("validate")
    model = confident_model()
    ckpt = root / "model.pth"
    torch.save({"model": model.state_dict(), "m2f_config": model.config.to_dict()}, ckpt)
    options = ExportOptions(height=96, width=160, taps=True)
    good = export_onnx(model, root / "good.onnx", options).path
    with torch.no_grad():  # one weight of one decoder layer
        model.sem_seg_head.predictor.transformer_ffn_layers[BROKEN_LAYER].linear2.weight[0, 0] += 2.0
    broken = export_onnx(model, root / "broken.onnx", options).path
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    for i, shape in enumerate([(90, 150, 3), (96, 120, 3), (70, 160, 3)]):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(images / f"{i}.png")
    return ckpt, good, broken, images


def test_broken_decoder_layer_is_named_and_fails(models, tmp_path, capsys):
    ckpt, good, broken, images = models
    out = tmp_path / "report"
    assert main(["validate", str(ckpt), str(broken), "--data", str(images), "--taps", "-o", str(out)]) == 1
    report = json.loads((out / "report.json").read_text())
    backend = report["backends"][0]
    assert backend["first_drift"] == f"decoder.layer{BROKEN_LAYER}" and not report["passed"]
    stages = [s["stage"] for s in backend["stages"]]
    assert stages[:8] == ["backbone.res2", "backbone.res3", "backbone.res4", "backbone.res5",
                          "pixel_decoder.level0", "pixel_decoder.level1", "pixel_decoder.level2",
                          "pixel_decoder.mask_features"]
    before = [s["drift"] for s in backend["stages"][:stages.index(f"decoder.layer{BROKEN_LAYER}")]]
    assert max(before) < backend["stage_tolerance"]
    assert any(c["failed"] and c["rule"].startswith("drift") for c in backend["checks"])
    text = capsys.readouterr().out
    assert f"first stage to drift: decoder.layer{BROKEN_LAYER}" in text and "FAILED drift>0.001" in text


def test_unchanged_model_passes(models, tmp_path):
    ckpt, good, broken, images = models
    out = tmp_path / "report"
    assert main(["validate", str(ckpt), str(good), "--data", str(images), "--taps", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    backend = report["backends"][0]
    assert report["passed"] and backend["first_drift"] is None and len(backend["stages"]) == 8 + 4
    assert backend["agreement_with_pytorch"]["semantic_pixels"] >= 0.999
    for name in ("report.md", "report.html"):
        assert (out / name).stat().st_size > 0
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 + 3  # histograms, drift plot, 3 worst-image triptychs


def test_fail_on_rules(models, tmp_path, capsys):
    ckpt, good, _, images = models
    # a threshold the unchanged model cannot meet: its outputs differ from PyTorch by float noise > 0
    assert main(["validate", str(ckpt), str(good), "--data", str(images), "-o", str(tmp_path),
                 "--fail-on", "max_abs>0"]) == 1
    assert "FAILED max_abs>0" in capsys.readouterr().out
    assert main(["validate", str(ckpt), str(good), "--data", str(images), "-o", str(tmp_path),
                 "--fail-on", "speed>3"]) == 2
    assert "is not METRIC>VALUE" in capsys.readouterr().err


def test_models_without_taps_are_refused_with_taps(models, tmp_path, capsys):
    ckpt, _, _, images = models
    plain = export_onnx(confident_model(), tmp_path / "plain.onnx", ExportOptions(height=96, width=160)).path
    assert main(["validate", str(ckpt), str(plain), "--data", str(images), "--taps", "-o", str(tmp_path)]) == 2
    assert "has no stage taps; export it with --taps" in capsys.readouterr().err


def test_saved_reference_validates_without_torch(models, tmp_path):
    ckpt, good, _, images = models
    saved = tmp_path / "ref.npz"
    assert main(["validate", str(ckpt), str(good), "--data", str(images), "--save-reference", str(saved),
                 "-o", str(tmp_path / "live")]) == 0
    live = json.loads((tmp_path / "live" / "report.json").read_text())["backends"][0]
    code = ("import sys; sys.modules['torch'] = None; from m2f.cli import main; "
            f"raise SystemExit(main(['validate', {str(saved)!r}, {str(good)!r}, '--data', {str(images)!r}, "
            f"'-o', {str(tmp_path / 'offline')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    offline = json.loads((tmp_path / "offline" / "report.json").read_text())["backends"][0]
    assert offline["agreement_with_pytorch"] == live["agreement_with_pytorch"]
    assert {n: o["max_abs"] for n, o in offline["outputs"].items()} == \
        {n: o["max_abs"] for n, o in live["outputs"].items()}


def test_scores_equal_the_demo_scorer(bundled_onnx):
    """validate's parity run on the held-out synthetic set gives the same PQ / AP / mIoU as scoring the PyTorch
    pipeline and the Predictor directly (the demo's former scorer)."""
    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS
    from m2f.model.checkpoint import load_checkpoint
    from m2f.runtime import Predictor
    from m2f.validate.data import open_images
    from m2f.validate.evaluate import evaluate_predictor, evaluate_pytorch
    from m2f.validate.parity import run_parity
    from m2f.validate.reference import LiveReference

    model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
    data = open_images("synthetic:12:1000")
    predictor = Predictor(bundled_onnx)
    report = run_parity(LiveReference(model), {"bundled": predictor}, data, "synthetic", tensor_images=2)
    direct_pytorch = evaluate_pytorch(model, data.dataset)
    direct_runtime = evaluate_predictor(predictor, data.dataset)
    for key in ("PQ", "AP", "mIoU"):
        assert report.backends[0].reference_scores[key] == pytest.approx(direct_pytorch[key], abs=0.01)
        assert report.backends[0].scores[key] == pytest.approx(direct_runtime[key], abs=0.01)
    assert report.passed and report.backends[0].outputs["pred_masks"].max_abs < 1e-3
