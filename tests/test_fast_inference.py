"""maskopt.models.fast_inference: the networks `maskopt remove` holds compute what the plain
networks of training and evaluation compute."""

import copy

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from maskopt.core.taxonomy import Taxonomy
from maskopt.models import EdgeInpainter, ImageInpainter, SegmentationInpainter
from maskopt.models.fast_inference import (
    ChannelsLastInstanceNorm,
    ReflectionPadInOwnDtype,
    keep_channels_last,
    optimize_for_inference,
)
from maskopt.models.inference import Networks, inpaint
from maskopt.models.roi_align import CpuMultiScaleRoIAlign
from maskopt.models.segmenter import PanopticFPN

SIZE = 64
CLASSES = 5


def test_folded_frozen_batch_norm_gives_the_same_features():
    from torchvision.ops.misc import FrozenBatchNorm2d

    from maskopt.models.fast_inference import fold_frozen_batch_norm

    torch.manual_seed(0)
    net = PanopticFPN(1, CLASSES, depth=18, fpn_channels=32, image_size=SIZE,
                      weights="imagenet", load_weights=False).eval()  # frozen BN, offline
    norms = [m for m in net.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(norms) == 20  # ResNet-18: stem, 16 in the blocks, 3 downsample paths
    for norm in norms:  # not the identity a fresh one is
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2)
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        before = net.features(images)
        fold_frozen_batch_norm(net)
        after = net.features(images)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in net.modules())
    for level in before:
        torch.testing.assert_close(after[level], before[level], atol=1e-4, rtol=1e-4)


def test_folded_spectral_norm_gives_the_same_inference():
    from maskopt.models.fast_inference import fold_spectral_norm

    torch.manual_seed(0)
    net = SegmentationInpainter(num_classes=5, width=8, blocks=1, class_channels=3).eval()
    seg = torch.softmax(torch.randn(1, 5, 16, 16), 1)
    mask = (torch.rand(1, 1, 16, 16) > 0.7).float()
    with torch.no_grad():
        before = net(seg, mask)
        fold_spectral_norm(net)
        after = net(seg, mask)
    assert not any(hasattr(m, "weight_orig") for m in net.modules())
    assert torch.equal(before, after)


def test_channels_last_norm_and_pad_compute_what_torchs_modules_do():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 12, 10) * 3 + 1
    last = x.to(memory_format=torch.channels_last)
    normed = ChannelsLastInstanceNorm(1e-5)(last)
    assert normed.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(normed, torch.nn.InstanceNorm2d(8)(x), atol=1e-5, rtol=1e-5)
    with torch.autocast("cpu", torch.bfloat16):
        padded = ReflectionPadInOwnDtype(2)(last.bfloat16())
    assert padded.dtype == torch.bfloat16  # autocast would have padded in fp32
    assert padded.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(padded.float(), torch.nn.ReflectionPad2d(2)(x.bfloat16().float()))


def tiny_networks() -> Networks:
    torch.manual_seed(0)
    categories = tuple({"id": i, "index": i, "name": f"c{i}", "isthing": i == 1}
                       for i in range(1, CLASSES))
    segmenter = PanopticFPN(1, CLASSES, depth=18, fpn_channels=32, image_size=SIZE,
                            weights="imagenet", load_weights=False)  # frozen norms, offline
    for module in segmenter.modules():  # norms that are not the identity a fresh one is
        if hasattr(module, "running_var"):
            module.running_var.uniform_(0.5, 2)
            module.running_mean.normal_()
    return Networks(segmenter.eval(), EdgeInpainter(8, 1).eval(),
                    SegmentationInpainter(CLASSES, 8, 1, class_channels=3).eval(),
                    ImageInpainter(CLASSES, 8, 1, class_channels=3).eval(), SIZE, CLASSES,
                    Taxonomy(categories), 1.0, 4)


def run_networks(nets: Networks, bf16: bool) -> dict:
    torch.manual_seed(1)
    images = torch.rand(2, 3, SIZE, SIZE)
    masks = torch.zeros(2, 1, SIZE, SIZE)
    masks[:, :, 20:44, 16:40] = 1
    boxes = [torch.tensor([[10.0, 12.0, 40.0, 50.0], [0.0, 0.0, 64.0, 64.0]])] * 2
    labels = [torch.ones(2, dtype=torch.long)] * 2
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        features = nets.segmenter.features(images)
        semantic = torch.softmax(nets.segmenter.semantic_logits(features).float(), 1)
        probs = nets.segmenter.mask_probs(features, boxes, labels, [(SIZE, SIZE)] * 2)
        filled = inpaint(nets, images, masks, semantic)
    return {"semantic": semantic, "mask_probs": torch.cat(probs).float(),
            "filled": filled.float(), "images": images, "masks": masks}


@pytest.mark.parametrize("bf16", [False, True])
def test_optimized_networks_compute_what_the_plain_ones_do(bf16):
    plain = tiny_networks()
    fast = copy.deepcopy(plain)
    optimize_for_inference([fast.segmenter, fast.edge, fast.segmentation, fast.image],
                           channels_last=bf16)
    assert not any(isinstance(m, CpuMultiScaleRoIAlign) for m in fast.segmenter.modules())
    assert sum(isinstance(m, MultiScaleRoIAlign) for m in fast.segmenter.modules()) == 2
    assert not any(hasattr(m, "weight_orig") for m in fast.edge.modules())
    expected, got = run_networks(plain, bf16), run_networks(fast, bf16)
    fp32 = run_networks(plain, False)
    for key in ("semantic", "mask_probs", "filled"):
        if not bf16:
            torch.testing.assert_close(got[key], expected[key], atol=1e-4, rtol=0)
            continue
        # in bf16 the optimized networks stay as close to the plain ones as bf16's own
        # rounding keeps the plain networks to their fp32 result
        rounding = (expected[key] - fp32[key]).abs()
        gap = (got[key] - expected[key]).abs()
        assert gap.mean() <= 2 * rounding.mean() + 1e-4, key
        assert gap.max() <= 2 * rounding.max() + 1e-3, key
    hole = expected["masks"].expand_as(expected["images"]) > 0.5
    assert torch.equal(got["filled"][~hole], expected["images"][~hole])  # known pixels kept


def test_channels_last_replaces_every_norm_and_pad_of_a_generator():
    net = ImageInpainter(CLASSES, 8, 2)
    keep_channels_last(net)
    kinds = {type(m) for m in net.modules()}
    assert torch.nn.InstanceNorm2d not in kinds and torch.nn.ReflectionPad2d not in kinds
    assert {ChannelsLastInstanceNorm, ReflectionPadInOwnDtype} <= kinds
    weight = net.generator.encoder[1].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
