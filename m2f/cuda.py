"""The few CUDA runtime calls m2f makes from Python (engine runner, build-time calibrator), through cuda-python or
PyCUDA, whichever is installed. Torch-free; imported only where a GPU is used."""
from __future__ import annotations

import ctypes

import numpy as np

from m2f.errors import BackendError, require


class Cuda:
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

            self.context = self.pycuda.Context.get_current()
            self.stream = self.pycuda.Stream()
            self.handle = self.stream.handle
        else:
            self.device_index = self.check(cudart.cudaGetDevice())
            self.stream = self.check(cudart.cudaStreamCreate())
            self.handle = int(self.stream)

    def bind_thread(self) -> None:
        """Make this device (cuda-python) or context (PyCUDA) current on the calling thread, for a runner used from
        a thread other than the one that made it (the pipelined runtime's inference thread)."""
        if self.cudart is None:
            self.context.push()
        else:
            self.check(self.cudart.cudaSetDevice(self.device_index))

    def check(self, result):
        err, *values = result
        if int(err) != 0:
            raise BackendError(f"CUDA call failed with {err}; is a GPU visible and the driver working?")
        return values[0] if len(values) == 1 else (values or None)

    def device(self) -> tuple[str, str]:
        """(GPU name, compute capability "major.minor") of the current device."""
        if self.cudart is None:
            dev = self.pycuda.Context.get_device()
            major, minor = dev.compute_capability()
            return dev.name(), f"{major}.{minor}"
        props = self.check(self.cudart.cudaGetDeviceProperties(self.check(self.cudart.cudaGetDevice())))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00"), f"{props.major}.{props.minor}"

    def device_alloc(self, nbytes: int):
        if self.cudart is None:
            return self.pycuda.mem_alloc(nbytes)
        return self.check(self.cudart.cudaMalloc(nbytes))

    def device_free(self, ptr) -> None:
        if self.cudart is None:
            ptr.free()
        else:
            self.check(self.cudart.cudaFree(ptr))

    def pinned(self, nbytes: int):
        """(pinned host buffer as a uint8 array, handle to free it)."""
        if self.cudart is None:
            buf = self.pycuda.pagelocked_empty(nbytes, np.uint8)
            return buf, buf
        ptr = self.check(self.cudart.cudaMallocHost(nbytes))
        return np.frombuffer((ctypes.c_byte * nbytes).from_address(ptr), np.uint8), ptr

    def pinned_free(self, handle) -> None:
        if self.cudart is None:
            handle.base.free()  # pagelocked_empty's array is a view of a HostAllocation
        else:
            self.check(self.cudart.cudaFreeHost(handle))

    def h2d(self, device, host: np.ndarray) -> None:
        if self.cudart is None:
            self.pycuda.memcpy_htod_async(device, host, self.stream)
        else:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self.check(self.cudart.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, kind, self.stream))

    def d2h(self, host: np.ndarray, device) -> None:
        if self.cudart is None:
            self.pycuda.memcpy_dtoh_async(host, device, self.stream)
        else:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self.check(self.cudart.cudaMemcpyAsync(host.ctypes.data, device, host.nbytes, kind, self.stream))

    def sync(self) -> None:
        if self.cudart is None:
            self.stream.synchronize()
        else:
            self.check(self.cudart.cudaStreamSynchronize(self.stream))

    def memory_used_mb(self) -> float:
        """Device memory in use on the current GPU (every process), MB."""
        if self.cudart is None:
            free, total = self.pycuda.mem_get_info()
        else:
            free, total = self.check(self.cudart.cudaMemGetInfo())
        return (total - free) / 2**20

    def release(self) -> None:
        if self.cudart is not None:
            self.check(self.cudart.cudaStreamDestroy(self.stream))
