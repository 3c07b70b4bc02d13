"""Parity and accuracy: task metrics (metrics.py: PQ as panopticapi defines it, mIoU, mask AP through pycocotools)
and scoring any backend on a dataset (evaluate.py)."""
