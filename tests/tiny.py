"""Tiny params that run every stage in seconds on 2 CPU cores (tests only)."""

TINY = {
    "sample.train_images": 16, "sample.test_images": 8, "synthesize.workers": 1,
    "synthesize.image_size": 32,
    "segmenter.depth": 18, "segmenter.fpn_channels": 32, "segmenter.box_batch_size": 16,
    "segmenter.detections_per_image": 5,
    "inpainter.width": 4, "inpainter.blocks": 1, "inpainter.vgg_weights": "random",
    "train.workers": 0, "train.threads": 1, "train.checkpoint_every": 2, "train.log_every": 1,
    "train.segmentation": {"steps": 2, "lr": 1e-4, "batch_size": 2},
    "train.inpainter": {"steps": 2, "lr": 1e-4, "batch_size": 2},
    "train.joint": {"steps": 2, "lr": 1e-4, "batch_size": 2},
}


def tiny_params(**changes):
    from maskopt.params import Params

    return Params.model_validate(apply(apply({}, TINY), changes))


def apply(params: dict, changes: dict) -> dict:
    for dotted, value in changes.items():
        section = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            section = section.setdefault(key, {})
        section[leaf] = value
    return params
