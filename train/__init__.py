"""Fine-tuning. Built so far: the Hungarian matcher and the criterion of reference §3 (matcher.py, criterion.py,
point_sampling.py). Not yet: augmentation, datasets, the training loop, the synthetic dataset, the bundled model."""
