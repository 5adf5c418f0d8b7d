"""Datasets: the COCO download, the offline sample, the panoptic reader, pair synthesis."""
