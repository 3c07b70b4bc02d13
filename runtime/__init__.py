"""The torch-free runtime: image/video in -> pre-processing -> backend (ONNX Runtime | TensorRT) -> post-processing.

Never imports torch, directly or indirectly (a test enforces it): a Jetson with only TensorRT and numpy runs it.

    from m2f.runtime import Predictor
    result = Predictor("model.onnx").predict("street.jpg")   # Result: semantic, panoptic + segments, instances
"""
from .predictor import Predictor
from .results import Instance, Result, Segment

__all__ = ["Instance", "Predictor", "Result", "Segment"]
