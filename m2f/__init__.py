"""m2f: Mask2Former checkpoints (detectron2, HuggingFace) to ONNX and TensorRT, with a torch-free runtime.

Importing ``m2f`` imports nothing heavy; each stage (``m2f.model``, ``m2f.export``, ``m2f.runtime`` …) brings its own
dependencies when it is imported.
"""
__version__ = "0.1.0"

from .errors import M2FError  # noqa: E402  (stdlib-only)

__all__ = ["M2FError", "__version__"]
