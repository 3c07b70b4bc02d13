"""``m2f doctor``: on this machine (no GPU, no TensorRT) it runs and names what is missing; its checks of a plugin
library, an engine sidecar and cuda-python are checked against stated machines (m2f.runtime.doctor.Driver values,
as libcuda would report them) -- the rules they apply are the plugin runtime's (m2f_kernels.h) and the TensorRT
runner's, stated again here as expectations, not imported."""
from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from m2f import contract
from m2f.runtime import doctor

V1 = Path(__file__).parents[1] / "data" / "metadata_v1.json"
ORIN = doctor.Driver(12060, "Orin", "8.7", None)  # JetPack 6: CUDA 12.6 driver
H200 = doctor.Driver(13000, "NVIDIA H200", "9.0", None)
TURING = doctor.Driver(12020, "Tesla T4", "7.5", None)
NO_GPU = doctor.Driver(None, None, None, "no NVIDIA driver: libcuda.so.1 is not installed")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="this machine has TensorRT")
def test_doctor_runs_here_and_names_each_missing_piece_with_a_fix():
    run = subprocess.run([sys.executable, "-m", "m2f", "doctor"], capture_output=True, text=True, timeout=120)
    lines = run.stdout.splitlines()
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr == ""
    assert any(line.startswith("ok ") and "Python" in line for line in lines)
    missing = [line.split()[1] for line in lines if line.startswith("FIX")]
    assert "TensorRT" in missing
    # each FIX line is followed by the fix
    for i, line in enumerate(lines):
        if line.startswith("FIX"):
            assert lines[i + 1].lstrip().startswith("-> ") and len(lines[i + 1]) > 20
    assert lines[-1] == f"{len([x for x in lines if x.startswith('FIX')])} thing(s) to fix"


def _library(tmp_path: Path, tensorrt: str, archs: str) -> Path:
    """A file carrying m2f's build record the way libm2f_plugins.so does (its M2F_PLUGINS_BUILD string)."""
    path = tmp_path / "libm2f_plugins.so"
    path.write_bytes(b"\x7fELF..." + f"M2F_PLUGINS_BUILD tensorrt={tensorrt} archs={archs}\0".encode() + b"...")
    return path


@pytest.mark.parametrize("archs, driver, fits", [
    ("80,86,87,89,90", ORIN, True),   # its own cubin
    ("80", ORIN, True),               # sm_80 cubin runs on sm_87 (same major, lower minor)
    ("87", doctor.Driver(12020, "RTX A6000", "8.6", None), False),  # sm_87 cubin: not on sm_86, no older PTX
    ("80,86", H200, True),            # the PTX of sm_86 JIT-compiles on sm_90
    ("90", ORIN, False),
    ("80,86", TURING, False),
])
def test_plugin_library_kernels_fit_the_gpu(tmp_path, archs, driver, fits):
    finding = doctor.check_plugin_library(_library(tmp_path, "10.3.0", archs), "10.3.0.30", driver)
    assert finding.ok is fits
    assert f"sm_{archs.split(',')[0]}" in finding.found
    if not fits:
        arch = driver.compute_capability.replace(".", "")
        assert f"m2f plugins build --arch {arch}" in finding.fix


def test_plugin_library_of_another_tensorrt_major(tmp_path):
    library = _library(tmp_path, "11.1.0", "87")
    finding = doctor.check_plugin_library(library, "10.3.0.30", ORIN)
    assert not finding.ok and "TensorRT 11.1.0 headers" in finding.fix and "TensorRT 10.3.0.30" in finding.fix
    assert doctor.check_plugin_library(library, "11.4.0", ORIN).ok
    assert doctor.check_plugin_library(library, None, NO_GPU).ok  # nothing here to compare with
    missing = doctor.check_plugin_library(tmp_path / "nope.so", None, NO_GPU)
    assert not missing.ok and "m2f plugins build" in missing.fix


def _engine(tmp_path: Path, version: str, gpu: str, capability: str) -> Path:
    record = contract.EngineInfo(version=version, gpu=gpu, compute_capability=capability, strongly_typed=True,
                                 builder_flags=(), profiles={}, flavor="m2f", plugins=(),
                                 onnx=contract.FileRecord("m.onnx", "0" * 64))
    meta = dataclasses.replace(contract.parse(V1.read_text(), "m.onnx"), tensorrt=record)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    contract.sidecar_path(engine).write_text(meta.to_json())
    return engine


def test_engine_fits_the_tensorrt_and_the_gpu_it_was_built_for(tmp_path):
    engine = _engine(tmp_path, "10.3.0.30", "Orin", "8.7")
    ok = doctor.check_engine(engine, "10.3.0.26", ORIN)  # patch releases run each other's engines
    assert ok.ok and ok.found == "m.engine: TensorRT 10.3.0.30, Orin (8.7), fp32"
    other_trt = doctor.check_engine(engine, "10.16.1", ORIN)
    assert not other_trt.ok and "built with TensorRT 10.3.0.30 but this is TensorRT 10.16.1" in other_trt.fix
    other_gpu = doctor.check_engine(engine, "10.3.0.30", H200)
    assert not other_gpu.ok and "built for Orin (compute capability 8.7) but this is NVIDIA H200 (9.0)" in other_gpu.fix
    assert doctor.check_engine(engine, None, NO_GPU).ok  # nothing here to compare with


def test_engine_without_a_usable_sidecar(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    finding = doctor.check_engine(engine, None, NO_GPU)
    assert not finding.ok and "m.engine.json" in finding.found and "m2f build" in finding.fix


@pytest.mark.parametrize("found, driver, ok, fix", [
    (("cuda-bindings", "13.0.1"), ORIN, False, "pip install 'cuda-python>=12,<13'"),  # JetPack 6 with a 13.x binding
    (("cuda-python", "12.6.2"), ORIN, True, ""),
    (("cuda-bindings", "13.0.1"), H200, True, ""),
    (("cuda-bindings", "12.9.0"), H200, True, ""),  # an older binding runs on a newer driver
])
def test_cuda_bindings_must_not_be_newer_than_the_driver(found, driver, ok, fix):
    finding = doctor.check_cuda_bindings(driver, found)
    assert finding.ok is ok and fix in finding.fix
    assert finding.found.startswith(f"{found[0]} {found[1]}")


def test_driver_findings_without_a_gpu():
    (finding,) = doctor.check_driver(NO_GPU)
    assert not finding.ok and "libcuda.so.1" in finding.found and "driver" in finding.fix
    driver, gpu = doctor.check_driver(ORIN)
    assert driver.found == "supports CUDA 12.6" and gpu.found == "Orin, compute capability 8.7"
