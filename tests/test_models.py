import pytest
import torch
from tiny import assert_min_score_keeps_the_confident_detections
from torchvision.models.detection.image_list import ImageList

from maskopt.core.errors import MaskoptError
from maskopt.models import (
    EdgeInpainter,
    ImageInpainter,
    PatchDiscriminator,
    SegmentationInpainter,
    select_segment,
    select_segment_at_point,
)
from maskopt.models.detections import Detections, paste_soft_masks
from maskopt.models.inpainter import count_parameters
from maskopt.models.losses import reconstruction_l1_loss
from maskopt.models.segmenter import PanopticFPN
from maskopt.models.selection import selected_mask, straight_through

SIZE = 64
CLASSES = 5


def test_paper_width_parameter_counts_match_edgeconnect():
    # EdgeConnect (Nazeri et al.) reports ≈10.8 M generator and ≈2.8 M discriminator.
    assert count_parameters(EdgeInpainter(width=64)) == pytest.approx(10.8e6, rel=0.05)
    assert count_parameters(PatchDiscriminator(2, width=64)) == pytest.approx(2.8e6, rel=0.05)
    assert count_parameters(ImageInpainter(CLASSES, width=64)) == pytest.approx(10.8e6, rel=0.05)
    coco = 134  # 133 panoptic categories + unlabeled
    assert count_parameters(ImageInpainter(coco, width=64)) == pytest.approx(10.8e6, rel=0.05)
    assert count_parameters(SegmentationInpainter(coco, width=64)) == pytest.approx(10.8e6,
                                                                                      rel=0.05)


def test_inpainters_shapes_and_ranges():
    torch.manual_seed(0)
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:20, 10:18] = 1
    gray, edges, rgb = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32)
    seg = torch.nn.functional.one_hot(torch.randint(0, CLASSES, (2, 32, 32)), CLASSES)
    seg = seg.permute(0, 3, 1, 2).float()
    edge_out = EdgeInpainter(width=8, blocks=1)(gray, edges, mask)
    assert edge_out.shape == (2, 1, 32, 32) and 0 <= edge_out.min() and edge_out.max() <= 1
    seg_out = SegmentationInpainter(CLASSES, width=8, blocks=1)(seg, mask)
    assert seg_out.shape == (2, CLASSES, 32, 32)
    image_out = ImageInpainter(CLASSES, width=8, blocks=1)(rgb, edge_out, seg, mask)
    assert image_out.shape == (2, 3, 32, 32) and 0 <= image_out.min() and image_out.max() <= 1
    logits, features = PatchDiscriminator(3, width=8)(image_out)
    assert len(features) == 5 and features[-1] is logits and logits.shape[:2] == (2, 1)


def test_generator_refuses_sizes_not_divisible_by_four():
    with pytest.raises(ValueError, match="multiple of 4"):
        EdgeInpainter(width=8, blocks=1)(torch.rand(1, 1, 30, 30), torch.rand(1, 1, 30, 30),
                                         torch.zeros(1, 1, 30, 30))


def test_inpainter_ignores_what_is_under_the_hole():
    torch.manual_seed(0)
    net = ImageInpainter(CLASSES, width=8, blocks=1).eval()
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 8:20] = 1
    image, edges = torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32)
    seg = torch.zeros(1, CLASSES, 32, 32)
    changed = image.clone()
    changed[..., 8:20, 8:20] = 0.123
    assert torch.equal(net(image, edges, seg, mask), net(changed, edges, seg, mask))


def test_paste_soft_masks_fills_the_box():
    probs = torch.ones(1, 1, 28, 28)
    pasted = paste_soft_masks(probs, torch.tensor([[10.0, 20.0, 30.0, 40.0]]), 64, 64)
    assert pasted.shape == (1, 64, 64)
    assert (pasted[0, 21:39, 11:29] > 0.99).all()  # inside, away from the border
    assert pasted[0, :19].max() == 0 and pasted[0, :, 31:].max() == 0


def _targets(n=2):
    m = torch.zeros(n, SIZE, SIZE, dtype=torch.uint8)
    m[:, 20:44, 24:36] = 1
    semantic = torch.randint(1, CLASSES, (SIZE, SIZE))
    return m, [dict(boxes=torch.tensor([[24.0, 20.0, 36.0, 44.0]]), labels=torch.tensor([1]),
                    masks=m[i:i + 1], semantic=semantic) for i in range(n)]


def _small_segmenter():
    torch.manual_seed(0)
    return PanopticFPN(1, CLASSES, depth=18, fpn_channels=32, image_size=SIZE,
                       box_batch_size=32, detections_per_image=10)


def test_freeze_at_keeps_the_stem_and_res2_fixed_and_trains_the_rest():
    torch.manual_seed(0)
    seg = PanopticFPN(1, CLASSES, depth=18, fpn_channels=32, image_size=SIZE,
                      box_batch_size=32, detections_per_image=10, freeze_at=2)
    body = seg.backbone.body
    for fixed in (body.conv1, body.bn1, body.layer1):
        assert not any(p.requires_grad for p in fixed.parameters())
    for trained in (body.layer2, body.layer4, seg.backbone.fpn, seg.roi_heads, seg.rpn):
        assert all(p.requires_grad for p in trained.parameters())
    assert all(p.requires_grad for p in _small_segmenter().parameters())


def test_segmenter_losses_and_inference_outputs():
    seg = _small_segmenter().train()
    images = torch.rand(2, 3, SIZE, SIZE)
    _, targets = _targets()
    losses = seg(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                           "loss_box_reg", "loss_mask", "loss_semantic"}
    assert all(torch.isfinite(v) for v in losses.values())
    out = seg.eval()(images)
    assert out.semantic_logits.shape == (2, CLASSES, SIZE, SIZE)
    assert len(out.detections) == 2
    det = out.detections[0]
    assert det.mask_probs.shape[1:] == (1, 28, 28) and det.soft_masks().shape[1:] == (SIZE, SIZE)


def test_predict_with_min_score_masks_only_the_confident_detections():
    assert_min_score_keeps_the_confident_detections(_small_segmenter(), SIZE)


def test_anchor_sizes_and_proposal_counts_reach_the_rpn():
    seg = PanopticFPN(1, CLASSES, depth=18, fpn_channels=32, image_size=SIZE,
                      anchor_sizes=[8, 16, 24, 40, 64],
                      proposals={"training": 40, "testing": 20})
    assert [s[0] for s in seg.rpn.anchor_generator.sizes] == [8, 16, 24, 40, 64]
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        proposals, _ = seg.eval().rpn(ImageList(images, [(SIZE, SIZE)] * 2), seg.features(images))
    assert all(len(p) <= 20 for p in proposals)
    with pytest.raises(MaskoptError, match="one size per FPN level"):
        PanopticFPN(1, CLASSES, depth=18, fpn_channels=32, image_size=SIZE, anchor_sizes=[8, 16])


def test_stem_stride_two_doubles_every_feature_map_and_keeps_input_coordinates():
    torch.manual_seed(0)
    fine = PanopticFPN(1, CLASSES, depth=18, fpn_channels=32, image_size=SIZE,
                       box_batch_size=32, detections_per_image=10, stem_stride=2)
    images = torch.rand(2, 3, SIZE, SIZE)
    coarse_sizes = [f.shape[-1] for f in _small_segmenter().features(images).values()]
    fine_sizes = [f.shape[-1] for f in fine.features(images).values()]
    assert coarse_sizes == [16, 8, 4, 2, 1] and fine_sizes == [32, 16, 8, 4, 2]
    _, targets = _targets()
    assert all(torch.isfinite(v) for v in fine.train()(images, targets).values())
    out = fine.eval()(images)
    assert out.semantic_logits.shape == (2, CLASSES, SIZE, SIZE)
    # RoIs are pooled from P2 at 1/2 of the input: boxes stay in input pixels
    assert fine.roi_heads.box_roi_pool.scales[0] == 0.5
    assert out.detections[0].soft_masks().shape[1:] == (SIZE, SIZE)
    with pytest.raises(MaskoptError, match="stem_stride"):
        PanopticFPN(1, CLASSES, depth=18, fpn_channels=32, image_size=SIZE, stem_stride=8)


def test_mask_resolution_and_head_width_set_the_mask_grid_and_train():
    torch.manual_seed(0)
    fine = PanopticFPN(1, CLASSES, depth=18, fpn_channels=32, image_size=SIZE,
                       box_batch_size=32, detections_per_image=10, mask_resolution=28,
                       mask_head_channels=64)
    images = torch.rand(2, 3, SIZE, SIZE)
    _, targets = _targets()
    losses = fine.train()(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    features = fine.eval().features(images)
    boxes = [torch.tensor([[24.0, 20.0, 36.0, 44.0]])] * 2
    probs = fine.mask_probs(features, boxes, [torch.tensor([1])] * 2, [(SIZE, SIZE)] * 2)
    assert probs[0].shape == (1, 1, 56, 56)  # twice the RoIAlign grid
    assert fine.roi_heads.mask_head[0][0].out_channels == 64
    assert _small_segmenter().eval().mask_probs(
        _small_segmenter().features(images), boxes, [torch.tensor([1])] * 2,
        [(SIZE, SIZE)] * 2)[0].shape == (1, 1, 28, 28)  # Mask R-CNN's default


def test_segmenter_refuses_sizes_not_divisible_by_32():
    with pytest.raises(MaskoptError, match="multiple of 32"):
        _small_segmenter().eval()(torch.rand(1, 3, 48, 48))


def test_inpainting_loss_reaches_the_mask_head_through_the_selected_mask():
    seg = _small_segmenter().train()
    images = torch.rand(1, 3, SIZE, SIZE)
    gt, targets = _targets(1)
    _, detections, _, features = seg.losses_and_detections(images, targets)
    soft, _ = selected_mask(seg, features, detections[0], gt[0], 2, box_fallback=True)
    assert soft.requires_grad and soft.shape == (SIZE, SIZE)
    inpainter = ImageInpainter(CLASSES, width=8, blocks=1)
    mask = straight_through(soft[None, None])
    edges, seg_map = torch.zeros(1, 1, SIZE, SIZE), torch.zeros(1, CLASSES, SIZE, SIZE)
    out = inpainter(images, edges, seg_map, mask)
    seg.zero_grad()
    reconstruction_l1_loss(out, torch.rand(1, 3, SIZE, SIZE), gt[0][None, None]).backward()
    head_grad = seg.roi_heads.mask_predictor.mask_fcn_logits.weight.grad
    assert head_grad is not None and head_grad.abs().sum() > 0
    assert seg.backbone.body.conv1.weight.grad.abs().sum() > 0


def test_select_segment_by_point_and_overlap():
    probs = torch.ones(2, 1, 28, 28)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]])
    det = Detections(boxes, torch.tensor([1, 1]), torch.tensor([0.9, 0.5]), probs, (SIZE, SIZE))
    gt = torch.zeros(SIZE, SIZE)
    gt[22:38, 22:38] = 1
    assert select_segment(det, gt) == 1
    assert select_segment_at_point(det, 5, 5) == 0
    assert select_segment_at_point(det, 15, 15) is None


def test_low_rank_class_path_cuts_the_flops_and_keeps_the_shapes():
    """With class_channels the 134 class maps pass k channels around the 7×7 convs: the
    three generators at 256 px come within 1.15× of three EdgeConnect-sized ones."""
    from torch.utils.flop_counter import FlopCounterMode

    from maskopt.models.build import build

    def flops_and_shape(config, *inputs):
        net = build(config).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = net(*inputs)
        return counter.get_total_flops() / 1e9, tuple(out.shape)

    size, classes, mask = 256, 134, torch.zeros(1, 1, 256, 256)
    seg, rgb, one = torch.rand(1, classes, size, size), torch.rand(1, 3, size, size), \
        torch.rand(1, 1, size, size)
    edge, _ = flops_and_shape({"kind": "edge", "num_classes": classes, "width": 64,
                               "blocks": 8}, one, one, mask)
    totals = {}
    for k in (None, 16):
        extra = {"class_channels": k} if k else {}
        s, s_shape = flops_and_shape({"kind": "segmentation", "num_classes": classes,
                                      "width": 64, "blocks": 8, **extra}, seg, mask)
        i, i_shape = flops_and_shape({"kind": "image", "num_classes": classes, "width": 64,
                                      "blocks": 8, **extra}, rgb, one, seg, mask)
        assert s_shape == (1, classes, size, size) and i_shape == (1, 3, size, size)
        totals[k] = edge + s + i
    assert totals[None] > 1.3 * 3 * edge  # full-width class layers: ~406 GFLOP
    assert totals[16] <= 1.15 * 3 * 97.0  # EdgeConnect's generator: ~97 GFLOP at 256 px


def _random_rois(count: int, images: int, side: float, generator: torch.Generator):
    """Boxes of every kind RoIAlign meets: inside, on the border, thinner than a
    feature cell, and (a few) reaching past the map, where samples count as zero."""
    corner = torch.rand(count, 2, generator=generator) * side * 1.1 - side * 0.05
    extent = torch.rand(count, 2, generator=generator) * side * 0.6 + 0.2
    boxes = torch.cat([corner, corner + extent], 1)
    index = torch.randint(0, images, (count, 1), generator=generator).float()
    return torch.cat([index, boxes], 1)


@pytest.mark.parametrize("output_size, scale", [((7, 7), 0.25), ((14, 14), 0.125), ((7, 5), 0.5)])
def test_separable_roi_align_matches_torchvision_values_and_gradients(output_size, scale):
    from torchvision.ops import roi_align

    from maskopt.models.roi_align import separable_roi_align

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 6, int(SIZE * scale), int(SIZE * scale), generator=generator,
                           requires_grad=True)
    rois = _random_rois(40, 3, SIZE, generator)
    upstream = torch.randn(40, 6, *output_size, generator=generator)
    expected = roi_align(features, rois, output_size, scale, sampling_ratio=2, aligned=False)
    got = separable_roi_align(features, rois, output_size, scale, sampling_ratio=2)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    expected_grad, = torch.autograd.grad(expected, features, upstream)
    got_grad, = torch.autograd.grad(got, features, upstream)
    torch.testing.assert_close(got_grad, expected_grad, atol=1e-4, rtol=1e-5)


def test_cpu_multiscale_roi_align_matches_torchvision_under_bf16_autocast():
    from torchvision.ops import MultiScaleRoIAlign

    from maskopt.models.roi_align import CpuMultiScaleRoIAlign

    generator = torch.Generator().manual_seed(1)
    names = ["0", "1", "2", "3"]
    features = {name: torch.randn(2, 4, SIZE >> (2 + i), SIZE >> (2 + i), generator=generator)
                for i, name in enumerate(names)}
    boxes = [_random_rois(n, 1, SIZE, generator)[:, 1:].clamp(0, SIZE) for n in (30, 7)]
    reference, ours = MultiScaleRoIAlign(names, 7, 2), CpuMultiScaleRoIAlign(names, 7, 2)
    sizes = [(SIZE, SIZE)] * 2
    torch.testing.assert_close(ours(features, boxes, sizes), reference(features, boxes, sizes),
                               atol=1e-5, rtol=1e-5)
    with torch.autocast("cpu", torch.bfloat16):  # torchvision pools in float32 here too
        half = {k: v.bfloat16() for k, v in features.items()}
        got, expected = ours(half, boxes, sizes), reference(half, boxes, sizes)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=1e-2)
