"""Stage `train_joint`: segmenter + three inpainters end to end, with the mask expansion
loss -> models/joint.pt; with `without-mel`, stage `train_joint_without_mel`: the same
without it (the paper's "w/o MEL") -> models/joint_without_mel.pt.

    python stages/train_joint.py [without-mel]
"""

import sys

from maskopt.core.errors import MaskoptError
from maskopt.pipeline.stage import run_stage
from maskopt.training.stages import train_joint


def main(params):
    if sys.argv[1:] not in ([], ["without-mel"]):
        raise MaskoptError("usage: train_joint.py [without-mel]")
    train_joint(params, without_mel=sys.argv[1:] == ["without-mel"])


if __name__ == "__main__":
    run_stage(main)
