"""TensorRT engine runner (TensorRT 10.x and 11.x named-tensor API; reference tensorrt-api.md §7).

Device buffers are allocated once per shape, host staging buffers are pinned, copies are async on one stream, and
static-shape engines replay a CUDA graph after the first run. CUDA through cuda-python (``cuda.bindings.runtime``),
PyCUDA as a fallback (no graph replay: PyCUDA has no stream capture). Plugin libraries load from ``plugins``,
``$M2F_PLUGINS`` (os.pathsep-separated) or the package's own ``plugins/lib``. Metadata comes from the
``<engine>.json`` sidecar, which also records the TensorRT version and GPU the engine was built for.

Not testable without a GPU and TensorRT: its tests are marked ``trt``/``gpu``.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from m2f.errors import BackendError, require
from m2f.contract import parse, sidecar_path


def _plugin_libraries(plugins: str | None) -> list[Path]:
    paths = [plugins] if plugins else []
    paths += [p for p in os.environ.get("M2F_PLUGINS", "").split(os.pathsep) if p]
    bundled = Path(__file__).resolve().parents[2] / "plugins" / "lib"
    if bundled.is_dir():
        paths += [str(p) for p in sorted(bundled.glob("*.so"))]
    for p in paths:
        if not Path(p).exists():
            raise BackendError(f"plugin library {p} does not exist; build it or fix --plugins / $M2F_PLUGINS")
    return [Path(p) for p in paths]


class _Cuda:
    """The few CUDA runtime calls needed, through cuda-python or PyCUDA."""

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # cuda-python < 12.9 layout
            except ImportError:
                cudart = None
        self.cudart = cudart
        if cudart is None:
            self.pycuda = require("pycuda.driver", "trt", "running a TensorRT engine (cuda-python or pycuda)")
            import pycuda.autoprimaryctx  # noqa: F401  (retains the primary context)

            self.stream = self.pycuda.Stream()
            self.handle = self.stream.handle
        else:
            self.stream = self._check(cudart.cudaStreamCreate())
            self.handle = int(self.stream)

    def _check(self, result):
        err, *values = result
        if int(err) != 0:
            raise BackendError(f"CUDA call failed with {err}; is a GPU visible and the driver working?")
        return values[0] if len(values) == 1 else values

    def device_alloc(self, nbytes: int) -> int:
        if self.cudart is None:
            return self.pycuda.mem_alloc(nbytes)
        return self._check(self.cudart.cudaMalloc(nbytes))

    def pinned(self, shape, dtype) -> np.ndarray:
        if self.cudart is None:
            return self.pycuda.pagelocked_empty(shape, dtype)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = self._check(self.cudart.cudaMallocHost(max(nbytes, 1)))
        buf = (ctypes.c_byte * max(nbytes, 1)).from_address(ptr)
        return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def h2d(self, device, host: np.ndarray) -> None:
        if self.cudart is None:
            self.pycuda.memcpy_htod_async(device, host, self.stream)
        else:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(self.cudart.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, kind, self.stream))

    def d2h(self, host: np.ndarray, device) -> None:
        if self.cudart is None:
            self.pycuda.memcpy_dtoh_async(host, device, self.stream)
        else:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(self.cudart.cudaMemcpyAsync(host.ctypes.data, device, host.nbytes, kind, self.stream))

    def sync(self) -> None:
        if self.cudart is None:
            self.stream.synchronize()
        else:
            self._check(self.cudart.cudaStreamSynchronize(self.stream))


class TensorRTBackend:
    def __init__(self, path: Path, plugins: str | None = None):
        trt = require("tensorrt", "trt", "running a TensorRT engine")
        self.trt = trt
        sidecar = sidecar_path(path)
        self.meta = parse(sidecar.read_text() if sidecar.exists() else None, f"{path.name} (sidecar {sidecar.name})")
        built = self.meta.get("tensorrt", {})
        if built.get("version") and built["version"].split(".")[:2] != trt.__version__.split(".")[:2]:
            raise BackendError(f"{path.name} was built with TensorRT {built['version']} but this is TensorRT "
                               f"{trt.__version__}; engines only run on the version that built them: rebuild it from "
                               f"the .onnx on this machine")
        for lib in _plugin_libraries(plugins):
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        self.cuda = _Cuda()
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            gpu = built.get("gpu", "another GPU")
            raise BackendError(f"TensorRT could not load {path.name}; it was built for {gpu}, a different TensorRT, or "
                               f"needs a plugin library (--plugins / $M2F_PLUGINS); rebuild it on this machine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self._shapes: dict[str, tuple] = {}
        self._device: dict[str, object] = {}
        self._host: dict[str, np.ndarray] = {}
        self._graph = None
        self.static = all(-1 not in tuple(self.engine.get_tensor_shape(n)) for n in names)

    def _bind(self, feeds: dict[str, np.ndarray]) -> None:
        """(Re)allocate buffers when input shapes change; addresses stay fixed otherwise (CUDA graphs rely on it)."""
        shapes = {n: feeds[n].shape for n in self.input_names}
        if shapes == {n: self._shapes.get(n) for n in self.input_names}:
            return
        for n in self.input_names:
            self.context.set_input_shape(n, feeds[n].shape)
        unresolved = self.context.infer_shapes()
        if unresolved:
            raise BackendError(f"TensorRT could not resolve the shapes of {unresolved} for inputs {shapes}; the "
                               f"engine's optimisation profile may not cover this size")
        for n in self.input_names + self.output_names:
            shape = tuple(self.context.get_tensor_shape(n))
            dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(n)))
            self._host[n] = self.cuda.pinned(shape, dtype)
            self._device[n] = self.cuda.device_alloc(max(self._host[n].nbytes, 1))
            self.context.set_tensor_address(n, int(self._device[n]))
        self._shapes = {n: tuple(self.context.get_tensor_shape(n)) for n in self.input_names}
        self._graph = None

    def _enqueue(self) -> None:
        cudart = self.cuda.cudart
        if self._graph is not None:
            self.cuda._check(cudart.cudaGraphLaunch(self._graph, self.cuda.stream))
            return
        if not self.context.execute_async_v3(self.cuda.handle):
            raise BackendError("TensorRT failed to run the engine (see the TensorRT log above)")
        if self.static and cudart is not None:  # capture once the first plain run has initialised everything
            self.cuda.sync()
            mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            try:
                self.cuda._check(cudart.cudaStreamBeginCapture(self.cuda.stream, mode))
                self.context.execute_async_v3(self.cuda.handle)
                graph = self.cuda._check(cudart.cudaStreamEndCapture(self.cuda.stream))
                self._graph = self.cuda._check(cudart.cudaGraphInstantiate(graph, 0))
            except BackendError:
                self._graph = None  # capture unsupported here (plugins, weight streaming): plain enqueue it is

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._bind(feeds)
        for n in self.input_names:
            np.copyto(self._host[n], feeds[n].astype(self._host[n].dtype, copy=False))
            self.cuda.h2d(self._device[n], self._host[n])
        self._enqueue()
        for n in self.output_names:
            self.cuda.d2h(self._host[n], self._device[n])
        self.cuda.sync()
        return {n: self._host[n].copy() for n in self.output_names}

    def close(self) -> None:
        self.context = self.engine = None

