"""Training: data, the generic loop (checkpoints, DDP, MLflow, progress) and the stage tasks."""
