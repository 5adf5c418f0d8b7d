"""Stage `pretrain_segmentation`: PanopticFPN on the training pairs -> models/segmenter.pt."""

from maskopt.pipeline.stage import run_stage
from maskopt.training.stages import pretrain_segmentation

if __name__ == "__main__":
    run_stage(pretrain_segmentation)
