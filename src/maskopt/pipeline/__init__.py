"""The pipeline's plumbing: params, where stages read and write, MLflow, running stages."""
