"""Stage `pretrain_inpainter@KIND` (edge | segmentation | image) -> models/inpainter_KIND.pt,
and with `random`, stage `pretrain_inpainter_random@KIND` -> models/inpainter_random_KIND.pt
(trained on random masks: the paper's baselines).

    python stages/pretrain_inpainter.py edge [object|random]
"""

import sys

from maskopt.core.errors import MaskoptError
from maskopt.models.build import INPAINTERS
from maskopt.pipeline.stage import run_stage
from maskopt.training.stages import MASK_KINDS, pretrain_inpainter


def main(params):
    args = sys.argv[1:]
    if len(args) not in (1, 2) or args[0] not in INPAINTERS or args[1:2] not in ([], *(
            [k] for k in MASK_KINDS)):
        raise MaskoptError(f"usage: pretrain_inpainter.py {{{','.join(INPAINTERS)}}} "
                           f"[{'|'.join(MASK_KINDS)}]")
    pretrain_inpainter(params, args[0], *args[1:])


if __name__ == "__main__":
    run_stage(main)
