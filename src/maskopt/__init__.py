"""maskopt: inpainting-driven mask optimization for object removal."""

__version__ = "0.1.0"
