"""Stage `train_joint`: segmenter + three inpainters end to end, with the mask expansion
loss -> models/joint.pt."""

from maskopt.stage import run_stage
from maskopt.training.stages import train_joint

if __name__ == "__main__":
    run_stage(train_joint)
