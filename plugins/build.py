"""``m2f plugins build``: the AOT kernels, then the TensorRT plugin library ``libm2f_plugins.so`` (no GPU needed).

CMake builds the library when it is installed (``plugins/CMakeLists.txt``); otherwise the same compiler calls are made
directly. The TensorRT headers come from ``tensorrt_include``, ``$TensorRT_ROOT/include`` or the usual install
places; the CUDA headers from ``$CUDA_HOME/include`` or /usr/local/cuda/include.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from m2f.errors import ArgumentError, M2FError, first_line

from .aot import DEFAULT_ARCHS, build_kernels

PLUGINS = Path(__file__).parent
LIBRARY = "libm2f_plugins.so"
SOURCES = ("common/pluginBase.cpp", "common/libraryEntry.cpp", "ms_deform_attn/msDeformAttnPlugin.cpp",
           "masked_attention/maskedAttentionPlugin.cpp")
KERNEL_SOURCES = ("m2f_kernels.c", "m2f_ms_deform_attn.c", "m2f_masked_attention.c")
_TENSORRT_GUESSES = ("/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu", "/usr/include",
                     "/usr/local/tensorrt/include", "/opt/tensorrt/include")
BUILD_INFO = re.compile(rb"M2F_PLUGINS_BUILD tensorrt=(\d+)\.(\d+)\.(\d+) archs=([\d,a-z]*)")


def tensorrt_include_candidates(given: str | None = None) -> list[tuple[str, str]]:
    """Where TensorRT's headers may be, in the order they are tried: (folder, how it was found). ``given`` (the
    --tensorrt-include flag), then $TENSORRT_INCLUDE, $TensorRT_ROOT/include, the include folder of a pip-installed
    TensorRT, the system's install places."""
    candidates = [(given, "--tensorrt-include")] if given else []
    if os.environ.get("TENSORRT_INCLUDE"):
        candidates.append((os.environ["TENSORRT_INCLUDE"], "$TENSORRT_INCLUDE"))
    if os.environ.get("TensorRT_ROOT"):
        candidates.append((os.path.join(os.environ["TensorRT_ROOT"], "include"), "$TensorRT_ROOT/include"))
    candidates += [(folder, "pip-installed TensorRT") for folder in _pip_tensorrt_includes()]
    candidates += [(folder, "system install") for folder in _TENSORRT_GUESSES]
    return candidates


def _pip_tensorrt_includes() -> list[str]:
    """include/ folders of pip-installed TensorRT packages (tensorrt_libs, tensorrt), where they ship headers."""
    import importlib.util

    folders = []
    for package in ("tensorrt_libs", "tensorrt"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            folders.append(str(Path(spec.origin).parent / "include"))
    return folders


def find_tensorrt_include(given: str | None, progress=lambda msg: None) -> Path:
    """The first folder of ``tensorrt_include_candidates`` that holds NvInferRuntime.h (said through ``progress``,
    with the TensorRT version its headers declare); ArgumentError naming every place looked in otherwise."""
    candidates = [(given, "--tensorrt-include")] if given else tensorrt_include_candidates()
    for folder, how in candidates:
        if folder and (Path(folder) / "NvInferRuntime.h").exists():
            progress(f"TensorRT {header_version(Path(folder))} headers from {folder} ({how})")
            return Path(folder)
    where = ", ".join(f"{folder} ({how})" for folder, how in candidates)
    raise ArgumentError(f"no TensorRT headers (NvInferRuntime.h) in {where}; give --tensorrt-include DIR or set "
                        f"TENSORRT_INCLUDE")


def header_version(include: Path) -> str:
    """"major.minor.patch" from a TensorRT include folder's NvInferVersion.h ("unknown" without one)."""
    text = (include / "NvInferVersion.h").read_text(errors="replace") if (include / "NvInferVersion.h").exists() else ""
    parts = [re.search(rf"#define (?:NV_TENSORRT|TRT)_{key}(?:_ENTERPRISE)?\s+(\d+)", text)
             for key in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(m.group(1) for m in parts) if all(parts) else "unknown"


def _triton_cuda_include() -> str:
    """The CUDA headers Triton's NVIDIA backend ships ("" without Triton): enough for the launchers and plugins."""
    import importlib.util

    spec = importlib.util.find_spec("triton")
    return str(Path(spec.origin).parent / "backends" / "nvidia" / "include") if spec and spec.origin else ""


def find_cuda_include() -> Path:
    for c in (os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "include"), "/usr/local/cuda/include",
              "/usr/include", _triton_cuda_include()):
        if c and (Path(c) / "cuda.h").exists():
            return Path(c)
    raise ArgumentError("no CUDA headers (cuda.h) found; install the CUDA toolkit headers or set CUDA_HOME")


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in (done.stderr or done.stdout).splitlines() if "error" in line.lower()]
        raise M2FError(f"{what} failed: {(errors or [first_line(done.stderr or done.stdout)])[0][:300]}")


def _compile_directly(kernels: Path, out: Path, trt: Path, cuda: Path, archs: str, sanitize: bool) -> Path:
    """The compiler calls CMakeLists.txt makes, for machines without CMake."""
    include = [f"-I{PLUGINS / d}" for d in ("common", "ms_deform_attn", "masked_attention")] + \
        [f"-I{kernels}", f"-isystem{trt}", f"-isystem{cuda}"]
    extra = ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"] if sanitize else ["-O2"]
    objects = []
    work = out / "obj"
    work.mkdir(parents=True, exist_ok=True)
    for source in SOURCES:
        objects.append(work / (Path(source).stem + ".o"))
        _run(["g++", "-std=c++17", "-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden", "-Wall",
              "-Wextra", "-Werror", f'-DM2F_PLUGINS_ARCHS="{archs}"', *extra, *include, "-c",
              str(PLUGINS / source), "-o", str(objects[-1])], f"compiling {source}")
    # the kernels' C does not depend on TensorRT: compiled once beside them, reused by builds for other headers
    cached = kernels / ("obj-asan" if sanitize else "obj")
    cached.mkdir(exist_ok=True)
    for source in KERNEL_SOURCES:
        objects.append(cached / (Path(source).stem + ".o"))
        if objects[-1].exists() and objects[-1].stat().st_mtime >= (kernels / source).stat().st_mtime:
            continue
        _run(["gcc", "-std=c99", "-fPIC", "-fvisibility=hidden", "-Wall", "-Werror", *extra, f"-I{kernels}",
              f"-isystem{cuda}", "-c", str(kernels / source), "-o", str(objects[-1])], f"compiling {source}")
    link = ["-fsanitize=address"] if sanitize else \
        [f"-Wl,--version-script={PLUGINS / 'common' / 'exports.map'}", "-Wl,--no-undefined"]
    library = out / LIBRARY
    _run(["g++", "-shared", "-o", str(library), *map(str, objects), *link, "-ldl", "-lpthread"], "linking")
    return library


def _compile_with_cmake(kernels: Path, out: Path, trt: Path, cuda: Path, archs: str, sanitize: bool) -> Path:
    build = out / "cmake-build"
    _run(["cmake", "-S", str(PLUGINS), "-B", str(build), f"-DM2F_KERNELS_DIR={kernels}", f"-DTENSORRT_INCLUDE={trt}",
          f"-DCUDA_INCLUDE={cuda}", f"-DM2F_ARCHS={archs}", f"-DM2F_SANITIZE={'ON' if sanitize else 'OFF'}",
          "-DCMAKE_BUILD_TYPE=Release"], "configuring the plugin library (cmake)")
    _run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)], "building the plugin library (cmake)")
    library = out / LIBRARY
    shutil.copyfile(build / LIBRARY, library)
    return library


def build_library(out: str | Path, archs=DEFAULT_ARCHS, tensorrt_include: str | None = None,
                  kernels: str | Path | None = None, use_cmake: bool | None = None, sanitize: bool = False,
                  progress=lambda msg: None) -> Path:
    """Build (or reuse, with ``kernels``) the AOT kernels for ``archs``, then the plugin library; returns its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trt, cuda = find_tensorrt_include(tensorrt_include, progress), find_cuda_include()
    if kernels is None:
        kernels = out / "kernels"
        build_kernels(kernels, archs, progress=progress)
    kernels = Path(kernels)
    cmake = shutil.which("cmake") is not None if use_cmake is None else use_cmake
    progress(f"compiling the plugin library against {trt} ({'cmake' if cmake else 'g++'})")
    build = _compile_with_cmake if cmake else _compile_directly
    return build(kernels, out, trt, cuda, ",".join(map(str, archs)), sanitize)


def build_info(library: str | Path) -> dict | None:
    """{"tensorrt": (major, minor, patch), "archs": [...]} recorded in a library built by m2f, else None."""
    found = BUILD_INFO.search(Path(library).read_bytes())
    if not found:
        return None
    return {"tensorrt": tuple(int(found.group(i)) for i in (1, 2, 3)),
            "archs": [a for a in found.group(4).decode().split(",") if a]}


def kernels_fit(archs: list[int], device_arch: int) -> bool:
    """Whether a library with cubins for ``archs`` (e.g. [80, 86, 87]) has an image for a GPU of ``device_arch``
    (e.g. 89): the rule of m2f_kernels.h -- a cubin of the same major version and a minor not above the device's, or
    the PTX of the newest architecture when the device is at least that one."""
    same_major = any(a // 10 == device_arch // 10 and a <= device_arch for a in archs)
    return same_major or (bool(archs) and device_arch >= max(archs))


def check_library_for(library: str | Path, tensorrt_version: str) -> None:
    """ArgumentError when ``library`` was built by m2f against another TensorRT major version than
    ``tensorrt_version`` (libraries not built by m2f are not checked)."""
    info = build_info(library)
    if info and info["tensorrt"][0] != int(tensorrt_version.split(".")[0]):
        built = ".".join(map(str, info["tensorrt"]))
        raise ArgumentError(f"{Path(library).name} was built against TensorRT {built} headers but this is TensorRT "
                            f"{tensorrt_version}; rebuild it here: m2f plugins build --tensorrt-include <its include "
                            f"folder>")
