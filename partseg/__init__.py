"""Part segmentation, the paper's third evaluation: data, metrics, fine-tuning, report."""
