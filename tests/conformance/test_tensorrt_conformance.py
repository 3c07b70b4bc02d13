"""TensorRT conformance without TensorRT: the real Python bindings wheels of TensorRT 10.3, 10.16 and 11.x (pip
download --no-deps, cached) import over a stand-in libnvinfer built here (standin/: the C entry points the bindings
link against, and a plugin registry that records every call). What this proves is API surface and loading:

(a) every TensorRT name m2f calls exists in each TensorRT version whose code path can reach it, and the names m2f
    avoids on TensorRT 11 are really gone there;
(b) m2f's plugin library registers both creators (name, version, namespace, fields) through every way a host loads
    it -- m2f's runtime and m2f build, trtexec --staticPlugins and --dynamicPlugins, polygraphy --plugins (ctypes),
    Triton's TensorRT backend -- never twice and never from inside the registry's loadLibrary;
(c) TensorRT 10's implicit calibrator hands TensorRT exactly one buffer size, batch after batch.

Nothing here builds or runs a network: it says nothing about numerics or speed (docs/verification.md).
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from m2f.plugins.build import find_cuda_include
from m2f.plugins.masked_attention import contract as ma
from m2f.plugins.ms_deform_attn import contract as msda

ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).parent / "standin"
# the bindings wheels (real, about 1 MB each; their -libs companions are placeholders that download from NVIDIA)
WHEELS = {"10.3": "tensorrt-cu12-bindings==10.3.0", "10.16": "tensorrt-cu12-bindings==10.16.1.11",
          "11.1": "tensorrt-cu13-bindings==11.1.0.106", "11.4": "tensorrt-cu13-bindings==11.4.0.106"}
LOADING_VERSIONS = ("10.3", "10.16", "11.1")  # those whose headers the stand-in registry is compiled against
CACHE = Path(os.environ.get("M2F_WHEEL_CACHE", Path.home() / ".cache" / "m2f" / "tensorrt-bindings"))
EXPECTED_CREATORS = {f"{msda.PLUGIN_NAME} {msda.PLUGIN_VERSION} {msda.PLUGIN_NAMESPACE} field:{msda.FUSED_ATTRIBUTE}",
                     f"{ma.PLUGIN_NAME} {ma.PLUGIN_VERSION} {ma.PLUGIN_NAMESPACE}"}

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler (g++)")


# ---- what m2f calls, by code path ----------------------------------------------------------------------------------
# (dotted name in the bindings, where m2f calls it). The runtime and the strongly typed build run on every TensorRT
# from 10.3; the builder-flag path (m2f build --builder-flags) on TensorRT 10 only, and must be gone from 11.
EVERY_VERSION = [
    # runtime/backends/tensorrt_backend.py, runtime/backends/trt_plugins.py
    "__version__", "Logger", "Logger.WARNING", "init_libnvinfer_plugins", "get_plugin_registry",
    "IPluginRegistry.load_library", "IPluginRegistry.get_creator", "Runtime", "Runtime.deserialize_cuda_engine",
    "ICudaEngine.create_execution_context", "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_name",
    "ICudaEngine.get_tensor_mode", "ICudaEngine.get_tensor_dtype", "ICudaEngine.get_tensor_shape",
    "ICudaEngine.get_tensor_profile_shape", "TensorIOMode.INPUT", "nptype", "IExecutionContext.set_input_shape",
    "IExecutionContext.infer_shapes", "IExecutionContext.get_tensor_shape", "IExecutionContext.set_tensor_address",
    "IExecutionContext.execute_async_v3",
    # calib/engine.py: the strongly typed build
    "Builder", "Builder.create_network", "NetworkDefinitionCreationFlag.STRONGLY_TYPED", "OnnxParser",
    "OnnxParser.parse_from_file", "OnnxParser.num_errors", "OnnxParser.get_error", "ParserError.node_name",
    "ParserError.node_operator", "ParserError.desc", "Builder.create_builder_config",
    "IBuilderConfig.set_memory_pool_limit", "MemoryPoolType.WORKSPACE", "Builder.create_optimization_profile",
    "IOptimizationProfile.set_shape", "IBuilderConfig.add_optimization_profile", "IBuilderConfig.create_timing_cache",
    "IBuilderConfig.set_timing_cache", "ITimingCache.serialize", "IBuilderConfig.progress_monitor", "IProgressMonitor",
    "IProgressMonitor.phase_start", "IProgressMonitor.step_complete", "IProgressMonitor.phase_finish",
    "Builder.build_serialized_network", "DeviceType.DLA", "IBuilderConfig.default_device_type",
    "IBuilderConfig.DLA_core", "BuilderFlag.GPU_FALLBACK", "IBuilderConfig.set_flag",
]
TENSORRT_10_ONLY = ["BuilderFlag.FP16", "BuilderFlag.INT8", "IInt8EntropyCalibrator2",
                    "IBuilderConfig.int8_calibrator", "IBuilderConfig.set_calibration_profile"]
# parameters m2f passes by name or relies on the order of (a pybind11 signature lists them in its docstring)
SIGNATURES = {"IBuilderConfig.set_timing_cache": ["cache", "ignore_mismatch"],
              "IProgressMonitor.phase_start": ["phase_name", "parent_phase", "num_steps"],
              "IBuilderConfig.set_memory_pool_limit": ["pool", "pool_size"],
              "IExecutionContext.set_input_shape": ["name", "shape"]}
# the modules that call TensorRT (their attribute names are checked against the inventory above)
CALLERS = ["runtime/backends/tensorrt_backend.py", "runtime/backends/trt_plugins.py", "calib/engine.py"]


# ---- fixtures -------------------------------------------------------------------------------------------------------

def _bindings(version: str) -> Path:
    """The unpacked bindings wheel of ``version`` (downloaded once into the cache); skips, naming why, offline."""
    folder = CACHE / version
    if (folder / "tensorrt_bindings" / "__init__.py").exists():
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(CACHE),
                           WHEELS[version]], capture_output=True, text=True, timeout=300)
    name = WHEELS[version].split("==")
    wheels = sorted(CACHE.glob(f"{name[0].replace('-', '_')}-{name[1]}-*.whl"))
    if done.returncode != 0 or not wheels:
        pytest.skip(f"could not download {WHEELS[version]} from the package registry "
                    f"({(done.stderr or done.stdout).strip().splitlines()[-1:] or 'no wheel'}); the TensorRT "
                    f"conformance checks need it once (it is cached in {CACHE})")
    with zipfile.ZipFile(wheels[-1]) as archive:
        archive.extractall(folder)
    return folder


def _compile(args: list[str], what: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, f"compiling {what}: {done.stderr[-3000:]}"


def _standin(version: str, include: Path, out: Path) -> Path:
    """The stand-in libnvinfer.so.<major> (+ plugin and parser companions) for the headers at ``include``."""
    major = version.split(".")[0]
    recursive = int("getAllCreatorsRecursive" in (include / "NvInferRuntimeCommon.h").read_text(errors="replace"))
    common = ["g++", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", f"-isystem{include}",
              f"-isystem{find_cuda_include()}"]
    _compile(common + [f"-DM2F_STANDIN_RECURSIVE={recursive}", str(STANDIN / "nvinfer_standin.cpp"),
                       f"-Wl,-soname,libnvinfer.so.{major}", "-ldl", "-o", str(out / f"libnvinfer.so.{major}")],
             "the stand-in libnvinfer")
    _compile(common + ["-DM2F_STANDIN_PLUGIN=1", str(STANDIN / "companions.cpp"),
                       f"-Wl,-soname,libnvinfer_plugin.so.{major}", "-o", str(out / f"libnvinfer_plugin.so.{major}")],
             "the stand-in libnvinfer_plugin")
    _compile(common + ["-DM2F_STANDIN_PLUGIN=0", str(STANDIN / "companions.cpp"),
                       f"-Wl,-soname,libnvonnxparser.so.{major}", "-o", str(out / f"libnvonnxparser.so.{major}")],
             "the stand-in libnvonnxparser")
    return out


@pytest.fixture(scope="module")
def environments(header_sets, tmp_path_factory):
    """{version: (bindings folder, stand-in folder, headers)} for every version with a wheel (API checks use the
    headers of the same major when the exact ones are not here)."""
    found = {}
    for version in WHEELS:
        headers = header_sets.get(version) or next(
            (header_sets[v] for v in sorted(header_sets, reverse=True) if v.split(".")[0] == version.split(".")[0]),
            None)
        if headers is None:
            continue
        out = tmp_path_factory.mktemp(f"standin{version}")
        found[version] = (_bindings(version), _standin(version, headers, out), headers)
    if not found:
        pytest.skip(f"no TensorRT headers for any of {', '.join(WHEELS)}")
    return found


def _python(environment, code: str, stderr: bool = False):
    """``code`` in a Python whose TensorRT is the stand-in (it prints one JSON document); its result (and what it
    wrote to stderr, with ``stderr``)."""
    bindings, standin, _ = environment
    env = {**os.environ, "LD_LIBRARY_PATH": f"{standin}:{os.environ.get('LD_LIBRARY_PATH', '')}",
           "PYTHONPATH": f"{bindings}:{ROOT}"}
    prelude = ("import ctypes, json, sys\n"
               "import tensorrt_bindings as trt\n"
               "standin = ctypes.CDLL('libnvinfer.so.' + trt.__version__.split('.')[0])\n"
               "standin.standin_report.restype = ctypes.c_char_p\n"
               "def report():\n"
               "    return standin.standin_report().decode().splitlines()\n")
    done = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=env,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return (result, done.stderr) if stderr else result


def _registered(report: list[str]) -> tuple[set[str], list[str]]:
    """(the creators the stand-in registry holds, the events that are errors)."""
    creators = {line[len("creator "):].strip() for line in report if line.startswith("creator ")}
    errors = [line for line in report if line.startswith("event ")
              and any(word in line for word in ("reentered", "duplicate", "refused", "failed", "no getCreators"))]
    return creators, errors


# ---- (a) API surface ------------------------------------------------------------------------------------------------

_SURFACE = """
def has(name):
    obj = trt
    for part in name.split('.'):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True

def params(name):
    obj = trt
    for part in name.split('.'):
        obj = getattr(obj, part)
    return getattr(obj, '__doc__', None) or ''  # overloads list each signature on its own line

names = json.loads(sys.argv[1]) if len(sys.argv) > 1 else NAMES
print(json.dumps({"version": trt.__version__, "present": {n: has(n) for n in NAMES},
                  "signatures": {n: params(n) for n in SIGNATURES if has(n)}}))
"""


@pytest.mark.parametrize("version", list(WHEELS))
def test_every_tensorrt_name_m2f_calls_exists_where_it_is_called(environments, version):
    if version not in environments:
        pytest.skip(f"no TensorRT {version.split('.')[0]} headers for the stand-in")
    code = f"NAMES = {EVERY_VERSION + TENSORRT_10_ONLY!r}\nSIGNATURES = {list(SIGNATURES)!r}\n" + _SURFACE
    result = _python(environments[version], code)
    assert result["version"].startswith(version)
    missing = [n for n in EVERY_VERSION if not result["present"][n]]
    assert not missing, f"TensorRT {result['version']} lacks {missing}"
    major = int(version.split(".")[0])
    ten_only = {n: result["present"][n] for n in TENSORRT_10_ONLY}
    if major == 10:
        assert all(ten_only.values()), ten_only
    else:  # m2f refuses --builder-flags on 11 because these are gone
        assert not any(ten_only.values()), ten_only
    for name, wanted in SIGNATURES.items():
        lines = [line for line in result["signatures"][name].splitlines() if f"{name.split('.')[-1]}(" in line]
        assert any(all(line.find(f"{p}:") >= 0 for p in wanted)
                   and [line.find(f"{p}:") for p in wanted] == sorted(line.find(f"{p}:") for p in wanted)
                   for line in lines), (name, lines)


def test_the_inventory_covers_every_tensorrt_name_m2f_uses(environments):
    """Every attribute name the TensorRT-calling modules use that is a TensorRT name (an attribute of some class of
    the bindings) is in the inventory above, so a new call cannot escape the check."""
    version = max(environments, key=lambda v: tuple(map(int, v.split("."))))
    code = ("names = set(dir(trt))\n"
            "for cls in [getattr(trt, n) for n in dir(trt)]:\n"
            "    names |= set(getattr(cls, '__dict__', {}))\n"
            "print(json.dumps(sorted(n for n in names if not n.startswith('_'))))")
    tensorrt_names = set(_python(environments[version], code))
    used = set()
    for caller in CALLERS:
        for node in ast.walk(ast.parse((ROOT / caller).read_text())):
            if isinstance(node, ast.Attribute):
                used.add(node.attr)
    inventory = {part for name in EVERY_VERSION + TENSORRT_10_ONLY for part in name.split(".")}
    # names that are TensorRT's too but that m2f uses on its own objects (numpy arrays, cuda-python, dataclasses)
    own = {"name", "shape", "dtype", "path", "device", "stream", "precision", "plugins", "profiles", "version",
           "input", "names", "kind", "close", "free", "error", "flags", "get", "items", "values", "append", "read",
           "write", "copy", "view", "reshape", "data", "format", "type", "items", "keys", "size", "opt", "min", "max",
           "strongly_typed", "handle", "tensorrt", "op_flavor", "meta", "engine", "context", "serialize", "environ",
           "itemsize", "open", "pathsep", "release", "replace", "resize", "sync"}
    unlisted = sorted((used & tensorrt_names) - inventory - own)
    assert not unlisted, f"m2f uses TensorRT names the conformance inventory does not check: {unlisted}"


# ---- (b) loading the plugin library ---------------------------------------------------------------------------------

def _hosts(environment, out: Path) -> dict[str, Path]:
    _, standin, include = environment
    link = [str(next(standin.glob("libnvinfer.so.*"))), f"-Wl,-rpath,{standin}"]
    flags = ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-isystem{include}", f"-isystem{find_cuda_include()}"]
    hosts = {"host": out / "host", "backend": out / "libtriton_tensorrt.so", "server": out / "server"}
    _compile(flags + [str(STANDIN / "hosts.cpp"), *link, "-ldl", "-o", str(hosts["host"])], "the trtexec-like host")
    _compile(flags + ["-DM2F_BACKEND=1", "-shared", "-fPIC", str(STANDIN / "hosts.cpp"), *link, "-ldl", "-o",
                      str(hosts["backend"])], "the Triton-like backend")
    _compile(flags + ["-DM2F_SERVER=1", str(STANDIN / "hosts.cpp"), "-ldl", "-o", str(hosts["server"])],
             "the Triton-like server")
    return hosts


def _run(args: list[str]) -> list[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("version", LOADING_VERSIONS)
def test_the_plugin_library_registers_through_every_loading_path(environments, plugin_libraries, version,
                                                                 tmp_path):
    if version not in environments or version not in plugin_libraries:
        pytest.skip(f"no TensorRT {version} headers here")
    environment, library = environments[version], str(plugin_libraries[version])
    hosts = _hosts(environment, tmp_path)
    paths = {
        # m2f's runtime runner and m2f build load libraries through the registry (trt_plugins)
        "m2f runtime / m2f build": _python(environment, (
            "from m2f.runtime.backends.trt_plugins import load_plugin_libraries\n"
            f"load_plugin_libraries(trt, [{library!r}])\n"
            "print(json.dumps(report()))")),
        "polygraphy --plugins (ctypes.CDLL)": _python(environment, (
            f"ctypes.CDLL({library!r})\nprint(json.dumps(report()))")),
        "ctypes.CDLL, then m2f's runtime in the same process": _python(environment, (
            "from m2f.runtime.backends.trt_plugins import load_plugin_libraries\n"
            f"ctypes.CDLL({library!r})\nload_plugin_libraries(trt, [{library!r}])\n"
            "print(json.dumps(report()))")),
        "trtexec --staticPlugins": _run([str(hosts["host"]), "static", library]),
        "trtexec --dynamicPlugins": _run([str(hosts["host"]), "dynamic", library]),
        "Triton --backend-config=tensorrt,plugins=": _run([str(hosts["server"]), library, str(hosts["backend"])]),
    }
    for path, report in paths.items():
        creators, errors = _registered(report)
        assert creators == EXPECTED_CREATORS and not errors, (path, report)


def test_a_library_for_another_major_registers_nothing_and_says_why(environments, plugin_libraries):
    majors = {v.split(".")[0]: v for v in plugin_libraries}
    runtime = next((v for v in LOADING_VERSIONS if v in environments and v.split(".")[0] == "11"), None)
    built = majors.get("10")
    if runtime is None or built is None:
        pytest.skip("needs TensorRT 10 and 11 headers")
    result, stderr = _python(environments[runtime], (
        "from m2f.errors import BackendError\n"
        "from m2f.runtime.backends.trt_plugins import load_plugin_libraries\n"
        f"try:\n    load_plugin_libraries(trt, [{str(plugin_libraries[built])!r}])\n    error = None\n"
        "except BackendError as e:\n    error = str(e)\n"
        f"ctypes.CDLL({str(plugin_libraries[built])!r})\n"
        "print(json.dumps({'error': error, 'report': report()}))"), stderr=True)
    creators, _ = _registered(result["report"])
    assert creators == set()
    assert result["error"] and "registered none of its plugins" in result["error"]
    # TensorRT 11's logger is laid out differently from 10's: the 10 library says why on stderr, never through it
    assert "built against TensorRT 10 headers but the process runs TensorRT 11" in stderr, stderr
    assert not any(line.startswith("event log") for line in result["report"]), result["report"]


# ---- (c) the implicit calibrator ------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["10.3", "10.16"])
def test_the_calibrator_feeds_one_buffer_size(environments, version):
    """A dynamic graph calibrated on images of three sizes: every batch TensorRT receives is the calibration
    profile's OPT shape, so every copy is exactly the buffer's size."""
    if version not in environments:
        pytest.skip(f"no TensorRT {version} headers here")
    result = _python(environments[version], '''
import dataclasses
import numpy as np
from pathlib import Path
from m2f import contract
from m2f.calib.data import CalibrationSet
from m2f.calib.engine import calibration_canvas, calibration_shapes, entropy_calibrator, profile
from m2f.datasets.synthetic import generate
import tempfile

meta = contract.parse(Path("tests/data/metadata_v1.json").read_text(), "m")
meta = dataclasses.replace(meta, input=dataclasses.replace(meta.input, dynamic=True,
                           shape=("batch", "height", "width", 3), dynamic_range=contract.DynamicRange(32)))
class RecordingCuda:
    def __init__(self):
        self.allocated, self.copies = {}, []
    def device_alloc(self, nbytes):
        self.allocated[len(self.allocated) + 1] = nbytes
        return len(self.allocated)
    def device_free(self, pointer):
        pass
    def h2d(self, pointer, host):
        self.copies.append((pointer, host.nbytes, self.allocated[pointer]))
    def sync(self):
        pass

with tempfile.TemporaryDirectory() as tmp:
    from PIL import Image
    folder = Path(tmp)
    for i, (h, w) in enumerate([(120, 200), (300, 180), (64, 64)]):
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    shapes = calibration_shapes(meta, profile(meta))
    canvas, batch = calibration_canvas(meta, shapes)
    data = CalibrationSet.open(meta, str(folder), images=3, canvas=canvas, batch=batch)
    cuda = RecordingCuda()
    calibrator = entropy_calibrator(trt, iter(data), None, shapes, {"image": "uint8", "valid_size": "int32"}, cuda)
    batches = 0
    while calibrator.get_batch(["image", "valid_size"]) is not None:
        batches += 1
    print(json.dumps({"batches": batches, "copies": cuda.copies, "error": calibrator.error,
                      "shapes": {k: list(v) for k, v in shapes.items()}, "size": calibrator.get_batch_size()}))
''')
    assert result["batches"] == 3 and result["error"] is None
    assert result["shapes"]["image"] == [1, 192, 320, 3] and result["size"] == 1  # the bundled metadata's OPT
    assert len(result["copies"]) == 6 and all(nbytes == capacity for _, nbytes, capacity in result["copies"])
