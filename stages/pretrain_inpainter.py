"""Stage `pretrain_inpainter@KIND` (edge | segmentation | image) -> models/inpainter_KIND.pt.

    python stages/pretrain_inpainter.py edge
"""

import sys

from maskopt.errors import MaskoptError
from maskopt.models.build import INPAINTERS
from maskopt.stage import run_stage
from maskopt.training.stages import pretrain_inpainter


def main(params):
    if len(sys.argv) != 2 or sys.argv[1] not in INPAINTERS:
        raise MaskoptError(f"usage: pretrain_inpainter.py {{{','.join(INPAINTERS)}}}")
    pretrain_inpainter(params, sys.argv[1])


if __name__ == "__main__":
    run_stage(main)
