"""``m2f doctor``: what this machine has for running m2f's engines, and what to do about what does not fit (no torch).

Each check is a ``Finding``: what was looked at, what was found, whether it is fine, and the fix when not. The checks
need none of what they look for: on a machine without a GPU, TensorRT or cuda-python they say so. The CUDA driver is
asked directly (libcuda.so.1 through ctypes), so its version and the GPU are known even without cuda-python.

    Python and platform (Jetson / JetPack detected from /etc/nv_tegra_release)
    TensorRT: importable?, version, where it was found (JetPack's system package or a pip wheel)
    CUDA driver version, GPU name and compute capability
    cuda-python / cuda-bindings: version, and whether the driver can run it (a 13.x binding needs a CUDA 13 driver)
    CUDA runtime version (through cuda-python)
    a plugin library (--plugins): built by m2f? for which TensorRT major and GPU architectures; does it fit here?
    an engine (its <engine>.json sidecar): built by which TensorRT for which GPU; does it fit here?
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

JETSON_RELEASE = Path("/etc/nv_tegra_release")
MIN_PYTHON = (3, 10)


@dataclass
class Finding:
    what: str  # e.g. "TensorRT"
    found: str  # what was found, in words
    ok: bool
    fix: str = ""  # what to do when not ok

    def line(self) -> str:
        mark = "ok  " if self.ok else "FIX "
        return f"{mark} {self.what:<18} {self.found}" + (f"\n      -> {self.fix}" if self.fix else "")


@dataclass
class Driver:
    """What libcuda says: the CUDA version it supports (e.g. 12060), and the first GPU (None without one)."""

    cuda_version: int | None
    gpu: str | None
    compute_capability: str | None  # "major.minor"
    problem: str | None


def _cuda_text(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def query_driver() -> Driver:
    """The CUDA driver's version and GPU 0, through libcuda.so.1 (no cuda-python needed)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return Driver(None, None, None, "no NVIDIA driver: libcuda.so.1 is not installed")
    version = ctypes.c_int(0)
    if cuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return Driver(None, None, None, "libcuda.so.1 did not report its version")
    if cuda.cuInit(0) != 0:
        return Driver(version.value, None, None, "the driver is installed but no GPU is usable (cuInit failed)")
    device, count = ctypes.c_int(0), ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return Driver(version.value, None, None, "the driver sees no GPU")
    cuda.cuDeviceGet(ctypes.byref(device), 0)
    name = ctypes.create_string_buffer(256)
    cuda.cuDeviceGetName(name, 256, device)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, device)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)  # ..._MINOR
    return Driver(version.value, name.value.decode(errors="replace"), f"{major.value}.{minor.value}", None)


def _jetpack() -> str | None:
    """The L4T release line of a Jetson, None elsewhere."""
    if not JETSON_RELEASE.exists():
        return None
    return JETSON_RELEASE.read_text(errors="replace").splitlines()[0].strip("# ").strip()


def _distribution_version(*names: str) -> tuple[str, str] | None:
    for name in names:
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def check_python() -> Finding:
    version = ".".join(map(str, sys.version_info[:3]))
    jetson = _jetpack()
    where = f"{platform.machine()}" + (f", Jetson ({jetson})" if jetson else "")
    ok = sys.version_info[:2] >= MIN_PYTHON
    return Finding("Python", f"{version} on {where}", ok,
                   "" if ok else f"m2f needs Python {'.'.join(map(str, MIN_PYTHON))} or newer")


def check_tensorrt() -> tuple[Finding, str | None]:
    """(finding, TensorRT version or None)."""
    spec = importlib.util.find_spec("tensorrt")
    jetson = _jetpack() is not None
    if spec is None:
        fix = ("JetPack ships TensorRT for the system Python: sudo apt install python3-libnvinfer, and make the "
               "virtual environment with --system-site-packages" if jetson else
               "pip install 'm2f[trt-cu12]' (CUDA 12 driver) or 'm2f[trt-cu13]' (CUDA 13 driver)")
        return Finding("TensorRT", "not installed", False, fix), None
    try:
        import tensorrt
    except Exception as e:  # a broken install raises anything from ImportError to OSError on its libraries
        return Finding("TensorRT", f"installed at {Path(spec.origin).parent} but it does not import: "
                                   f"{str(e).splitlines()[0][:160]}", False,
                       "reinstall it; its libraries (libnvinfer) must match the Python package"), None
    origin = Path(tensorrt.__file__).parent
    source = "the system's (JetPack / apt)" if "dist-packages" in str(origin) else "a pip wheel"
    return Finding("TensorRT", f"{tensorrt.__version__} from {origin} ({source})", True), tensorrt.__version__


def check_driver(driver: Driver) -> list[Finding]:
    if driver.cuda_version is None:
        return [Finding("CUDA driver", driver.problem or "unknown", False,
                        "install the NVIDIA driver (on a Jetson it comes with JetPack); engines need a GPU")]
    findings = [Finding("CUDA driver", f"supports CUDA {_cuda_text(driver.cuda_version)}", True)]
    if driver.gpu is None:
        findings.append(Finding("GPU", driver.problem or "none", False, "engines run on an NVIDIA GPU"))
    else:
        findings.append(Finding("GPU", f"{driver.gpu}, compute capability {driver.compute_capability}", True))
    return findings


def check_cuda_bindings(driver: Driver, found: tuple[str, str] | None = None) -> Finding:
    """``found``: (distribution, version) of the installed cuda-python, looked up when not given."""
    found = found or _distribution_version("cuda-bindings", "cuda-python")
    if found is None:
        fallback = importlib.util.find_spec("pycuda") is not None
        return Finding("cuda-python", "not installed" + (" (PyCUDA is: no CUDA-graph replay)" if fallback else ""),
                       fallback, "" if fallback else
                       "pip install 'cuda-python>=12.6,<13' for a CUDA 12 driver (JetPack 6), '>=13,<14' for CUDA 13")
    name, version = found
    major = int(version.split(".")[0])
    if driver.cuda_version is not None and major > driver.cuda_version // 1000:
        return Finding("cuda-python", f"{name} {version}", False,
                       f"{name} {major}.x needs a CUDA {major} driver and this one supports CUDA "
                       f"{_cuda_text(driver.cuda_version)}: pip install 'cuda-python>={driver.cuda_version // 1000},"
                       f"<{driver.cuda_version // 1000 + 1}'")
    runtime = ""
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        err, value = cudart.cudaRuntimeGetVersion()
        runtime = f", CUDA runtime {_cuda_text(value)}" if int(err) == 0 else ""
    except Exception:  # the runtime library may be missing or the driver too old: the version line says enough
        runtime = ""
    return Finding("cuda-python", f"{name} {version}{runtime}", True)


def check_plugin_library(library: str | Path, tensorrt_version: str | None, driver: Driver) -> Finding:
    from m2f.errors import ArgumentError
    from m2f.plugins.build import build_info, check_library_for, kernels_fit

    path = Path(library)
    if not path.is_file():
        return Finding("plugin library", f"{path} does not exist", False, "build it: m2f plugins build")
    info = build_info(path)
    if info is None:
        return Finding("plugin library", f"{path.name} was not built by m2f (not checked)", True)
    archs = [int(a) for a in info["archs"] if a.isdigit()]
    found = (f"{path.name}: TensorRT {'.'.join(map(str, info['tensorrt']))} headers, "
             f"sm_{', sm_'.join(map(str, archs)) or '?'}")
    problems = []
    if tensorrt_version:
        try:
            check_library_for(path, tensorrt_version)
        except ArgumentError as e:
            problems.append(str(e))
    if driver.compute_capability:
        arch = int(driver.compute_capability.replace(".", ""))
        if not kernels_fit(archs, arch):
            problems.append(f"its kernels are for sm_{', sm_'.join(map(str, archs))}, none of which runs on this "
                            f"GPU (sm_{arch}): rebuild it here with m2f plugins build --arch {arch}")
    return Finding("plugin library", found, not problems, "; ".join(problems))


def check_engine(engine: str | Path, tensorrt_version: str | None, driver: Driver) -> Finding:
    """The rule of the TensorRT runner (check_built_for), from the sidecar alone: this needs no TensorRT."""
    from m2f.contract import parse, sidecar_path
    from m2f.errors import M2FError
    from m2f.runtime.backends.tensorrt_backend import check_built_for

    path = Path(engine)
    sidecar = sidecar_path(path)
    try:
        meta = parse(sidecar.read_text() if sidecar.exists() else None, f"{path.name} (sidecar {sidecar.name})")
    except M2FError as e:
        return Finding("engine", str(e), False, "rebuild the engine with m2f build")
    built = meta.tensorrt
    if built is None:
        return Finding("engine", f"{sidecar.name} has no TensorRT record", False, "rebuild the engine with m2f build")
    found = f"{path.name}: TensorRT {built.version}, {built.gpu} ({built.compute_capability}), {meta.precision}"
    # what is unknown here (no TensorRT, no GPU) is taken to match
    device = (driver.gpu, driver.compute_capability) if driver.compute_capability else (built.gpu,
                                                                                      built.compute_capability)
    try:
        check_built_for(built, path.name, tensorrt_version or built.version, device)
    except M2FError as e:
        return Finding("engine", found, False, str(e))
    return Finding("engine", found, True)


def diagnose(plugins: list[str] = (), engines: list[str] = ()) -> list[Finding]:
    """Every check, in the module docstring's order."""
    driver = query_driver()
    trt_finding, trt_version = check_tensorrt()
    findings = [check_python(), trt_finding, *check_driver(driver), check_cuda_bindings(driver)]
    findings += [check_plugin_library(p, trt_version, driver) for p in plugins]
    findings += [check_engine(e, trt_version, driver) for e in engines]
    return findings
