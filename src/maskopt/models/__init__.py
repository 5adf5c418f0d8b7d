"""Networks of the method: three EdgeConnect-style inpainters and a PanopticFPN segmenter."""

from maskopt.models.inpainter import (
    EdgeInpainter,
    ImageInpainter,
    InpaintGenerator,
    PatchDiscriminator,
    SegmentationInpainter,
)
from maskopt.models.segmenter import PanopticFPN
from maskopt.models.selection import select_segment, select_segment_at_point

__all__ = ["EdgeInpainter", "ImageInpainter", "InpaintGenerator", "PatchDiscriminator",
           "SegmentationInpainter", "PanopticFPN", "select_segment", "select_segment_at_point"]
