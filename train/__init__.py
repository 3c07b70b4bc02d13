"""Fine-tuning and training (torch): the Hungarian matcher and SetCriterion of docs/model.md §3 (matcher.py,
criterion.py, point_sampling.py), LSJ augmentation (augment.py), AdamW parameter groups, schedules and clipping
(optim.py), trainable BatchNorm (batchnorm.py), initialisation from any checkpoint (init.py) and the loop with
checkpoints and exact resume (trainer.py). The datasets it reads live in ``m2f.datasets``."""
