"""xpt.benchmarks: evaluation datasets, feature extraction, linear SVM and few-shot."""
