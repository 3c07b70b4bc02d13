"""TensorRT engine runner (TensorRT 10.x and 11.x named-tensor API; docs/tensorrt.md).

Buffers: one device allocation and one pinned host buffer per I/O tensor, grown only when a new input shape needs
more bytes than the largest so far (smaller shapes reuse it), and freed on ``close()`` and when replaced. Copies are
async on one stream; static-shape engines replay a CUDA graph after the first run. CUDA through cuda-python
(``cuda.bindings.runtime``), PyCUDA as a fallback (no graph replay: PyCUDA has no stream capture). Plugin libraries
load through TensorRT's registry (``trt_plugins``) from ``plugins``, ``$M2F_PLUGINS`` or the package's own
``plugins/lib``. Metadata comes
from the ``<engine>.json`` sidecar, which also records the TensorRT version and GPU the engine was built for: an
engine of another TensorRT version or GPU is refused with one sentence naming both.

Not testable without a GPU and TensorRT: its tests are marked ``trt``/``gpu``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from m2f.contract import EngineInfo, parse, sidecar_path
from m2f.cuda import Cuda
from m2f.errors import BackendError, require

from .base import Runner
from .trt_plugins import load_plugin_libraries, plugin_libraries


class _Buffer:
    """One tensor's device allocation and pinned staging buffer, reused while large enough."""

    def __init__(self, cuda: Cuda):
        self.cuda, self.capacity = cuda, 0
        self.device = self.host = self.host_handle = None

    def ensure(self, nbytes: int) -> None:
        if nbytes <= self.capacity:
            return
        self.free()
        self.device = self.cuda.device_alloc(nbytes)
        self.host, self.host_handle = self.cuda.pinned(nbytes)
        self.capacity = nbytes

    def view(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """The staging buffer as ``shape`` x ``dtype``; BackendError when that is larger than what was allocated."""
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if nbytes > self.capacity:
            raise BackendError(f"a tensor of {list(shape)} {dtype} ({nbytes} bytes) does not fit its "
                               f"{self.capacity}-byte buffer; this is a bug in m2f's engine runner")
        return self.host[:nbytes].view(dtype).reshape(shape)

    def free(self) -> None:
        if self.capacity:
            self.cuda.device_free(self.device)
            self.cuda.pinned_free(self.host_handle)
        self.device = self.host = self.host_handle = None
        self.capacity = 0


def check_built_for(built: EngineInfo | None, engine_name: str, trt_version: str, device: tuple[str, str]) -> None:
    """BackendError naming both when the sidecar's engine record (``built``) says the engine was built by another
    TensorRT (major.minor) or for another GPU (compute capability)."""
    if built is None:
        return
    if built.version.split(".")[:2] != trt_version.split(".")[:2]:
        raise BackendError(f"{engine_name} was built with TensorRT {built.version} but this is TensorRT "
                           f"{trt_version}; engines only run on the version that built them: rebuild it from the "
                           f".onnx here (m2f build)")
    name, capability = device
    if built.compute_capability != capability:
        raise BackendError(f"{engine_name} was built for {built.gpu} (compute capability "
                           f"{built.compute_capability}) but this is {name} ({capability}); engines are specific "
                           f"to the GPU they were built on: rebuild it from the .onnx here (m2f build)")


class TensorRTBackend(Runner):
    """A serialized TensorRT engine with its sidecar (the runner interface of ``base.Runner``)."""

    name = "tensorrt"

    def __init__(self, path: Path, plugins: str | None = None):
        super().__init__()
        trt = require("tensorrt", "trt", "running a TensorRT engine")
        self.trt = trt
        sidecar = sidecar_path(path)
        self.meta = parse(sidecar.read_text() if sidecar.exists() else None, f"{path.name} (sidecar {sidecar.name})")
        self.cuda = Cuda()
        check_built_for(self.meta.tensorrt, path.name, trt.__version__, self.cuda.device())
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        load_plugin_libraries(trt, plugin_libraries(plugins))
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT could not load {path.name}; it needs a plugin library (--plugins / "
                               f"$M2F_PLUGINS) or is damaged; rebuild it from the .onnx here (m2f build)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self._buffers = {n: _Buffer(self.cuda) for n in names}
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._shapes: dict[str, tuple] = {}
        self._graph = None
        self.static = all(-1 not in tuple(self.engine.get_tensor_shape(n)) for n in names)

    def device_memory_mb(self) -> float:
        return self.cuda.memory_used_mb()

    def input_metadata(self) -> dict[str, tuple[str, list]]:
        return {n: (self._dtypes[n].name, [d if d >= 0 else "dynamic" for d in self.engine.get_tensor_shape(n)])
                for n in self.input_names}

    def _bind(self, feeds: dict[str, np.ndarray]) -> None:
        """Set input shapes and tensor addresses when the input shapes change (CUDA graphs need fixed addresses)."""
        shapes = {n: tuple(feeds[n].shape) for n in self.input_names}
        if shapes == self._shapes:
            return
        for n, shape in shapes.items():
            if not self.context.set_input_shape(n, shape):
                low, _, high = self.engine.get_tensor_profile_shape(n, 0)
                raise BackendError(f"input {n} of shape {list(shape)} is outside the engine's optimisation profile "
                                   f"({list(low)} to {list(high)}); rebuild it with m2f build "
                                   f"--min-shapes/--max-shapes covering this size")
        try:
            unresolved = self.context.infer_shapes()
        except RuntimeError as e:  # the bindings raise when a shape cannot be computed from the inputs
            raise BackendError(f"TensorRT could not compute the output shapes for inputs {shapes}: {e}") from None
        if unresolved:
            raise BackendError(f"TensorRT could not resolve the shapes of {unresolved} for inputs {shapes}; the "
                               f"engine's optimisation profile may not cover this size")
        for n, buffer in self._buffers.items():
            shape = tuple(self.context.get_tensor_shape(n))
            buffer.ensure(max(int(np.prod(shape)) * self._dtypes[n].itemsize, 1))
            if not self.context.set_tensor_address(n, int(buffer.device)):
                raise BackendError(f"TensorRT refused the device buffer of {n}")
        self._shapes = shapes
        self._drop_graph()

    def _drop_graph(self) -> None:
        if self._graph is not None and self.cuda.cudart is not None:
            self.cuda.check(self.cuda.cudart.cudaGraphExecDestroy(self._graph))
        self._graph = None

    def _enqueue(self) -> None:
        cudart = self.cuda.cudart
        if self._graph is not None:
            self.cuda.check(cudart.cudaGraphLaunch(self._graph, self.cuda.stream))
            return
        if not self.context.execute_async_v3(self.cuda.handle):
            raise BackendError("TensorRT failed to run the engine (see the TensorRT log above)")
        if self.static and cudart is not None:  # capture once the first plain run has initialised everything
            self.cuda.sync()
            mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            try:
                self.cuda.check(cudart.cudaStreamBeginCapture(self.cuda.stream, mode))
                captured = self.context.execute_async_v3(self.cuda.handle)
                graph = self.cuda.check(cudart.cudaStreamEndCapture(self.cuda.stream))
                if captured:  # a failed enqueue leaves a graph that must never be replayed
                    self._graph = self.cuda.check(cudart.cudaGraphInstantiate(graph, 0))
                self.cuda.check(cudart.cudaGraphDestroy(graph))
            except BackendError:
                self._graph = None  # capture unsupported here (plugins, weight streaming): plain enqueue it is

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._bind(feeds)
        for n in self.input_names:
            host = self._buffers[n].view(self._shapes[n], self._dtypes[n])
            np.copyto(host, feeds[n].astype(self._dtypes[n], copy=False))
            self.cuda.h2d(self._buffers[n].device, host)
        self._enqueue()
        outputs = {}
        for n in self.output_names:
            outputs[n] = self._buffers[n].view(tuple(self.context.get_tensor_shape(n)), self._dtypes[n])
            self.cuda.d2h(outputs[n], self._buffers[n].device)
        self.cuda.sync()
        return {n: a.copy() for n, a in outputs.items()}

    def bind_thread(self) -> None:
        """Called by the pipelined runtime on its inference thread before the first ``infer`` there."""
        self.cuda.bind_thread()

    def _release(self) -> None:
        self._drop_graph()
        for buffer in self._buffers.values():
            buffer.free()
        self.context = self.engine = None
        self.cuda.release()
