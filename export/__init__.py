"""torch -> ONNX: the graph contract (adapter.py), in-graph post-processing heads (heads.py) and the exporter with
clean-up and metadata (onnx_export.py)."""
from .onnx_export import ExportOptions, ExportSummary, export_onnx

__all__ = ["ExportOptions", "ExportSummary", "export_onnx"]
