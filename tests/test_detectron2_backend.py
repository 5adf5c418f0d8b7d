"""The optional detectron2 backend: runs where detectron2 is installed (CI installs the
wheel from ../shared/wheels), skipped elsewhere."""

import pytest
import torch

pytest.importorskip("detectron2")

from maskopt.models import PanopticFPN, select_segment  # noqa: E402
from maskopt.models.detectron2_backend import Detectron2PanopticFPN  # noqa: E402

SIZE, CLASSES = 64, 5


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    d2 = Detectron2PanopticFPN(1, CLASSES, depth=50, image_size=SIZE, box_batch_size=32,
                               detections_per_image=10)
    tv = PanopticFPN(1, CLASSES, depth=18, fpn_channels=32, image_size=SIZE, box_batch_size=32,
                     detections_per_image=10)
    return d2, tv


def _targets():
    m = torch.zeros(1, SIZE, SIZE, dtype=torch.uint8)
    m[:, 20:44, 24:36] = 1
    return m, [dict(boxes=torch.tensor([[24.0, 20.0, 36.0, 44.0]]), labels=torch.tensor([1]),
                    masks=m, semantic=torch.randint(1, CLASSES, (SIZE, SIZE)))]


def test_losses_are_finite_and_reach_the_mask_head(models):
    d2, _ = models
    d2.train()
    gt, targets = _targets()
    images = torch.rand(1, 3, SIZE, SIZE)
    losses, detections, semantic, features = d2.losses_and_detections(images, targets)
    assert {"loss_sem_seg", "loss_mask", "loss_cls", "loss_rpn_cls"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    assert semantic.shape == (1, CLASSES, SIZE, SIZE)
    soft, _ = select_segment(detections[0], gt[0], d2, features)
    d2.zero_grad()
    soft.sum().backward()
    assert d2.model.roi_heads.mask_head.predictor.weight.grad.abs().sum() > 0


def test_outputs_are_shaped_like_the_torchvision_backend(models):
    d2, tv = models
    images = torch.rand(2, 3, SIZE, SIZE)
    ours, theirs = tv.eval()(images), d2.eval()(images)
    assert ours.semantic_logits.shape == theirs.semantic_logits.shape
    for a, b in zip(ours.detections, theirs.detections, strict=True):
        assert a.boxes.shape[1:] == b.boxes.shape[1:]
        assert a.mask_probs.shape[1:] == b.mask_probs.shape[1:]
        assert a.soft_masks().shape[1:] == b.soft_masks().shape[1:] == (SIZE, SIZE)
        assert a.labels.dtype == b.labels.dtype
