"""The detectron2 backend, the COCO profile's segmenter: runs where detectron2 is installed
(CI installs the wheel from ../shared/wheels), skipped elsewhere."""

import pickle
from pathlib import Path

import pytest
import torch

pytest.importorskip("detectron2", reason="detectron2 is not installed (CI installs the "
                    "wheel in ../shared/wheels; see the README)")

from detectron2.data import transforms as T  # noqa: E402
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from tiny import assert_min_score_keeps_the_confident_detections  # noqa: E402

from maskopt.core.errors import MaskoptError  # noqa: E402
from maskopt.models.detectron2_backend import (  # noqa: E402
    Detectron2PanopticFPN,
    zoo_config,
)
from maskopt.models.segmenter import PanopticFPN  # noqa: E402
from maskopt.models.selection import selected_mask  # noqa: E402

SIZE, CLASSES = 64, 5
# our COCO taxonomy: index 1..133 by category id (maskopt.data.synthesize.class_index_map)
COCO = [{"index": i + 1, "id": c["id"], "isthing": c["isthing"]}
        for i, c in enumerate(sorted(COCO_CATEGORIES, key=lambda c: c["id"]))]
COCO_THINGS = [c["id"] for c in COCO if c["isthing"]]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    d2 = Detectron2PanopticFPN(1, CLASSES, depth=50, image_size=SIZE, box_batch_size=32,
                               detections_per_image=10, grown_box_margin=0.1)
    tv = PanopticFPN(1, CLASSES, depth=18, fpn_channels=32, image_size=SIZE, box_batch_size=32,
                     detections_per_image=10)
    return d2, tv


def _targets(size=SIZE):
    m = torch.zeros(1, size, size, dtype=torch.uint8)
    m[:, 20:44, 24:36] = 1
    return m, [dict(boxes=torch.tensor([[24.0, 20.0, 36.0, 44.0]]), labels=torch.tensor([1]),
                    masks=m, semantic=torch.randint(0, CLASSES, (size, size)))]


def test_losses_are_finite_and_reach_the_mask_head(models):
    d2, _ = models
    d2.train()
    gt, targets = _targets()
    images = torch.rand(1, 3, SIZE, SIZE)
    losses, detections, semantic, features = d2.losses_and_detections(images, targets)
    assert {"loss_sem_seg", "loss_mask", "loss_cls", "loss_rpn_cls",
            "loss_mask_grown_box"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    assert semantic.shape == (1, CLASSES, SIZE, SIZE)
    soft, _ = selected_mask(d2, features, detections[0], gt[0], 2, box_fallback=True)
    d2.zero_grad()
    soft.sum().backward()
    assert d2.model.roi_heads.mask_head.predictor.weight.grad.abs().sum() > 0


def test_the_grown_box_loss_trains_the_mask_head(models):
    d2, _ = models
    d2.train()
    _, targets = _targets()
    features = d2.features(torch.rand(1, 3, SIZE, SIZE))
    d2.zero_grad()
    d2.grown_box_mask_loss(features, targets, [(SIZE, SIZE)]).backward()
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


def test_training_resizes_input_and_targets_as_detectron2_does():
    torch.manual_seed(0)
    net = Detectron2PanopticFPN(1, CLASSES, depth=50, image_size=SIZE, box_batch_size=32,
                                detections_per_image=10, input_sizes_train=[96, 128],
                                input_size_test=128, input_max_size=200)
    net.train()
    sizes = {net.network_size(48, 64) for _ in range(40)}
    assert sizes == {(96, 128), (128, 171)}  # the long side: 64 * 128 / 48 = 170.7
    _, targets = _targets()
    losses, detections, semantic, _ = net.losses_and_detections(torch.rand(1, 3, SIZE, SIZE),
                                                                targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert semantic.shape == (1, CLASSES, SIZE, SIZE)
    assert detections[0].image_size == (SIZE, SIZE)
    assert (detections[0].boxes <= SIZE).all()  # back in input pixels
    net.eval()
    assert net.network_size(48, 64) == (128, 171)


def _published(path, seed=0):
    """detectron2's own COCO PanopticFPN with random weights (batch-norm statistics too),
    saved in the model zoo's format; a person-class bias so that some boxes score high."""
    torch.manual_seed(seed)
    cfg = zoo_config(50)
    cfg.MODEL.WEIGHTS = ""
    net = build_model(cfg).eval()
    with torch.no_grad():
        for name, buffer in net.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
            elif name.endswith("weight"):  # small: 50 random layers keep their scale
                buffer.uniform_(0.2, 0.4)
            elif name.endswith(("running_mean", "bias")):
                buffer.uniform_(-0.1, 0.1)
        net.roi_heads.box_predictor.cls_score.bias[0] += 6.0  # person
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f)
    return cfg, net


def test_a_model_zoo_checkpoint_gives_detectron2s_own_outputs(tmp_path):
    """Equivalence: boxes, scores, classes, masks, semantic logits and the panoptic
    output of maskopt's segmenter against detectron2's PanopticFPN on the same image,
    detectron2 fed as its predictor feeds it (ResizeShortestEdge, BGR 0..255)."""
    cfg, theirs = _published(tmp_path / "model_final.pkl")
    ours = Detectron2PanopticFPN(80, len(COCO) + 1, depth=50, weights="coco",
                                 load_weights=False, thing_category_ids=COCO_THINGS,
                                 categories=COCO, input_size_test=224, input_max_size=400)
    report = ours.load_checkpoint(str(tmp_path / "model_final.pkl"), "coco", COCO_THINGS)
    assert report["random"] == [] and "sem_seg_head.predictor" in report["from_file"]
    ours.eval()
    torch.manual_seed(1)
    image = torch.rand(1, 3, 96, 128).mul(0.5).add(torch.linspace(0, 0.5, 128))
    bgr = (255 * image[0]).flip(0).permute(1, 2, 0).numpy()
    resized = T.ResizeShortestEdge(224, 400).get_transform(bgr).apply_image(bgr)
    with torch.no_grad():
        ref = theirs([{"image": torch.as_tensor(resized).permute(2, 0, 1),
                       "height": 96, "width": 128}])[0]
        out = ours.predict(image)
        stuff = ours.semantic_head_logits(
            ours.model.sem_seg_head.layers(ours.features(image)), *_sizes(ours, image))
    found, inst = out.detections[0], ref["instances"]
    assert len(inst) >= 3 and len(found) == len(inst)
    torch.testing.assert_close(found.boxes, inst.pred_boxes.tensor, atol=1e-2, rtol=0)
    torch.testing.assert_close(found.scores, inst.scores, atol=1e-4, rtol=0)
    assert torch.equal(found.labels - 1, inst.pred_classes)
    from detectron2.layers import paste_masks_in_image
    from detectron2.structures import Boxes
    pasted = paste_masks_in_image(found.mask_probs[:, 0], Boxes(found.boxes), (96, 128))
    assert (pasted == inst.pred_masks).float().mean() > 0.999
    torch.testing.assert_close(stuff[0], ref["sem_seg"], atol=1e-3, rtol=1e-3)
    segments, info = ref["panoptic_seg"]
    theirs_label = torch.zeros(96, 128, dtype=torch.long)
    stuff_index = [c["index"] for c in COCO if not c["isthing"]]
    thing_index = [c["index"] for c in COCO if c["isthing"]]
    for s in info:
        theirs_label[segments == s["id"]] = (thing_index[s["category_id"]] if s["isthing"]
                                             else stuff_index[s["category_id"] - 1])
    ours_label = out.semantic_logits[0].argmax(0)
    assert (ours_label == theirs_label).float().mean() > 0.999
    assert len(info) >= 2


def _sizes(net, image):
    image_list, _ = net._image_list(image)
    return image_list, tuple(image.shape[-2:])


def test_a_checkpoint_that_is_not_coco_panopticfpn_is_refused_by_name(tmp_path):
    cfg, theirs = _published(tmp_path / "model_final.pkl")
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}

    def load(name, model):
        with open(tmp_path / name, "wb") as f:
            pickle.dump({"model": model, "__author__": "Detectron2 Model Zoo"}, f)
        ours = Detectron2PanopticFPN(1, len(COCO) + 1, depth=50, weights="coco",
                                     load_weights=False, thing_category_ids=[1],
                                     categories=[c for c in COCO if not c["isthing"]
                                                 or c["id"] == 1])
        return ours.load_checkpoint(str(tmp_path / name), "coco", [1])

    maskrcnn = {k: v for k, v in state.items() if not k.startswith("sem_seg_head")}
    with pytest.raises(MaskoptError, match=r"maskrcnn.pkl: not a PanopticFPN checkpoint "
                                           r"\(no sem_seg_head.predictor. layers\)"):
        load("maskrcnn.pkl", maskrcnn)
    other = dict(state)
    for suffix in ("weight", "bias"):
        key = f"roi_heads.box_predictor.cls_score.{suffix}"
        other[key] = other[key][:11]
    with pytest.raises(MaskoptError, match=r"other.pkl: roi_heads.box_predictor.cls_score.\w+ "
                                           r"has 11 rows, COCO's PanopticFPN has 81"):
        load("other.pkl", other)
    partial = {k: v for k, v in state.items() if "rpn_head.conv" not in k}
    with pytest.raises(MaskoptError, match="partial.pkl: 2 tensors would be left random: "
                                           "proposal_generator"):
        load("partial.pkl", partial)
    report = load("whole.pkl", state)
    assert report["random"] == [] and "proposal_generator.rpn_head.conv" in report["from_file"]


def test_the_paper_profiles_segmenter_is_detectron2s_at_its_scale():
    from maskopt.models.build import segmenter_config
    from maskopt.pipeline.params import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params-coco.yaml")
    config = segmenter_config(params, 80, len(COCO) + 1, COCO_THINGS, COCO)
    assert config["backend"] == "detectron2" and config["weights"] == "coco"
    assert config["input_size_test"] == 800 and config["input_max_size"] == 1333
    assert config["input_sizes_train"] == [640, 672, 704, 736, 768, 800]
    net = Detectron2PanopticFPN(**{k: v for k, v in config.items()
                                   if k not in ("kind", "backend")}, load_weights=False)
    square = [a[1] for a in net.model.proposal_generator.anchor_generator.cell_anchors]
    assert [float(a[2] - a[0]) for a in square] == [32, 64, 128, 256, 512]  # published
    assert net.model.sem_seg_head.predictor.out_channels == 54
    net.eval()
    assert net.network_size(256, 256) == (800, 800)
