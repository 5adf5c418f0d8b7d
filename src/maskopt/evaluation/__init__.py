"""Metrics and reports of the evaluate stage."""
