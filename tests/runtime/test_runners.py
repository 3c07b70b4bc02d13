"""The one runner interface (Polygraphy's habits) for ONNX Runtime and PyTorch: context manager, input metadata,
infer, last inference time; the same feeds give the same outputs."""
import numpy as np
import pytest

from m2f.errors import ArgumentError
from m2f.runtime.backends import open_backend


def _feeds(batch=1, h=96, w=160):
    rng = np.random.default_rng(0)
    return {"image": rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8),
            "valid_size": np.array([[h, w]] * batch, np.int32)}


def test_onnxruntime_runner(exported):
    with open_backend(exported[1]) as runner:
        assert runner.input_metadata() == {"image": ("uint8", ["batch", "height", "width", 3]),
                                           "valid_size": ("int32", ["batch", 2])}
        assert runner.last_inference_time() is None
        out = runner.infer(_feeds())
        assert set(out) == {"pred_logits", "pred_masks"} and runner.last_inference_time() > 0
        with pytest.raises(ArgumentError, match="needs the input"):
            runner.infer({"image": _feeds()["image"]})
    assert runner.closed


def test_pytorch_runner_has_the_same_interface_and_outputs(exported):
    pytest.importorskip("torch")
    from m2f.validate.compare import TOLERANCES
    from m2f.validate.reference import PyTorchRunner

    model, path = exported
    feeds = _feeds(batch=2)
    with PyTorchRunner(model) as reference, open_backend(path) as onnx:
        assert reference.input_metadata() == onnx.input_metadata()
        ref, got = reference.infer(feeds), onnx.infer(feeds)
        assert reference.output_names == onnx.output_names
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], atol=TOLERANCES["model_fp32_max_abs"], rtol=0)
