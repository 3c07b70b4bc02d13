"""ONNX export (portable flavor) vs PyTorch in ONNX Runtime: static and dynamic, ResNet and Swin, batch 1 and 2,
uint8 and float inputs, images smaller than the canvas, and a HuggingFace directory against HF's own forward."""
import numpy as np
import onnx
import pytest
import torch

from m2f.export.onnx_export import ExportOptions, export_onnx
from m2f.contract import KEY, parse
from m2f.validate.compare import TOLERANCES

from ..model.helpers import random_model, tiny_config
from .helpers import detectron2_padded, random_batch, session

TOL = TOLERANCES["model_fp32_max_abs"]


def _check(model, path, n, height, width, valid, seed=0):
    image, valid = random_batch(n, height, width, valid, seed)
    logits, masks = session(path).run(None, {"image": image, "valid_size": valid})
    with torch.no_grad():
        ref = model(detectron2_padded(model, image, valid))
    np.testing.assert_allclose(logits, ref["pred_logits"].numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(masks, ref["pred_masks"].numpy(), atol=TOL, rtol=0)


@pytest.fixture(scope="module", params=["resnet", "swin"])
def dynamic_export(request, tmp_path_factory):
    model = random_model(tiny_config(request.param))
    path = tmp_path_factory.mktemp("dyn") / f"{request.param}.onnx"
    export_onnx(model, path, ExportOptions(dynamic=True, height=None, width=None))
    return model, path


@pytest.mark.parametrize("n,height,width,valid", [
    (1, 96, 160, [[96, 150]]),  # non-square, width smaller than the canvas
    (2, 160, 64, [[160, 64], [131, 40]]),  # batch 2, different valid sizes per image
    (1, 224, 96, [[200, 96]]),
])
def test_dynamic_at_untraced_sizes(dynamic_export, n, height, width, valid):
    model, path = dynamic_export
    _check(model, path, n, height, width, valid)


def test_dynamic_graph_declares_symbolic_io(dynamic_export):
    model, path = dynamic_export
    proto = onnx.load(str(path))
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(proto.graph.input) + list(proto.graph.output)}
    q, k1 = model.config.num_queries, model.config.num_classes + 1
    assert dims == {"image": ["batch", "height", "width", 3], "valid_size": ["batch", 2],
                    "pred_logits": ["batch", q, k1], "pred_masks": ["batch", q, "height/4", "width/4"]}
    ops = {n.op_type for n in proto.graph.node}
    assert "GridSample" not in ops and "If" not in ops and "Loop" not in ops
    assert proto.ir_version <= 10 and proto.opset_import[0].version == 17


@pytest.mark.parametrize("kind", ["resnet", "swin"])
def test_static_batch2(kind, tmp_path):
    model = random_model(tiny_config(kind), seed=1)
    path = export_onnx(model, tmp_path / "s.onnx", ExportOptions(height=64, width=96, batch=2)).path
    _check(model, path, 2, 64, 96, [[64, 96], [50, 70]])
    meta = parse(next(p.value for p in onnx.load(str(path)).metadata_props if p.key == KEY), "s.onnx")
    assert meta.input.shape == (2, 64, 96, 3) and meta.num_queries == model.config.num_queries


@pytest.mark.parametrize("kind,dynamic", [("resnet", False), pytest.param("swin", True, marks=pytest.mark.slow)])
def test_float_input(kind, dynamic, tmp_path):
    model = random_model(tiny_config(kind), seed=2)
    options = ExportOptions(input="float", dynamic=dynamic, height=None if dynamic else 96,
                            width=None if dynamic else 64)
    path = export_onnx(model, tmp_path / "f.onnx", options).path
    sess = session(path)
    assert [i.name for i in sess.get_inputs()] == ["pixel_values"]
    for n, h, w in ([(1, 96, 64)] if not dynamic else [(1, 64, 128), (2, 128, 96)]):
        x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(h))
        logits, masks = sess.run(None, {"pixel_values": x.numpy()})
        with torch.no_grad():
            ref = model(x)
        np.testing.assert_allclose(logits, ref["pred_logits"].numpy(), atol=TOL, rtol=0)
        np.testing.assert_allclose(masks, ref["pred_masks"].numpy(), atol=TOL, rtol=0)


def test_empty_masks_stay_finite(tmp_path):
    """Every mask logit negative -> every attention row fully blocked at every level: no NaN in ONNX Runtime."""
    model = random_model(tiny_config("swin"), seed=3)
    with torch.no_grad():
        pd, pred = model.sem_seg_head.pixel_decoder, model.sem_seg_head.predictor
        pd.mask_features.weight.zero_()
        pd.mask_features.bias.zero_()[0] = 1.0
        pred.mask_embed.layers[2].weight.zero_()
        pred.mask_embed.layers[2].bias.zero_()[0] = -50.0
    path = export_onnx(model, tmp_path / "e.onnx", ExportOptions(height=64, width=96)).path
    image, valid = random_batch(1, 64, 96, [[64, 96]])
    logits, masks = session(path).run(None, {"image": image, "valid_size": valid})
    assert np.isfinite(logits).all() and np.isfinite(masks).all() and (masks < 0).all()
    _check(model, path, 1, 64, 96, [[64, 96]])


def test_huggingface_directory_float_input(tmp_path):
    pytest.importorskip("transformers", reason="transformers is a test dependency")
    from m2f.model.checkpoint import load_checkpoint

    from ..model.test_hf_parity import CONFIGS, _save_random_hf

    hf_model = _save_random_hf(tmp_path / "hf", CONFIGS["swin-w3-prenorm"])
    model = load_checkpoint(tmp_path / "hf")
    path = export_onnx(model, tmp_path / "hf.onnx", ExportOptions(input="float", dynamic=True)).path
    sess = session(path)
    for h, w in ((64, 96), (128, 64)):
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(w))
        logits, masks = sess.run(None, {"pixel_values": x.numpy()})
        with torch.no_grad():
            ref = hf_model(pixel_values=x)
        np.testing.assert_allclose(logits, ref.class_queries_logits.numpy(), atol=TOL, rtol=0)
        np.testing.assert_allclose(masks, ref.masks_queries_logits.numpy(), atol=TOL, rtol=0)


@pytest.mark.slow
def test_r50_coco_panoptic_at_800x1344(tmp_path):
    """The full-size R50 preset (random weights) exports at its default canvas and runs in ONNX Runtime."""
    from m2f.model.mask2former import Mask2Former
    from m2f.model.presets import get_preset

    torch.manual_seed(0)
    model = Mask2Former(get_preset("coco-panoptic-r50")).eval()
    summary = export_onnx(model, tmp_path / "r50.onnx", ExportOptions())
    assert summary.inputs[0] == ("image", "uint8", [1, 800, 1344, 3])
    image, valid = random_batch(1, 800, 1344, [[800, 1333]])
    logits, masks = session(summary.path).run(None, {"image": image, "valid_size": valid})
    assert logits.shape == (1, 100, 134) and masks.shape == (1, 100, 200, 336)
    with torch.no_grad():
        ref = model(detectron2_padded(model, image, valid))
    # full-size random R50: float32 summation-order noise reaches a few 1e-4 on large activations (docs/model.md §4.1)
    np.testing.assert_allclose(logits, ref["pred_logits"].numpy(), atol=2e-3, rtol=0)
    np.testing.assert_allclose(masks, ref["pred_masks"].numpy(), atol=2e-3, rtol=0)
