"""Fine-tuning. Built so far: the Hungarian matcher and criterion of reference §3 (matcher.py, criterion.py,
point_sampling.py), the synthetic COCO-panoptic dataset generator (synthetic.py) and the COCO panoptic reader shared
with calibration (data.py). Not yet: augmentation, the training loop and `m2f train`, metrics, the bundled model."""
