"""The torch-free runtime: image/video in -> pre-processing -> backend (ONNX Runtime | TensorRT) -> post-processing.

Never imports torch, directly or indirectly (a test enforces it): a Jetson with only TensorRT and numpy runs it.
"""
