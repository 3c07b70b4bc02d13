"""Parity and accuracy. Built so far: task metrics (metrics.py: PQ as panopticapi, mIoU, mask AP via pycocotools).
Not yet: PyTorch vs ONNX vs engine comparison, tensor statistics, the report."""
