"""Datasets that training, the demo, validation and calibration all read (numpy + Pillow; no torch).

- ``coco``: COCO panoptic (json + PNGs) and COCO instances (json with polygons or RLE) readers, ``open_dataset``.
- ``synthetic``: the deterministic synthetic panoptic dataset the bundled model was trained on.
"""
