"""Stage `finetune_inpainter@N`: the random-mask image inpainter fine-tuned on the first N
object-mask training pairs -> models/finetuned/inpainter_image_N.pt (the paper's Table III).

    python stages/finetune_inpainter.py 200
"""

import sys

from maskopt.core.errors import MaskoptError
from maskopt.pipeline.stage import run_stage
from maskopt.training.stages import finetune_inpainter


def main(params):
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        raise MaskoptError("usage: finetune_inpainter.py N (a number of training pairs)")
    finetune_inpainter(params, int(sys.argv[1]))


if __name__ == "__main__":
    run_stage(main)
