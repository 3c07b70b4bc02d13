"""Parity and accuracy: PyTorch vs ONNX vs engine, tensor statistics, task metrics and the report. Not built yet."""
