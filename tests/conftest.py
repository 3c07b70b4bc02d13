"""Markers: ``gpu`` and ``trt`` tests skip with a stated reason when the machine lacks them, and FAIL instead when
M2F_REQUIRE names them (e.g. M2F_REQUIRE=gpu,trt on a GPU machine), so a skip is never mistaken for a pass."""
import importlib.util
import os

import pytest

from m2f import testing

# Without a GPU the Triton kernels are checked in Triton's interpreter, which must be chosen before Triton is first
# imported (test modules import the plugins, which import Triton). With a GPU they run compiled.
if not testing.has_gpu()[0]:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The suite runs in one process per core (pytest-xdist, pyproject's addopts): each takes one thread, so that torch and
# ONNX Runtime never wait on a core the other worker holds (m2f.threads explains the cost).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("M2F_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)

_CHECKS = {"gpu": testing.has_gpu, "trt": testing.has_tensorrt}


def require_capability(name: str) -> None:
    """Skip (or fail, when M2F_REQUIRE names it) unless the machine has ``name`` ("gpu" or "trt"); for fixtures of a
    wider scope, which run before the per-test check below."""
    ok, reason = _CHECKS[name]()
    if not ok:
        if name in testing.required():
            pytest.fail(f"M2F_REQUIRE={name} but {reason}")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _required_capabilities(request):
    for name in _CHECKS:
        if request.node.get_closest_marker(name) is not None:
            require_capability(name)


@pytest.fixture(scope="session")
def bundled_onnx(tmp_path_factory):
    """The bundled default model exported as the demo exports it (uint8 input, static 192x256 canvas)."""
    pytest.importorskip("torch", reason="exporting needs PyTorch")
    from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS
    from m2f.export.onnx_export import ExportOptions, export_onnx
    from m2f.model.checkpoint import load_checkpoint

    model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
    path = tmp_path_factory.mktemp("bundled") / "bundled.onnx"
    return export_onnx(model, path, ExportOptions(height=192, width=256), source={"name": DEFAULT_WEIGHTS.name}).path
