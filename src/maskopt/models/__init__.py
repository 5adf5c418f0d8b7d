"""Networks of the method: three EdgeConnect-style inpainters and a PanopticFPN segmenter.

The segmenter is imported from :mod:`maskopt.models.segmenter` where it is needed, not
here: it imports torchvision, slow to import, which a stage that trains an inpainter
alone does not need.
"""

from maskopt.models.inpainter import (
    EdgeInpainter,
    ImageInpainter,
    InpaintGenerator,
    PatchDiscriminator,
    SegmentationInpainter,
)
from maskopt.models.selection import select_segment, select_segment_at_point

__all__ = ["EdgeInpainter", "ImageInpainter", "InpaintGenerator", "PatchDiscriminator",
           "SegmentationInpainter", "select_segment", "select_segment_at_point"]
