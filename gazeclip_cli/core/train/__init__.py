"""Training GazeCLIP: run configs, the preprocessed dataset, the loop, checkpoints, distributed helpers."""
