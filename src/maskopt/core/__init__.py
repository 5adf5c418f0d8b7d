"""Shared pieces every layer uses: errors, files, images, devices, classes."""
