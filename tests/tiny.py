"""Tiny params that run every stage in seconds on 2 CPU cores, and checks shared by test
modules (tests only)."""

TINY = {
    "sample.train_images": 16, "sample.test_images": 8, "synthesize.workers": 1,
    "synthesize.image_size": 32,
    "synthesize.validation_images": 4, "synthesize.min_pairs": 1,
    "segmenter.depth": 18, "segmenter.fpn_channels": 32, "segmenter.box_batch_size": 16,
    "segmenter.weights": "none",  # the sample's zoo is made for its 128 px
    "segmenter.detections_per_image": 5,
    "inpainter.width": 4, "inpainter.blocks": 1, "inpainter.vgg_weights": "random",
    "train.workers": 0, "train.threads": 1, "train.checkpoint_every": 2, "train.log_every": 1,
    "train.segmentation": {"steps": 2, "lr": 1e-4, "batch_size": 2},
    "train.inpainter": {"steps": 2, "lr": 1e-4, "batch_size": 2},
    "train.joint": {"steps": 2, "lr": 1e-4, "batch_size": 2},
    "finetune.pairs": [4], "finetune.steps": 2,
}


def tiny_params(**changes):
    from maskopt.pipeline.params import Params

    return Params.model_validate(apply(apply({}, TINY), changes))


def apply(params: dict, changes: dict) -> dict:
    for dotted, value in changes.items():
        section = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            section = section.setdefault(key, {})
        section[leaf] = value
    return params


def assert_min_score_keeps_the_confident_detections(segmenter, size: int) -> None:
    """``predict(min_score=)`` keeps the detections scoring at least that, with the
    boxes, labels and masks they have without it (either segmenter backend)."""
    import torch

    image = torch.rand(1, 3, size, size)
    segmenter.eval()
    with torch.no_grad():
        every = segmenter.predict(image).detections[0]
        assert len(every) >= 3  # an untrained head scores its boxes alike: pick a cut
        cut = float(every.scores.sort(descending=True).values[len(every) // 2])
        confident = segmenter.predict(image, min_score=cut).detections[0]
    kept = every.scores >= cut
    assert 0 < len(confident) == int(kept.sum()) < len(every)
    assert torch.equal(confident.boxes, every.boxes[kept])
    assert torch.equal(confident.labels, every.labels[kept])
    torch.testing.assert_close(confident.mask_probs, every.mask_probs[kept])


def fixed_detections(remover, boxes, segmenter=None):
    """Make ``remover``'s segmenter (or ``segmenter``) 'find' full-box instances at
    ``boxes`` (network pixels); its mask head then paints the whole (grown) box it is
    given, so that a selection is known in advance (2 training steps detect nothing)."""
    import torch

    from maskopt.models.detections import Detections, SegmenterOutput

    size, classes = remover.nets.image_size, remover.nets.num_classes
    segmenter = segmenter if segmenter is not None else remover.nets.segmenter

    def predict(images, min_score=None):
        n = len(boxes)
        det = Detections(torch.tensor(boxes, dtype=torch.float32), torch.ones(n, dtype=torch.long),
                         torch.linspace(0.9, 0.8, n), torch.ones(n, 1, 28, 28), (size, size))
        return SegmenterOutput([det], torch.zeros(1, classes, size, size), {})

    def mask_probs(features, boxes, labels, image_sizes):
        return [torch.ones(len(b), 1, 28, 28) for b in boxes]

    segmenter.predict = predict
    segmenter.mask_probs = mask_probs
