"""xpt.train: encoders, losses, augmentations, the streaming pipeline and the training loop."""
