"""The method as the paper and EdgeConnect have it (issue "The method, faithful").

Each test names the point it checks; all run on tiny random networks in seconds.
"""

import numpy as np
import pytest
import torch
from skimage.color import rgb2gray
from skimage.feature import canny
from tiny import tiny_params

from maskopt.core.signed_distance import normalized_signed_distance
from maskopt.models import EdgeInpainter, ImageInpainter, SegmentationInpainter, losses
from maskopt.models.build import build_discriminator
from maskopt.models.detections import Detections, enlarge_boxes, paste_soft_masks
from maskopt.models.segmenter import PanopticFPN
from maskopt.models.selection import (
    box_margin,
    panoptic_segments,
    segment_mask,
    select_segment,
    select_segment_at_point,
    selected_mask,
    straight_through,
)
from maskopt.training.tasks import inpaint_with_mask, joint_inpainting_losses

SIZE, CLASSES = 32, 3


def _person_scene():
    """I_G: a dark textured background; I: I_G with a bright 'person' (rows 8..24,
    cols 10..22) pasted on it; M_G its mask."""
    torch.manual_seed(0)
    target = torch.rand(1, 3, SIZE, SIZE) * 0.3
    gt = torch.zeros(1, 1, SIZE, SIZE)
    gt[..., 8:24, 10:22] = 1
    image = target * (1 - gt) + 0.95 * gt
    gray = image.mean(1, keepdim=True)
    semantic = torch.ones(1, SIZE, SIZE, dtype=torch.long)
    semantic[0, 8:24, 10:22] = 2  # person in I
    return {"image": image, "target": target, "mask": gt, "gray": gray,
            "target_gray": target.mean(1, keepdim=True), "edges": torch.zeros_like(gray),
            "target_edges": torch.zeros_like(gray), "semantic": semantic,
            "target_semantic": torch.ones(1, SIZE, SIZE, dtype=torch.long)}


def _joint_networks():
    torch.manual_seed(1)
    generators = {"edge": EdgeInpainter(width=4, blocks=1),
                  "segmentation": SegmentationInpainter(CLASSES, width=4, blocks=1),
                  "image": ImageInpainter(CLASSES, width=4, blocks=1)}
    discriminators = {k: build_discriminator(k, CLASSES, 4) for k in generators}
    with pytest.warns(UserWarning, match="random VGG19"):
        vgg = losses.VGG19Features("random")
    return generators, discriminators, vgg


def _joint_losses(batch, mask, nets):
    generators, discriminators, vgg = nets
    seg_probs = torch.nn.functional.one_hot(batch["semantic"], CLASSES).permute(0, 3, 1, 2)
    composites = inpaint_with_mask(generators, batch, mask, seg_probs.float())
    terms, _ = joint_inpainting_losses(composites, discriminators, batch,
                                       tiny_params().loss, vgg, CLASSES)
    return terms


# 1. No shortcut through the loss weights -------------------------------------------


def test_joint_loss_pays_for_the_missed_half_and_pushes_the_mask_onto_it():
    batch, nets = _person_scene(), _joint_networks()
    full = batch["mask"].clone().requires_grad_(True)
    half = batch["mask"].clone()
    half[..., 16:24, :] = 0  # the lower half of the person is missed
    half.requires_grad_(True)
    with_full, with_half = _joint_losses(batch, full, nets), _joint_losses(batch, half, nets)
    image_terms = ("loss_ig", "loss_if", "loss_is", "loss_ir")
    assert with_half["loss_ir"] > with_full["loss_ir"] * 1.5
    assert sum(with_half[k] for k in image_terms) > sum(with_full[k] for k in image_terms)
    assert with_half["loss_sc"] > with_full["loss_sc"]  # the missed half still says "person"
    with_half["loss_ir"].backward()
    missed = half.grad[..., 16:24, 10:22]
    # gradient descent raises the mask where the person was missed
    assert (missed < 0).float().mean() > 0.9


def test_reconstruction_l1_counts_every_pixel_and_divides_by_the_object():
    target = torch.zeros(1, 3, 4, 4)
    output = torch.ones(1, 3, 4, 4)
    object_mask = torch.zeros(1, 1, 4, 4)
    object_mask[..., :2, :2] = 1  # N_M = 4 of 16 pixels
    # EdgeConnect: mean over all pixels (1.0) / hole fraction (0.25)
    assert losses.reconstruction_l1_loss(output, target, object_mask).item() == \
        pytest.approx(4.0)
    output[..., 2:, 2:] = 0  # errors outside the object count too
    assert losses.reconstruction_l1_loss(output, target, object_mask).item() == \
        pytest.approx(3.0)


# 2. The mask can grow past the detected box ------------------------------------------


def test_mask_expansion_alone_grows_the_mask_beyond_the_detected_box():
    size, alpha = 64, 0.05
    gt = np.zeros((size, size), bool)
    gt[20:44, 24:40] = True
    phi = torch.from_numpy(normalized_signed_distance(gt))[None, None]
    box = torch.tensor([24.0, 20.0, 40.0, 44.0])  # the detected (tight) box
    grown = enlarge_boxes(box[None], box_margin(alpha, size), size, size)
    logits = torch.zeros(1, 1, 28, 28, requires_grad=True)  # a toy mask head
    optimizer = torch.optim.Adam([logits], lr=0.5)
    outside_box = torch.ones(size, size, dtype=torch.bool)
    outside_box[20:44, 24:40] = False
    for _ in range(30):
        soft = paste_soft_masks(logits.sigmoid(), grown, size, size)
        loss = losses.mask_expansion_loss(soft[None], phi, alpha)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    mask = paste_soft_masks(logits.sigmoid(), grown, size, size)[0] > 0.5
    assert mask[~outside_box].all()
    band = (phi[0, 0] > 0) & (phi[0, 0] < alpha - 0.01)  # outside the object, inside α
    assert (mask & outside_box).sum() > 0.5 * band.sum()
    assert not (mask & (phi[0, 0] > alpha + 0.02)).any()  # and no further


def test_the_selected_mask_and_its_gradient_reach_outside_the_box():
    seg = PanopticFPN(1, 4, depth=18, fpn_channels=32, image_size=64).eval()
    features = seg.features(torch.rand(1, 3, 64, 64))
    box, label = torch.tensor([20.0, 20.0, 36.0, 40.0]), torch.tensor(1)
    soft = segment_mask(seg, features, box, label, (64, 64), margin=4)
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[20:40, 20:36] = False
    assert soft[outside].max() > 0.1 and soft[:15].max() == 0  # box + 4 px, no further
    soft[outside].sum().backward()
    assert seg.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0


# 3. One mask for training and inference ------------------------------------------------


def test_inpainters_see_a_binary_mask_and_the_segmenter_still_gets_a_gradient():
    batch = _person_scene()
    generators, _, _ = _joint_networks()
    seen = []
    generators["image"].register_forward_pre_hook(lambda module, args: seen.append(args[3]))
    soft = torch.full((1, 1, SIZE, SIZE), 0.3)
    soft[..., 6:26, 8:24] = 0.8
    soft.requires_grad_(True)
    seg_probs = torch.full((1, CLASSES, SIZE, SIZE), 1 / CLASSES)
    out = inpaint_with_mask(generators, batch, straight_through(soft), seg_probs)
    mask_seen = seen[0].detach()
    assert set(mask_seen.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(mask_seen, (soft > 0.5).float())
    (out["image"] - batch["target"]).abs().mean().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0


# 4. Selection by overlap area ----------------------------------------------------------


def test_selection_takes_the_largest_overlap_not_the_largest_iou():
    gt = torch.zeros(64, 64)
    gt[10:50, 10:30] = 1  # 800 px
    boxes = torch.tensor([[12.0, 12.0, 28.0, 28.0],    # inside: IoU 0.32, overlap 256
                          [5.0, 5.0, 60.0, 60.0]])     # spills over: IoU 0.26, overlap 800
    det = Detections(boxes, torch.tensor([1, 1]), torch.tensor([0.9, 0.5]),
                     torch.ones(2, 1, 28, 28), (64, 64))
    assert select_segment(det, gt) == 1
    nowhere = torch.zeros(64, 64)
    nowhere[60:, 0:4] = 1
    assert select_segment(det, nowhere) is None


def test_selection_takes_the_panoptic_segment_not_a_larger_low_score_mask():
    """Candidates are PanopticFPN's segments: a large low-score mask, or one mostly
    under a better-scoring segment, is not chosen although it overlaps M_G more."""
    gt = torch.zeros(64, 64)
    gt[10:50, 20:40] = 1
    boxes = torch.tensor([[22.0, 12.0, 38.0, 48.0],    # the person, score 0.9: 576 px of M_G
                          [0.0, 0.0, 64.0, 64.0],      # everything, score 0.2: all 800
                          [20.0, 10.0, 40.0, 50.0]])   # the person + 2 px, 0.7: 72 % taken
    det = Detections(boxes, torch.tensor([1, 1, 1]), torch.tensor([0.9, 0.2, 0.7]),
                     torch.ones(3, 1, 28, 28), (64, 64))
    kept, pixels = panoptic_segments(det)
    assert kept == [0]  # 1 scores below 0.5; 2 has more than half its mask taken by 0
    assert int(pixels[0].sum()) == 16 * 36
    assert select_segment(det, gt) == 0
    assert select_segment(det, gt, score_threshold=0.1) == 0  # 1 then holds only the rest
    # with a lower threshold the large mask is a segment, and it keeps the pixels 0 left
    kept, pixels = panoptic_segments(det, score_threshold=0.1)
    assert kept == [0, 1] and not (pixels[0] & pixels[1]).any()
    assert select_segment_at_point(det, 30, 30) == 0
    assert select_segment_at_point(det, 2, 2) is None
    assert select_segment_at_point(det, 2, 2, score_threshold=0.1) == 1


# 5. Mixed precision safe paste -----------------------------------------------------------


def test_paste_under_bf16_autocast_matches_float32():
    torch.manual_seed(0)
    probs = torch.rand(3, 1, 28, 28)
    boxes = torch.tensor([[3.3, 100.7, 180.2, 250.9], [0.0, 0.0, 255.0, 255.0],
                          [120.5, 7.25, 131.75, 60.5]])
    reference = paste_soft_masks(probs, boxes, 256, 256)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = paste_soft_masks(probs.bfloat16(), boxes, 256, 256)
    assert mixed.dtype == torch.float32
    # the probabilities themselves were rounded to bf16 (3 significant digits)
    assert (mixed - reference).abs().max() < 1e-2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        same_input = paste_soft_masks(probs, boxes, 256, 256)
    assert (same_input - reference).abs().max() < 1e-3


# 6. Optimizers as the paper says ---------------------------------------------------------


def test_joint_optimizer_uses_panoptic_fpn_betas_for_the_segmenter(trained_project,
                                                                  monkeypatch):
    from maskopt.models.build import load_model, restore
    from maskopt.training.distributed import Context
    from maskopt.training.tasks import ADAM_BETAS, JointTask

    monkeypatch.chdir(trained_project)
    joint = load_model("models/joint.pt", "train_joint")["networks"]
    segmenter = restore(joint["segmenter"])
    generators = {k: restore(joint[k]) for k in ("edge", "segmentation", "image")}
    discriminators = {k: build_discriminator(k, generators["image"].num_classes, 4)
                      for k in generators}
    ctx = Context(0, 1, 0, torch.device("cpu"))
    task = JointTask(segmenter, generators, discriminators, tiny_params(), ctx,
                     generators["image"].num_classes)
    seg_group, gen_group = task.optimizer.param_groups
    assert seg_group["betas"] == (0.9, 0.999) and gen_group["betas"] == ADAM_BETAS
    assert {id(p) for p in seg_group["params"]} == {id(p) for p in segmenter.parameters()}
    assert all(o.param_groups[0]["betas"] == ADAM_BETAS for o in task.d_opts.values())


# 8. VGG input as EdgeConnect's ---------------------------------------------------------


def test_vgg_gets_unnormalised_images():
    with pytest.warns(UserWarning):
        vgg = losses.VGG19Features("random")
    images = torch.rand(1, 3, 16, 16)
    first_conv = vgg.layers[0]
    assert torch.allclose(vgg(images)["relu1_1"], torch.relu(first_conv(images)))


# 9. Canny as EdgeConnect computes it, one function everywhere --------------------------


def test_edges_are_scikit_image_canny_everywhere(pairs_dir):
    from maskopt.core.imaging import tensor_to_rgb
    from maskopt.data.pairs import PairDataset
    from maskopt.models.inference import image_guides

    dataset = PairDataset(pairs_dir / "test", canny_sigma=1.5)
    item = dataset[0]
    rgb = tensor_to_rgb(item["image"])
    expected = canny(rgb2gray(rgb), sigma=1.5).astype(np.float32)
    assert expected.any()
    assert np.array_equal(item["edges"][0].numpy(), expected)
    gray, edges = image_guides(item["image"][None], 1.5)
    assert torch.equal(edges[0], item["edges"]) and torch.allclose(gray[0], item["gray"])


# 10. Flips drawn afresh each epoch -----------------------------------------------------


def test_flips_change_between_epochs_and_repeat_for_the_same_epoch(pairs_dir):
    from maskopt.data.pairs import PairDataset

    dataset = PairDataset(pairs_dir / "train", flip=True, seed=0)
    plain = [dataset[i]["image"] for i in range(8)]

    def flipped(epoch):
        return [not torch.equal(dataset[(i, epoch)]["image"], plain[i]) for i in range(8)]

    patterns = [flipped(epoch) for epoch in range(4)]
    assert len({tuple(p) for p in patterns}) > 1  # not the same half every epoch
    assert flipped(2) == patterns[2]                # reproducible (resume)
    assert any(any(p) for p in patterns) and not all(all(p) for p in patterns)


def test_cached_pairs_equal_loaded_ones_and_come_as_copies(pairs_dir):
    from maskopt.data.pairs import PairDataset

    loaded = PairDataset(pairs_dir / "train", flip=True, seed=0)
    cached = PairDataset(pairs_dir / "train", flip=True, seed=0, cache=True)
    for key in [(i, epoch) for epoch in range(3) for i in range(4)] * 2:  # twice: hits
        want, got = loaded[key], cached[key]
        for name in ("image", "edges", "phi", "semantic", "target_semantic"):
            assert torch.equal(want[name], got[name]), (key, name)
        assert torch.equal(want["instances"]["masks"], got["instances"]["masks"])
    first = cached[(0, 0)]
    first["image"].zero_()
    first["instances"]["boxes"].add_(5)
    again = cached[(0, 0)]
    assert torch.equal(again["image"], loaded[(0, 0)]["image"])
    assert torch.equal(again["instances"]["boxes"], loaded[(0, 0)]["instances"]["boxes"])


# 11. No ground truth in a scored mask ---------------------------------------------------


class _NothingOverlaps:
    """A segmenter stand-in whose only detection is far from the object."""

    def eval(self):
        return self

    def predict(self, images, min_score=None):
        from maskopt.models.detections import SegmenterOutput

        det = Detections(torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([1]),
                         torch.tensor([0.9]), torch.ones(1, 1, 28, 28), (SIZE, SIZE))
        return SegmenterOutput([det] * len(images), torch.zeros(len(images), 2, SIZE, SIZE),
                               {"0": torch.zeros(len(images), 1, 8, 8)})

    def mask_probs(self, *args):
        raise AssertionError("evaluation must not run the mask head on M_G's box")


def test_evaluation_scores_an_empty_mask_when_nothing_overlaps():
    from maskopt.evaluation.masks import selected_masks

    gt = torch.zeros(2, 1, SIZE, SIZE)
    gt[..., 10:20, 10:20] = 1
    masks, missed, _ = selected_masks(_NothingOverlaps(), torch.rand(2, 3, SIZE, SIZE), gt, 2)
    assert missed.tolist() == [True, True] and masks.max() == 0


def test_training_keeps_the_box_fallback():
    seg = PanopticFPN(1, 4, depth=18, fpn_channels=32, image_size=64).eval()
    features = seg.features(torch.rand(1, 3, 64, 64))
    det = Detections(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0),
                     torch.zeros(0, 1, 28, 28), (64, 64))
    gt = torch.zeros(64, 64)
    gt[30:40, 30:40] = 1
    assert selected_mask(seg, features, det, gt, 2, box_fallback=False) == (None, -1)
    mask, index = selected_mask(seg, features, det, gt, 2, box_fallback=True)
    assert index == -1 and mask[:27].max() == 0 and mask[30:40, 30:40].max() > 0


# 16. COCO weights loaded whole ---------------------------------------------------------


def test_coco_maskrcnn_weights_load_whole_with_the_class_rows_remapped(tmp_path):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from maskopt.models.coco_weights import load_coco_maskrcnn

    torch.manual_seed(0)
    published = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    torch.save(published, tmp_path / "maskrcnn.pth")
    state = torch.load(tmp_path / "maskrcnn.pth", weights_only=True)
    # our things: person (COCO id 1) and dog (COCO id 18)
    model = PanopticFPN(2, 10, depth=50, fpn_channels=256, image_size=256, weights="coco",
                        load_weights=False, thing_category_ids=[1, 18])
    report = load_coco_maskrcnn(model, [1, 18], state)
    own = model.state_dict()
    shared = [k for k in published if k.startswith(("backbone.", "rpn.", "roi_heads."))
              and "num_batches_tracked" not in k and not k.startswith(
                  ("roi_heads.box_predictor", "roi_heads.mask_predictor.mask_fcn_logits"))]
    assert len(shared) > 300
    for key in shared:
        assert torch.equal(own[key], published[key]), key
    for key in ("roi_heads.box_predictor.cls_score.weight",
                "roi_heads.mask_predictor.mask_fcn_logits.weight"):
        assert torch.equal(own[key][1], published[key][1])    # person row → our label 1
        assert torch.equal(own[key][2], published[key][18])   # dog row → our label 2
        assert torch.equal(own[key][0], published[key][0])    # background
    box = "roi_heads.box_predictor.bbox_pred.weight"
    assert torch.equal(own[box][8:12], published[box][72:76])
    assert all(k.startswith(("semantic_head.", "mean", "std")) for k in report["random"])
    assert len(report["remapped"]) == 6


def test_coco_weights_refuse_a_start_with_random_layers():
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from maskopt.core.errors import MaskoptError
    from maskopt.models.coco_weights import load_coco_maskrcnn

    published = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    published = {k: v for k, v in published.items() if not k.startswith("rpn.")}
    model = PanopticFPN(1, 4, depth=50, fpn_channels=256, image_size=256, weights="coco",
                        load_weights=False, thing_category_ids=[1])
    with pytest.raises(MaskoptError, match="left .* random .* rpn"):
        load_coco_maskrcnn(model, [1], published)


def test_grown_box_mask_loss_teaches_the_head_the_object_inside_a_larger_box():
    torch.manual_seed(0)
    seg = PanopticFPN(1, 4, depth=18, fpn_channels=32, image_size=64, grown_box_margin=0.1)
    seg.train()
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[:, 20:44, 24:36] = 1
    target = {"boxes": torch.tensor([[24.0, 20.0, 36.0, 44.0]]), "labels": torch.tensor([1]),
              "masks": masks, "semantic": torch.randint(1, 4, (64, 64))}
    images = torch.rand(1, 3, 64, 64)
    losses_, *_ = seg.losses_and_detections(images, [target], detect=False)
    assert "loss_mask_grown_box" in losses_ and torch.isfinite(losses_["loss_mask_grown_box"])
    optimizer = torch.optim.Adam(seg.roi_heads.parameters(), 1e-3)
    features = seg.features(images)
    for _ in range(40):
        loss = seg.grown_box_mask_loss({k: v.detach() for k, v in features.items()}, [target],
                                       [(64, 64)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    soft = segment_mask(seg, features, target["boxes"][0], torch.tensor(1), (64, 64), 6)
    hard = soft > 0.5
    inter = (hard & masks[0].bool()).sum()
    assert inter / masks.sum() > 0.8 and inter / hard.sum() > 0.6
    off = PanopticFPN(1, 4, depth=18, fpn_channels=32, image_size=64).train()
    assert "loss_mask_grown_box" not in off.losses_and_detections(images, [target], False)[0]
