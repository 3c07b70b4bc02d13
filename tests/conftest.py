"""Markers: ``gpu`` and ``trt`` tests skip with a stated reason when the machine lacks them, and FAIL instead when
M2F_REQUIRE names them (e.g. M2F_REQUIRE=gpu,trt on a GPU machine), so a skip is never mistaken for a pass."""
import fcntl
import importlib.util
import os
import pickle
import shutil
from pathlib import Path

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


def built_once(tmp_path_factory, name: str, build):
    """``build(folder)``'s value, built once per test run however many xdist workers ask: the first builds into a
    folder of the run's shared temporary root under a lock, the others wait for it and read the pickled value."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = root / f"built-{name}", root / f"built-{name}.pickle"
    with open(root / f"built-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            done.write_bytes(pickle.dumps(build(folder)))
        return pickle.loads(done.read_bytes())


@pytest.fixture(scope="session")
def bundled_onnx(tmp_path_factory):
    """The bundled default model exported as the demo exports it (uint8 input, static 192x256 canvas)."""
    pytest.importorskip("torch", reason="exporting needs PyTorch")

    def export(folder):
        from m2f.assets import DEFAULT_PRESET, DEFAULT_WEIGHTS
        from m2f.export.onnx_export import ExportOptions, export_onnx
        from m2f.model.checkpoint import load_checkpoint

        model = load_checkpoint(DEFAULT_WEIGHTS, preset=DEFAULT_PRESET)
        return export_onnx(model, folder / "bundled.onnx", ExportOptions(height=192, width=256),
                           source={"name": DEFAULT_WEIGHTS.name}).path

    return built_once(tmp_path_factory, "bundled", export)


# ---- TensorRT headers and the plugin library (the plugin, conformance and GPU tests share them) --------------------

CI_HEADERS = Path(__file__).resolve().parents[1].parent / "shared" / "third_party" / "tensorrt"


def tensorrt_header_sets() -> tuple[dict[str, Path], str]:
    """({TensorRT version: include folder}, where they came from): the sets in $M2F_TENSORRT_HEADERS
    (<version>/include each), else the TensorRT headers a user has (m2f.plugins.build's search: --tensorrt-include's
    places), else the 10.3 / 10.16 / 11.1 sets CI provides beside the repository; ({}, what was looked for) when
    none is found."""
    from m2f.errors import ArgumentError
    from m2f.plugins.build import find_tensorrt_include, header_version

    def sets_in(folder: Path) -> dict[str, Path]:
        if not folder.is_dir():
            return {}
        return {d.name: d / "include" for d in sorted(folder.iterdir())
                if (d / "include" / "NvInferRuntime.h").exists()}

    if os.environ.get("M2F_TENSORRT_HEADERS"):
        folder = Path(os.environ["M2F_TENSORRT_HEADERS"])
        return sets_in(folder), f"$M2F_TENSORRT_HEADERS ({folder})"
    try:
        include = find_tensorrt_include(None)
        version = header_version(include)
        return {".".join(version.split(".")[:2]): include}, f"this machine's TensorRT ({include})"
    except ArgumentError as e:
        looked = str(e).split(";")[0]
    found = sets_in(CI_HEADERS)
    return found, f"the header sets beside the repository ({CI_HEADERS})" if found else \
        f"{looked}, nor beside the repository in {CI_HEADERS}"


def pytest_report_header(config):
    sets, where = tensorrt_header_sets()
    return f"TensorRT headers: {', '.join(sets) or 'none'} from {where}"


@pytest.fixture(scope="session")
def header_sets():
    """{TensorRT version: include folder}; the tests that need them skip, naming what was looked for, without."""
    sets, where = tensorrt_header_sets()
    if not sets:
        pytest.skip(f"no TensorRT headers: {where} (set M2F_TENSORRT_HEADERS)")
    return sets


@pytest.fixture(scope="session")
def built_kernels(tmp_path_factory):
    """(folder, manifest) of the AOT kernels for sm_87 and sm_90, built once for every plugin test."""
    pytest.importorskip("triton", reason="Triton is not installed (pip install m2f[kernels])")
    from m2f.plugins.aot import build_kernels

    return built_once(tmp_path_factory, "kernels", lambda out: (out, build_kernels(out, archs=(87, 90))))


@pytest.fixture(scope="session")
def plugin_libraries(built_kernels, header_sets, tmp_path_factory):
    """{header version: libm2f_plugins.so} built against each header set by direct compiler calls (the CMake path
    has its own test)."""
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler (g++)")
    from m2f.plugins.build import build_library

    kernels, _ = built_kernels

    def build(folder):
        return {v: build_library(folder / f"trt{v}", (87, 90), str(include), kernels=kernels, use_cmake=False)
                for v, include in header_sets.items()}

    return built_once(tmp_path_factory, f"plugins-{'-'.join(sorted(header_sets))}", build)
