"""torch -> ONNX (graph contract, op flavors, in-graph post-processing heads). ONNX -> TensorRT comes later."""
from .onnx_export import ExportOptions, ExportSummary, export_onnx

__all__ = ["ExportOptions", "ExportSummary", "export_onnx"]
