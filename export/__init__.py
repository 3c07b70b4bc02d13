"""torch -> ONNX: the graph contract (adapter.py), in-graph post-processing heads (heads.py) and the exporter with
clean-up and metadata (onnx_export.py); ONNX -> ONNX at another precision (fp16.py) and ONNX -> TensorRT engine
(engine.py), which need no torch.

The exporter's names are imported on first use, so ``m2f.export.fp16`` and ``m2f.export.engine`` load on a machine
without torch (a Jetson with TensorRT only).
"""
import importlib

_EXPORTS = {"ExportOptions": "onnx_export", "ExportSummary": "onnx_export", "export_onnx": "onnx_export"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'm2f.export' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
