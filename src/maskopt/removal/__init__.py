"""Removing an object with the trained networks: the Remover, its faster inference and
the MLflow model that wraps it (what training registers and `maskopt remove` runs)."""
