"""The TensorRT plugin library, without TensorRT or a GPU: compiled against the real TensorRT 10.3, 10.16 and 11.1
headers with warnings as errors, linked with --no-undefined, exporting only getCreators and setLoggerFinder and
needing neither libnvinfer nor libcuda; a C++ harness drives every creator and plugin method (under
AddressSanitizer too) and its names must be the Python contract's."""
import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from m2f.plugins.masked_attention import contract as ma_contract
from m2f.plugins.ms_deform_attn import contract as msda_contract
from m2f.plugins.build import build_info, build_library, check_library_for, find_cuda_include

HARNESS = Path(__file__).parent / "harness" / "plugin_harness.cpp"
from ..conftest import tensorrt_header_sets  # noqa: E402

VERSIONS = tuple(tensorrt_header_sets()[0]) or ("none",)  # the header sets found (skipped when none)


@pytest.fixture(scope="module")
def libraries(plugin_libraries):
    return plugin_libraries


def _harness(include: Path, version: str, out: Path, sanitize: bool = False) -> Path:
    flags = ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"] if sanitize else []
    exe = out / f"harness-{version}{'-asan' if sanitize else ''}"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", *flags, f"-isystem{include}",
                    f"-isystem{find_cuda_include()}", str(HARNESS), "-ldl", "-o", str(exe)], check=True)
    return exe


def _run_harness(exe: Path, library: Path) -> tuple[list[str], dict[str, list[str]]]:
    done = subprocess.run([str(exe), str(library)], capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    failures = [line for line in lines if line.startswith("FAIL")]
    assert done.returncode == 0 and not failures, (failures, done.stderr[-2000:])
    facts: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("fact "):
            key, *values = line.split()[1:]
            facts.setdefault(key, []).append(" ".join(values))
    return lines, facts


@pytest.mark.parametrize("version", VERSIONS)
def test_library_links_nothing_of_tensorrt_or_cuda(libraries, version):
    library = libraries[version]
    exported = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    assert sorted(line.split()[-1] for line in exported.splitlines() if " T " in line) == \
        ["getCreators", "setLoggerFinder"]
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(library)], capture_output=True, text=True).stdout
    names = [line.split()[-1] for line in undefined.splitlines()]
    assert not [n for n in names if n.startswith(("cu", "nvinfer", "getPluginRegistry", "getInferLibVersion"))]
    needed = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True).stdout
    assert "libnvinfer" not in needed and "libcuda" not in needed
    assert build_info(library) == {"tensorrt": tuple(int(x) for x in (version.split(".") + ["0"])[:3]),
                                   "archs": ["87", "90"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_harness_drives_every_method(libraries, header_sets, version, tmp_path):
    _, facts = _run_harness(_harness(header_sets[version], version, tmp_path), libraries[version])
    # the C++ names are the Python contract's (the ONNX nodes the exporter writes must find these creators)
    assert facts["creator"] == [
        f"{msda_contract.PLUGIN_NAME} {msda_contract.PLUGIN_VERSION} {msda_contract.PLUGIN_NAMESPACE} field:fused",
        f"{ma_contract.PLUGIN_NAME} {ma_contract.PLUGIN_VERSION} {ma_contract.PLUGIN_NAMESPACE}"]
    if shutil.which("nvidia-smi") is None:  # no driver: enqueue reports an error instead of crashing
        assert facts["msda_enqueue"] == ["-1"] and facts["attention_enqueue"] == ["-1"]


@pytest.mark.slow  # the same harness runs without ASan in the default suite
def test_harness_under_address_sanitizer(built_kernels, header_sets, tmp_path):
    kernels, _ = built_kernels
    version = sorted(header_sets)[-1]
    library = build_library(tmp_path / "asan", (87, 90), str(header_sets[version]), kernels=kernels,
                            use_cmake=False, sanitize=True)
    lines, _ = _run_harness(_harness(header_sets[version], version, tmp_path, sanitize=True), library)
    assert sum(line.startswith("ok ") for line in lines) >= 40


@pytest.mark.slow  # the default suite builds the same library by direct compiler calls
@pytest.mark.skipif(shutil.which("cmake") is None, reason="CMake is not installed")
def test_cmake_build(built_kernels, header_sets, tmp_path):
    kernels, _ = built_kernels
    version = sorted(header_sets)[-1]
    library = build_library(tmp_path, (87, 90), str(header_sets[version]), kernels=kernels, use_cmake=True)
    assert build_info(library)["tensorrt"][:2] == tuple(int(x) for x in version.split("."))
    exported = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    assert sum(" T " in line for line in exported.splitlines()) == 2


def test_loads_with_dlopen_without_libcuda(libraries):
    """ctypes.CDLL (what polygraphy --plugins does) on a machine without a GPU driver: it loads, and with no
    TensorRT in the process it registers nothing."""
    handle = ctypes.CDLL(str(libraries[sorted(libraries)[-1]]), mode=ctypes.RTLD_LOCAL)
    count = ctypes.c_int32(-1)
    handle.getCreators.restype = ctypes.c_void_p
    handle.getCreators.argtypes = [ctypes.POINTER(ctypes.c_int32)]
    assert handle.getCreators(ctypes.byref(count)) and count.value == 2


def test_library_for_another_major_version_is_one_sentence(libraries):
    from m2f.errors import ArgumentError

    for version, library in libraries.items():
        major = int(version.split(".")[0])
        check_library_for(library, f"{major}.99.0")
        with pytest.raises(ArgumentError, match=rf"built against TensorRT {version}\.0 headers but this is TensorRT "
                                                rf"{major + 1}\.0\.1"):
            check_library_for(library, f"{major + 1}.0.1")
