"""Remove an object from a photo with the trained networks (the paper's user step).

The segmenter runs on the whole photo, letterboxed to the network size S; the user
picks a segment (a point, a box, a class, or a rough mask); its learned — expanded —
mask is brought back to full resolution. The inpainters then run on a square crop
around the mask (resized to S), so a large photo keeps more detail than a whole-image
pass would, and the result is pasted back inside the mask only: every pixel outside
it stays exactly as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from maskopt.core.device import autocast, pick_device, use_bf16
from maskopt.core.errors import MaskoptError
from maskopt.core.imaging import rgb_to_tensor, tensor_to_rgb
from maskopt.models.build import load_model, restore
from maskopt.models.detections import Detections
from maskopt.models.fast_inference import optimize_for_inference
from maskopt.models.inference import Networks, inpaint
from maskopt.models.inpainter import class_probabilities
from maskopt.models.selection import (
    PANOPTIC_SCORE,
    panoptic_segments,
    segment_mask,
    select_segment,
    select_segment_at_point,
)
from maskopt.pipeline.layout import JOINT_FILE

DEFAULT_MODELS = JOINT_FILE
CROP_CONTEXT = 2.0  # the inpainting crop is this many times the mask's larger side
# Below this network size `--precision auto` keeps fp32: the casts cost more than bf16
# saves on such small maps (benchmarks/remove.py)
BF16_MIN_SIZE = 128


@dataclass
class Removal:
    image: np.ndarray  # H×W×3 uint8, the photo with the object removed
    mask: np.ndarray   # H×W bool, the pixels that were replaced
    removed: list[tuple[str, float]] = field(default_factory=list)  # (class, score) per segment


@dataclass
class Selection:
    """The segment(s) picked in one photo, at the photo's resolution."""

    learned: np.ndarray  # H×W bool: the joint segmenter's mask on its learned, grown box
    # H×W bool: the pretrained segmenter's segment for the same pick (None: that segmenter
    # is not loaded, or it found nothing there)
    pretrained: np.ndarray | None
    removed: list[tuple[str, float]]
    semantic_logits: torch.Tensor  # the joint segmenter's, for the inpainters' guide
    letterbox: Letterbox

    def mask(self, grow: int = 0, learned_margin: bool = True) -> np.ndarray:
        """The mask to remove: the learned one (or, with ``learned_margin`` off, the
        pretrained segment), grown by a further ``grow`` px."""
        if not learned_margin and self.pretrained is None:
            raise MaskoptError("without the learned margin the pretrained segmenter's segment "
                               "is needed, and there is none (no segmenter.pt beside the "
                               "model, or it found no segment there)")
        mask = self.learned if learned_margin else self.pretrained
        limit = max_grow(*mask.shape)
        if not 0 <= grow <= limit:
            raise MaskoptError(f"the extra margin must be 0 to {limit} px for this "
                               f"{mask.shape[1]}x{mask.shape[0]} photo (a tenth of its longer "
                               f"side), got {grow}")
        return grow_by_distance(mask, grow) if grow else mask


def max_grow(height: int, width: int) -> int:
    """The largest extra margin a photo allows: a tenth of its longer side. Beyond it the
    mask is no longer about the object, and the page, the CLI and the API agree on it."""
    return max(height, width) // 10


def grow_by_distance(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` grown by a disc of radius ``pixels``: every pixel within that Euclidean
    distance of it. One distance transform, whose cost does not grow with the radius as
    a dilation's does (benchmarks/grow_mask.py)."""
    outside = (~mask).astype(np.uint8)
    return cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= pixels


@dataclass
class Letterbox:
    """Maps photo coordinates to the S×S network input (scaled, then padded)."""

    scale: float
    pad_x: int
    pad_y: int
    size: int

    @classmethod
    def fit(cls, height: int, width: int, size: int) -> Letterbox:
        scale = size / max(height, width)
        new_h, new_w = round(height * scale), round(width * scale)
        return cls(scale, (size - new_w) // 2, (size - new_h) // 2, size)

    def to_network(self, x: float, y: float) -> tuple[float, float]:
        return x * self.scale + self.pad_x, y * self.scale + self.pad_y

    def to_photo(self, x: float, y: float) -> tuple[float, float]:
        return (x - self.pad_x) / self.scale, (y - self.pad_y) / self.scale

    def image(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        new_w, new_h = round(w * self.scale), round(h * self.scale)
        small = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        small = small.reshape(new_h, new_w, *rgb.shape[2:])  # cv2 drops a 1-channel axis
        canvas = np.zeros((self.size, self.size) + rgb.shape[2:], rgb.dtype)
        canvas[self.pad_y:self.pad_y + new_h, self.pad_x:self.pad_x + new_w] = small
        return canvas

    def mask_to_photo(self, soft: np.ndarray, height: int, width: int) -> np.ndarray:
        new_w, new_h = round(width * self.scale), round(height * self.scale)
        inner = soft[self.pad_y:self.pad_y + new_h, self.pad_x:self.pad_x + new_w]
        return cv2.resize(inner.astype(np.float32), (width, height),
                          interpolation=cv2.INTER_LINEAR) > 0.5


def _tensor(rgb: np.ndarray, device) -> torch.Tensor:
    return rgb_to_tensor(rgb)[None].to(device)


def _label_name(det: Detections, index: int, names: list[str]) -> str:
    label = int(det.labels[index])
    return names[label] if label < len(names) else "object"


def _photo_box(det: Detections, index: int, box: Letterbox) -> list[int]:
    """The detection's box in photo pixels: x0, y0, x1, y1."""
    x0, y0 = box.to_photo(*det.boxes[index, :2].tolist())
    x1, y1 = box.to_photo(*det.boxes[index, 2:].tolist())
    return [math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)]


def _holds(box: list[int], x: float, y: float) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


class NoSegmentError(MaskoptError):
    """Nothing was found where the user pointed. ``nearby``: the closest segments, each
    ``{"name", "score", "box"}`` in photo pixels, for the page to draw."""

    def __init__(self, message: str, nearby: list[dict]):
        super().__init__(message)
        self.nearby = nearby


class Remover:
    """Loads the networks once; ``__call__`` removes one object from one photo.

    ``precision``: ``auto`` runs the networks under bfloat16 autocast where the device
    does bf16 fast (CUDA; CPUs with AVX-512 BF16 or AMX) and the networks are at least
    ``BF16_MIN_SIZE`` px, fp32 elsewhere.
    """

    def __init__(self, models: str | Path = DEFAULT_MODELS, device: str = "auto",
                 min_score: float = PANOPTIC_SCORE, precision: str = "auto",
                 networks: Networks | None = None,
                 pretrained_segmenter: str | Path | None = None):
        """``networks``: ones already built, used instead of loading ``models`` (the
        benchmarks time untrained paper-scale networks this way).
        ``pretrained_segmenter``: models/segmenter.pt, for the segment before joint
        training (shown beside the learned mask; ``learned_margin=False``)."""
        self.device = pick_device(device)
        bf16 = use_bf16(precision, self.device)
        self.nets = networks if networks is not None else Networks.load(models, self.device)
        self.pretrained = None
        if pretrained_segmenter is not None:
            saved = load_model(pretrained_segmenter, "pretrain_segmentation")
            self.pretrained = restore(saved["networks"]["segmenter"],
                                      source=str(pretrained_segmenter)).to(self.device).eval()
        # `auto` at small sizes stays fp32: there the casts cost more than bf16 saves
        self.bf16 = bf16 and (precision == "bf16" or self.nets.image_size >= BF16_MIN_SIZE)
        optimize_for_inference(
            [self.nets.segmenter, self.nets.edge, self.nets.segmentation, self.nets.image,
             *([self.pretrained] if self.pretrained is not None else [])],
            channels_last=self.bf16 and self.device.type == "cpu")
        self.min_score = min_score
        self.thing_names = self.nets.taxonomy.thing_names()

    def __call__(self, rgb: np.ndarray, *, point=None, box=None, category=None,
                 rough_mask=None, grow: int = 0, learned_margin: bool = True) -> Removal:
        selection = self.select(rgb, point=point, box=box, category=category,
                                rough_mask=rough_mask)
        mask = selection.mask(grow, learned_margin)
        return Removal(self.fill(rgb, mask, selection), mask, selection.removed)

    def select(self, rgb: np.ndarray, *, point=None, box=None, category=None,
               rough_mask=None) -> Selection:
        """The segment under ``point``, in ``box``, of ``category`` or overlapping
        ``rough_mask`` (exactly one): its learned mask and the pretrained segment."""
        if sum(x is not None for x in (point, box, category, rough_mask)) != 1:
            raise MaskoptError("give exactly one of point, box, category or rough mask")
        height, width = rgb.shape[:2]
        lb = Letterbox.fit(height, width, self.nets.image_size)
        image = _tensor(lb.image(rgb), self.nets.device)
        pick = dict(point=point, box=box, category=category, rough_mask=rough_mask)
        # the learned mask: the mask head on each chosen box grown by the joint model's
        # margin, exactly as in joint training and evaluation
        learned, out, removed = self._segment(self.nets.segmenter, self.nets.box_margin,
                                              image, lb, height, width, pick)
        pretrained = None
        if self.pretrained is not None:
            try:
                pretrained, _, _ = self._segment(self.pretrained, 0.0, image, lb, height,
                                                 width, pick)
            except MaskoptError:  # the pretrained segmenter found nothing there
                pretrained = None
        return Selection(learned, pretrained, removed, out.semantic_logits, lb)

    def fill(self, rgb: np.ndarray, mask: np.ndarray, selection: Selection) -> np.ndarray:
        """``rgb`` with ``mask`` filled by the joint model's inpainters."""
        if mask.shape != rgb.shape[:2] or not mask.any():
            raise MaskoptError("the mask to fill is empty or not the photo's size")
        return self._inpaint(rgb, mask, selection.semantic_logits, selection.letterbox)

    def _segment(self, segmenter, margin: float, image, lb, height, width, pick):
        """(mask at photo size, the segmenter's output, [(class, score)]) of the pick."""
        with torch.no_grad(), autocast(self.device, self.bf16):
            out = segmenter.predict(image, min_score=self.min_score)
        det = out.detections[0]
        chosen = self._select(det, lb, height, width, **pick)
        with torch.no_grad(), autocast(self.device, self.bf16):
            soft = torch.stack([segment_mask(segmenter, out.features, det.boxes[i],
                                             det.labels[i], det.image_size, margin)
                                for i in chosen])
        mask = lb.mask_to_photo(soft.amax(0).float().cpu().numpy(), height, width)
        if not mask.any():
            raise MaskoptError("the selected segment's mask is empty at this image size")
        names = self._names()
        return mask, out, [(_label_name(det, i, names), float(det.scores[i])) for i in chosen]

    # -- choosing the segment -------------------------------------------------------

    def _select(self, det, lb, height, width, point, box, category, rough_mask) -> list[int]:
        """Indices of the chosen instances (one, or every one of ``category``)."""
        names = self._names()
        if point is not None:
            x, y = point
            if not (0 <= x < width and 0 <= y < height):
                raise MaskoptError(f"point {x:g},{y:g} is outside the {width}x{height} image")
            # the centre of the pixel holding the point, on the network's grid
            centre = lb.to_network(math.floor(x) + 0.5, math.floor(y) + 0.5)
            index = select_segment_at_point(det, *centre, self.min_score)
            if index is None:
                raise self._no_segment(f"under point {x:g},{y:g}", det, lb, centre, names)
            return [index]
        if box is not None:
            x0, y0, x1, y1 = box
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise MaskoptError(f"box {x0:g},{y0:g},{x1:g},{y1:g} is not inside the "
                                   f"{width}x{height} image (need x0 < x1, y0 < y1)")
            region = np.zeros((height, width), np.uint8)
            region[int(y0):int(y1), int(x0):int(x1)] = 1
            return self._by_region(det, lb, region, f"box {x0:g},{y0:g},{x1:g},{y1:g}", names)
        if rough_mask is not None:
            if rough_mask.shape[:2] != (height, width):
                raise MaskoptError(f"rough mask is {rough_mask.shape[1]}x{rough_mask.shape[0]}, "
                                   f"the photo {width}x{height}")
            if not rough_mask.any():
                raise MaskoptError("the rough mask is empty")
            return self._by_region(det, lb, rough_mask.astype(np.uint8), "the rough mask", names)
        labels = [k for k, name in self.thing_names.items() if name == category]
        if not labels:
            raise MaskoptError(f"unknown class {category!r}; the model knows: "
                               + ", ".join(sorted(self.thing_names.values())))
        kept, _ = panoptic_segments(det, self.min_score)
        chosen = [i for i in kept if int(det.labels[i]) in labels]
        if not chosen:
            raise MaskoptError(f"no {category} found (score >= {self.min_score})")
        return chosen

    def _names(self) -> list[str]:
        """Display name of each thing label (0 = no class)."""
        return ["object"] + [self.thing_names[k] for k in sorted(self.thing_names)]

    def _by_region(self, det, lb, region: np.ndarray, what: str, names) -> list[int]:
        in_network = torch.from_numpy(lb.image(region[..., None])[..., 0] > 0)
        index = select_segment(det, in_network.to(det.boxes.device), self.min_score)
        if index is None:
            ys, xs = np.nonzero(region)
            centre = lb.to_network(xs.mean(), ys.mean())
            raise self._no_segment(f"overlaps {what}", det, lb, centre, names)
        return [index]

    def _no_segment(self, what: str, det, lb, centre, names, count: int = 3):
        """The error for a pick that holds no segment, naming the ``count`` nearest."""
        if not len(det):
            return NoSegmentError(f"no segment {what}; no segments found at all "
                                  f"(score >= {self.min_score})", [])
        cx = ((det.boxes[:, 0] + det.boxes[:, 2]) / 2 - centre[0]).abs()
        cy = ((det.boxes[:, 1] + det.boxes[:, 3]) / 2 - centre[1]).abs()
        nearby, described = [], []
        px, py = lb.to_photo(*centre)
        for i in torch.argsort(cx + cy)[:count].tolist():
            segment = {"name": _label_name(det, i, names), "score": round(float(det.scores[i]), 2),
                       "box": _photo_box(det, i, lb)}
            nearby.append(segment)
            described.append(f"{segment['name']} (score {segment['score']:.2f}) at box "
                             + ",".join(str(v) for v in segment["box"])
                             + (" (its box holds the point, its mask does not)"
                                if _holds(segment["box"], px, py) else ""))
        return NoSegmentError(f"no segment {what}; segments near it: " + "; ".join(described),
                              nearby)

    # -- inpainting on a crop ---------------------------------------------------------

    def _inpaint(self, rgb: np.ndarray, mask: np.ndarray, semantic_logits, lb) -> np.ndarray:
        height, width = mask.shape
        ys, xs = np.nonzero(mask)
        side = int(max(np.ptp(xs) + 1, np.ptp(ys) + 1) * CROP_CONTEXT)
        side = min(max(side, self.nets.image_size), max(height, width))
        cx, cy = (xs.min() + xs.max()) // 2, (ys.min() + ys.max()) // 2
        x0 = int(np.clip(cx - side // 2, 0, max(width - side, 0)))
        y0 = int(np.clip(cy - side // 2, 0, max(height - side, 0)))
        crop = rgb[y0:y0 + side, x0:x0 + side]
        crop_mask = mask[y0:y0 + side, x0:x0 + side]
        s = self.nets.image_size
        crop_box = Letterbox.fit(*crop.shape[:2], s)
        net_image = _tensor(crop_box.image(crop), self.nets.device)
        net_mask = crop_box.image(crop_mask.astype(np.uint8)[..., None])[..., 0]
        # Dilate by one network pixel so the downscaled hole still covers the object.
        net_mask = cv2.dilate(net_mask, np.ones((3, 3), np.uint8))
        # letterbox padding of the crop is unknown content: treat it as a hole, too
        padding = crop_box.image(np.ones(crop.shape[:2] + (1,), np.uint8))[..., 0] == 0
        hole = torch.from_numpy((net_mask > 0) | padding).float()[None, None].to(net_image.device)
        semantic = self._semantic_for_crop(semantic_logits, lb, (x0, y0, side), crop_box)
        with torch.no_grad(), autocast(self.device, self.bf16):
            filled = inpaint(self.nets, net_image, hole, semantic)[0]
        filled = tensor_to_rgb(filled)
        new_w, new_h = round(crop.shape[1] * crop_box.scale), round(crop.shape[0] * crop_box.scale)
        inner = filled[crop_box.pad_y:crop_box.pad_y + new_h, crop_box.pad_x:crop_box.pad_x + new_w]
        back = cv2.resize(inner, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_CUBIC)
        result = rgb.copy()
        region = result[y0:y0 + side, x0:x0 + side]
        region[crop_mask] = back[crop_mask]
        return result

    def _semantic_for_crop(self, logits, lb: Letterbox, crop, crop_box: Letterbox):
        """The whole-photo semantic probabilities, resampled onto the crop's network grid."""
        x0, y0, _ = crop
        probs = class_probabilities(logits.float())
        grid = crop_grid(lb, (x0, y0), crop_box).to(probs.device)
        return torch.nn.functional.grid_sample(probs, grid, mode="bilinear",
                                               padding_mode="border", align_corners=False)


def crop_grid(photo_box: Letterbox, origin: tuple[int, int], crop_box: Letterbox) -> torch.Tensor:
    """1×S×S×2 ``grid_sample`` grid: where each pixel of the crop's network input (a
    crop of the photo at ``origin``) lies on the whole photo's network input."""
    s = crop_box.size
    coords = torch.arange(s, dtype=torch.float32) + 0.5
    px = (coords - crop_box.pad_x) / crop_box.scale + origin[0]  # photo x of each column
    py = (coords - crop_box.pad_y) / crop_box.scale + origin[1]
    nx = (px * photo_box.scale + photo_box.pad_x) / s * 2 - 1  # photo's network grid, [-1, 1]
    ny = (py * photo_box.scale + photo_box.pad_y) / s * 2 - 1
    return torch.stack([nx[None, :].expand(s, s), ny[:, None].expand(s, s)], -1)[None]


def remove(image, *, point=None, box=None, category=None, rough_mask=None,
           grow: int = 0, models: str | Path | None = None,
           device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Python API: ``maskopt.remove(image, point=(x, y))`` → (image, mask).

    ``image`` is an H×W×3 uint8 array or a path; the result is the same size, with
    only the returned mask's pixels changed. ``models`` is found as by `maskopt remove`
    when not given ($MASKOPT_MODELS, ./models/joint.pt, the installed project's). Load
    a :class:`Remover` once to process many photos.
    """
    from maskopt.removal.locate import find_model

    models = find_model(models)
    if isinstance(image, str | Path):
        from maskopt.core.io import read_rgb

        image, _ = read_rgb(image)
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise MaskoptError(f"image must be H×W×3 uint8, got {image.dtype} {image.shape}")
    result = Remover(models, device)(image, point=point, box=box, category=category,
                                     rough_mask=rough_mask, grow=grow)
    return result.image, result.mask
