"""Networks of the method: three EdgeConnect-style inpainters and a PanopticFPN segmenter."""

from maskopt.torchvision_import import import_torchvision_without_dynamo

import_torchvision_without_dynamo()  # before the modules below import torchvision

# isort: split

from maskopt.models.inpainter import (  # noqa: E402
    EdgeInpainter,
    ImageInpainter,
    InpaintGenerator,
    PatchDiscriminator,
    SegmentationInpainter,
)
from maskopt.models.segmenter import (  # noqa: E402
    PanopticFPN,
    select_segment,
    select_segment_at_point,
)

__all__ = ["EdgeInpainter", "ImageInpainter", "InpaintGenerator", "PatchDiscriminator",
           "SegmentationInpainter", "PanopticFPN", "select_segment", "select_segment_at_point"]
