"""The torch-free runtime: image/video in -> pre-processing -> backend (ONNX Runtime | TensorRT) -> post-processing.

Never imports torch, directly or indirectly (a test enforces it): a Jetson with only TensorRT and numpy runs it.

    from m2f.runtime import HostOptions, Predictor
    result = Predictor("model.onnx").predict("street.jpg")   # Result: semantic, panoptic + segments, instances
    Predictor("model.onnx", HostOptions(tasks=("panoptic",), score_threshold=0.5))
"""
from .host import HostOptions, HostSteps
from .predictor import Predictor
from .results import Instance, Result, Segment

__all__ = ["HostOptions", "HostSteps", "Instance", "Predictor", "Result", "Segment"]
