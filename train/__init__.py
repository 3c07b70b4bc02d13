"""Fine-tuning: matcher, criterion, augmentation, training loop, synthetic data. Not built yet."""
