"""The pipeline's layout in one place: where each stage reads and writes, and which
params each stage's result depends on.

``STAGE_PARAMS`` is what a stage fingerprints its checkpoint with and logs to MLflow;
dvc.yaml lists the same keys per stage (``tests/test_dvc_pipeline.py`` checks that the
two agree), so a change of any other param reruns nothing. Settings that only change
how fast or how often a stage reports (``RUN_ONLY``) are in neither.
"""

from __future__ import annotations

from pathlib import Path

PAIRS = Path("data/pairs")
MODELS = Path("models")
REPORTS = Path("reports")
TRAIN_REPORTS = REPORTS / "train"
CURVES = REPORTS / "curves"  # losses against step, for `dvc plots`
CHECKPOINTS = Path(".checkpoints")
SEGMENTER_FILE = MODELS / "segmenter.pt"
JOINT_FILE = MODELS / "joint.pt"
JOINT_WITHOUT_MEL_FILE = MODELS / "joint_without_mel.pt"  # the paper's "w/o MEL" (Table V)


def inpainter_file(kind: str, masks: str = "object") -> Path:
    """The pretrained inpainter of ``kind``, trained on object masks (the method's) or on
    random masks (the paper's baselines)."""
    name = f"inpainter_{kind}" if masks == "object" else f"inpainter_{masks}_{kind}"
    return MODELS / f"{name}.pt"


def finetuned_file(pairs: int) -> Path:
    """The random-mask image inpainter fine-tuned on ``pairs`` object-mask pairs (Table III)."""
    return MODELS / "finetuned" / f"inpainter_image_{pairs}.pt"


# train.threads, train.cpu_kernels: another thread count or other kernels round sums
# differently, and a few hundred steps from scratch make that another model
_TRAINING = ["seed", "train.device", "train.cpu_kernels", "train.amp", "train.threads"]
STAGE_PARAMS: dict[str, list[str]] = {
    "download": ["seed", "data.source", "data.root", "data.downloads", "data.max_images",
                 "data.coco_base_url", "data.coco_checksums", "sample"],
    "synthesize": ["seed", "data.root", "synthesize.image_size", "synthesize.train_pairs",
                   "synthesize.test_pairs", "synthesize.validation_images",
                   "synthesize.validation_pairs", "synthesize.person_scale",
                   "synthesize.min_person_area",
                   "synthesize.max_truncation", "synthesize.blur_sigma",
                   "synthesize.min_mask_ratio", "synthesize.max_mask_ratio",
                   "synthesize.min_pairs"],
    "pretrain_segmentation": [*_TRAINING, "segmenter", "synthesize.image_size",
                              "train.segmentation"],
    # train.cache_pairs: cached, the segmentation inpainter's input (the frozen
    # segmenter's class probabilities) is computed on a batch's new pairs alone, which
    # rounds differently from the whole batch
    "pretrain_inpainter": [*_TRAINING, "inpainter", "loss", "train.inpainter",
                           "train.d_lr_ratio", "train.cache_pairs"],
    "pretrain_inpainter_random": [*_TRAINING, "inpainter", "loss", "train.inpainter",
                                  "train.d_lr_ratio", "random_masks", "train.cache_pairs"],
    "finetune_inpainter": [*_TRAINING, "inpainter", "loss", "train.inpainter",
                           "train.d_lr_ratio", "finetune"],
    "train_joint": [*_TRAINING, "alpha", "loss", "inpainter", "segmenter",
                    "synthesize.image_size", "train.joint", "train.mask_expansion",
                    "train.d_lr_ratio"],
    "train_joint_without_mel": [*_TRAINING, "alpha", "loss", "inpainter", "segmenter",
                                "synthesize.image_size", "train.joint", "train.d_lr_ratio"],
    "evaluate_baselines": ["evaluate.dilations", "evaluate.edgeconnect_weights",
                           "finetune.pairs", "inpainter.canny_sigma", "train.device",
                           "train.cpu_kernels", "train.threads"],
    "evaluate": ["alpha", "evaluate.dilations", "evaluate.external_inpainters",
                 "evaluate.edgeconnect_weights",
                 "finetune.pairs", "train.device", "train.cpu_kernels", "train.mask_expansion",
                 "train.threads"],
    "fixed_dilation": ["alpha", "evaluate.fixed_dilations", "evaluate.external_inpainters",
                       "train.device", "train.cpu_kernels", "train.threads"],
    "paper_report": ["alpha", "evaluate.dilations", "synthesize.image_size",
                     "train.mask_expansion"],
}
RUN_ONLY = ["train.workers", "train.checkpoint_every", "train.log_every", "train.grid_pairs"]
