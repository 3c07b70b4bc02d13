"""The TensorRT engine runner vs ONNX Runtime on the same ONNX file (needs a GPU and TensorRT: skipped here with the
reason; M2F_REQUIRE=gpu,trt makes the skip a failure on a machine that should have them)."""

import numpy as np
import pytest

from m2f.runtime import Predictor


@pytest.mark.gpu
@pytest.mark.trt
def test_engine_matches_onnxruntime(tmp_path):
    from m2f.calib.engine import BuildOptions, build
    from m2f.export.onnx_export import ExportOptions, export_onnx

    from .conftest import confident_model

    model = confident_model()
    onnx_path = export_onnx(model, tmp_path / "m.onnx", ExportOptions(height=96, width=160)).path
    engine = tmp_path / "m.engine"
    build(onnx_path, engine, BuildOptions())  # m2f build's own code: the engine and its sidecar
    image = np.random.default_rng(0).integers(0, 256, (90, 150, 3), dtype=np.uint8)
    ref = Predictor(onnx_path, providers=["CPUExecutionProvider"]).predict(image)
    got = Predictor(engine).predict(image)
    assert (got.semantic == ref.semantic).mean() >= 0.999
    assert [(s.category_id, s.isthing) for s in got.segments] == [(s.category_id, s.isthing) for s in ref.segments]
    # a second run replays the CUDA graph of the static engine and must give the same answer
    again = Predictor(engine)
    first, second = again.predict(image), again.predict(image)
    assert np.array_equal(first.panoptic, second.panoptic)


def test_engine_of_another_tensorrt_or_gpu_is_refused_by_name():
    """The sidecar check, without TensorRT: the version (major.minor) and the GPU's compute capability."""
    from m2f.contract import EngineInfo, FileRecord
    from m2f.errors import BackendError
    from m2f.runtime.backends.tensorrt_backend import check_built_for

    meta = EngineInfo(version="10.3.0.30", gpu="Orin", compute_capability="8.7", strongly_typed=True, builder_flags=(),
                      profiles={}, flavor="portable", plugins=(), onnx=FileRecord("m.onnx", "0" * 64))
    check_built_for(meta, "m.engine", "10.3.0.26", ("Orin", "8.7"))  # a patch release differs: fine
    with pytest.raises(BackendError, match=r"built with TensorRT 10\.3\.0\.30 but this is TensorRT 11\.1\.0"):
        check_built_for(meta, "m.engine", "11.1.0", ("Orin", "8.7"))
    with pytest.raises(BackendError, match=r"built for Orin \(compute capability 8\.7\) but this is NVIDIA H200 "
                                           r"\(9\.0\)"):
        check_built_for(meta, "m.engine", "10.3.1", ("NVIDIA H200", "9.0"))
