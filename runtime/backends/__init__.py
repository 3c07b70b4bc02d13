"""Backends behind the one runner interface of ``base.Runner``: ``open_backend(path)`` -> a Runner with ``meta``
(the artifact's m2f metadata, ``m2f.contract``), ``input_names`` / ``output_names``, ``input_metadata()``,
``infer(feeds)``, ``last_inference_time()``, ``close()`` and use as a context manager.

ONNX Runtime (any execution provider) for ``.onnx``; the TensorRT engine runner for ``.engine``/``.plan`` (with its
``<engine>.json`` sidecar). Each imports its library only when opened.
"""
from __future__ import annotations

from pathlib import Path

from m2f.errors import BackendError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def open_backend(path: str | Path, providers: list[str] | None = None, plugins: str | None = None,
                 threads: int | None = None):
    path = Path(path)
    if not path.exists():
        raise BackendError(f"model {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, providers, threads)
    if suffix in ENGINE_SUFFIXES:
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, plugins)
    raise BackendError(f"cannot tell what {path.name} is; give an .onnx file from 'm2f export' or a TensorRT engine "
                       f"({', '.join(ENGINE_SUFFIXES)})")
