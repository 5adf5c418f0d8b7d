"""The optional detectron2 backend: runs where detectron2 is installed (CI installs the
wheel from ../shared/wheels), skipped elsewhere."""

import pytest
import torch

pytest.importorskip("detectron2")

from tiny import assert_min_score_keeps_the_confident_detections  # noqa: E402

from maskopt.models.detectron2_backend import Detectron2PanopticFPN  # noqa: E402
from maskopt.models.segmenter import PanopticFPN  # noqa: E402
from maskopt.models.selection import selected_mask  # noqa: E402

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
    soft, _ = selected_mask(d2, features, detections[0], gt[0], 2, box_fallback=True)
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


def test_predict_with_min_score_masks_only_the_confident_detections(models):
    assert_min_score_keeps_the_confident_detections(models[0], SIZE)


def test_coco_checkpoint_loads_whole_in_the_configs_pixel_format(tmp_path):
    from maskopt.core.errors import MaskoptError

    torch.manual_seed(0)
    published = Detectron2PanopticFPN(80, 54, depth=50, image_size=SIZE, weights="coco",
                                      load_weights=False)
    state = published.model.state_dict()
    torch.save({"model": state}, tmp_path / "model_final.pth")
    ours = Detectron2PanopticFPN(2, CLASSES, depth=50, image_size=SIZE, weights="coco",
                                 load_weights=False)
    assert ours.input_format == "BGR"
    assert ours.model.pixel_mean.flatten().tolist() == pytest.approx([103.53, 116.28, 123.675])
    report = ours.load_checkpoint(str(tmp_path / "model_final.pth"), "coco", [1, 18])
    own = ours.model.state_dict()
    for key in ("backbone.bottom_up.stem.conv1.weight", "backbone.fpn_lateral2.weight",
                "proposal_generator.rpn_head.conv.weight", "roi_heads.mask_head.mask_fcn1.weight",
                "roi_heads.box_head.fc1.weight"):
        assert torch.equal(own[key], state[key]), key
    cls = "roi_heads.box_predictor.cls_score.weight"
    # person (id 1) is detectron2's class 0, dog (id 18) its class 16; background last
    assert torch.equal(own[cls][0], state[cls][0]) and torch.equal(own[cls][1], state[cls][16])
    assert torch.equal(own[cls][2], state[cls][80])
    mask = "roi_heads.mask_head.predictor.weight"
    assert torch.equal(own[mask][1], state[mask][16])
    assert all(k.startswith("sem_seg_head.predictor.") for k in report["random"])
    torch.save({"model": {k: v for k, v in state.items() if "rpn_head" not in k}},
               tmp_path / "partial.pth")
    with pytest.raises(MaskoptError, match="left random: proposal_generator"):
        ours.load_checkpoint(str(tmp_path / "partial.pth"), "coco", [1, 18])
