"""Cut-and-paste training pairs (paper Sec. III-A).

A person segment is cut out of one image and pasted, with a blurred alpha edge
(Dwibedi et al., "Cut, Paste and Learn"), at a random place and scale onto
another image. Each pair is written as PNGs (lossless, so ``I`` equals ``I_G``
exactly away from the pasted person):

    {split}/images/NAME.png           I      the image with the pasted person
    {split}/targets/NAME.png          I_G    the untouched background (ground truth)
    {split}/masks/NAME.png            M_G    pasted alpha > 0.5, as 0/255
    {split}/panoptic/NAME.png         segment ids of I (COCO RGB encoding)
    {split}/semantic/NAME.png         class index per pixel of I (0 = unlabeled)
    {split}/target_semantic/NAME.png  class index per pixel of I_G
    {split}/annotations.json          COCO panoptic JSON of I, plus per pair the pasted
                                      person (RLE), its mask ratio and bucket

With ``person_scale="mask_ratio"`` the pasted person's size is chosen for a target
mask ratio: uniform over [min_mask_ratio, max_mask_ratio] for training, and cycling
through the four evaluation buckets 0-10/10-20/20-30/30-40 % for the test split. With
``"native"`` (the paper: a person at a random location) the person keeps the size it
has in its own image, scaled as that image would be to the pair's side; a pair whose
mask ratio falls outside the range is drawn again with another person or place, and
the test split keeps the ratios persons have (no cycling through the buckets).
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage
from tqdm import tqdm

from maskopt.core.errors import MaskoptError
from maskopt.core.io import atomic_path, write_json
from maskopt.data.panoptic import PERSON, PanopticDataset, id_to_rgb

BUCKETS = ((0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4))
PAIR_FOLDERS = ("images", "targets", "masks", "panoptic", "semantic", "target_semantic")
MAX_ATTEMPTS = 12


def bucket_name(ratio: float) -> str:
    """'0-10', '10-20', '20-30' or '30-40' for a mask ratio in [0, 0.4]."""
    for low, high in BUCKETS:
        if ratio < high or (high == BUCKETS[-1][1] and ratio <= high):
            return f"{round(low * 100)}-{round(high * 100)}"
    raise ValueError(f"mask ratio {ratio:.3f} is above the last bucket (40 %)")


@dataclass(frozen=True)
class SynthesisConfig:
    image_size: int
    min_person_area: float
    max_truncation: float
    blur_sigma: float
    min_mask_ratio: float
    max_mask_ratio: float
    person_scale: str = "mask_ratio"  # mask_ratio | native (see the module docstring)


# each split's own random stream (train and test keep the codes they always had)
SPLIT_CODES = {"train": 0, "test": 1, "validation": 2}


@dataclass(frozen=True)
class PersonRef:
    record: int  # index into PanopticDataset.records
    segment_id: int


def find_person_segments(dataset: PanopticDataset,
                         min_area: float) -> tuple[list[PersonRef], Counter]:
    """Person segments worth pasting, judged from the JSON alone (no pixels read)."""
    person = dataset.category_id(PERSON)
    refs, skipped = [], Counter()
    for index, record in enumerate(dataset.records):
        for seg in record.segments:
            if seg.get("category_id") != person:
                continue
            if seg.get("iscrowd", 0):
                skipped["person_crowd"] += 1
            elif seg.get("area", 0) <= 0:
                skipped["person_zero_area"] += 1
            elif seg["area"] < min_area * record.width * record.height:
                skipped["person_too_small"] += 1
            else:
                refs.append(PersonRef(index, int(seg["id"])))
    if not refs:
        raise MaskoptError(f"{dataset.json_path}: no usable '{PERSON}' segment in the dataset "
                           f"({dict(skipped) or 'none annotated'})")
    return refs, skipped


def class_index_map(categories: dict[int, dict]) -> dict[int, int]:
    """Category id -> contiguous class index (1..K, sorted by id; 0 = unlabeled)."""
    return {cid: i + 1 for i, cid in enumerate(sorted(categories))}


def bounding_box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Rows and columns of a 2-D mask's bounding box, or None if it is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def truncation(mask: np.ndarray, box: tuple[slice, slice] | None = None) -> float:
    """Fraction of the segment's outline that lies on the image border (cut off by the frame).

    Works on the segment's bounding box ``box`` (found if not given): outside it the
    mask is empty, so the outline is the same as the whole image's.
    """
    box = box or bounding_box(mask)
    if box is None:
        return 0.0
    rows, cols = box
    padded = np.pad(mask[box].astype(np.uint8), 1)
    outline = padded & ~cv2.erode(padded, np.ones((3, 3), np.uint8)).astype(bool)
    # the box's padded frame is empty; of the rest, the image's first and last row and
    # column are where the frame cuts the segment
    height, width = mask.shape
    inner = outline[1:-1, 1:-1]
    on_border = inner.copy()
    on_border[int(rows.start == 0):inner.shape[0] - int(rows.stop == height),
              int(cols.start == 0):inner.shape[1] - int(cols.stop == width)] = False
    return float(on_border.sum()) / max(1, int(outline.sum()))


def square_crop(image: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    """Centre square crop resized to ``size`` (the networks' input shape)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top:top + side, left:left + side]
    return cv2.resize(crop, (size, size), interpolation=interpolation)


FILL_SIGMA = 3.0  # how far _fill_outside spreads an object's colours past its outline


def _fill_outside(colour: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Extend the object's colours past its outline, so the blurred edge shows no halo
    of the source image's background."""
    inside = np.ascontiguousarray(mask).view(np.uint8)
    weight = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), FILL_SIGMA)
    spread = cv2.GaussianBlur(cv2.copyTo(colour, inside, np.zeros_like(colour)), (0, 0),
                              FILL_SIGMA)
    np.maximum(weight, 1e-6, out=weight)
    spread /= weight[..., None]
    return cv2.copyTo(colour, inside, spread)


def _resize_and_clip(obj_mask: np.ndarray, size: int, scale: float, u: float, v: float):
    """The object mask resized by ``scale``, cut to the canvas: (visible part, its slices, box)."""
    h0, w0 = obj_mask.shape
    h, w = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    top, left = round(v * (size - h)), round(u * (size - w))
    resized = cv2.resize(obj_mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, size), min(left + w, size)
    visible = resized[y0 - top:y1 - top, x0 - left:x1 - left]
    return visible, (slice(y0, y1), slice(x0, x1)), (top, left, h, w)


def _place(obj_mask: np.ndarray, size: int, scale: float, u: float, v: float):
    """Resize the object mask by ``scale`` and position it; return mask on canvas and box."""
    visible, where, box = _resize_and_clip(obj_mask, size, scale, u, v)
    canvas = np.zeros((size, size), bool)
    canvas[where] = visible
    return canvas, box


def _pasted_colours(obj_rgb: np.ndarray, obj_mask: np.ndarray, scale: float,
                    hard: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The object's colours resized by ``scale`` into its ``box`` on the canvas (where
    ``hard`` is its placed mask) and spread past the outline, as float32."""
    top, left, h, w = box
    size = hard.shape[0]
    colour = cv2.resize(_fill_outside(obj_rgb.astype(np.float32), obj_mask), (w, h),
                        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((size, size, 3), np.float32)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + h, size), min(left + w, size)
    canvas[y0:y1, x0:x1] = colour[y0 - top:y1 - top, x0 - left:x1 - left]
    # Spread the colours one step further so the blurred edge has no black rim.
    return _fill_outside(canvas, hard)


def _scale_for_ratio(obj_mask: np.ndarray, size: int, ratio: float, u: float, v: float) -> float:
    """Binary search for the scale whose pasted area is ``ratio`` of the image."""
    low, high = 1e-3, 4.0 * size / max(obj_mask.shape)
    for _ in range(14):
        mid = (low + high) / 2
        visible = _resize_and_clip(obj_mask, size, mid, u, v)[0]
        area = np.count_nonzero(visible) / (size * size)
        low, high = (mid, high) if area < ratio else (low, mid)
    return low


class PairSynthesizer:
    """Makes pair ``k`` of a split, deterministically from (seed, split, k)."""

    def __init__(self, dataset: PanopticDataset, persons: list[PersonRef], config: SynthesisConfig,
                 seed: int, split_code: int, test_buckets: bool, one_per_background: bool):
        self.dataset, self.persons, self.config = dataset, persons, config
        self.seed, self.split_code = seed, split_code
        self.test_buckets, self.one_per_background = test_buckets, one_per_background
        self.person_id = dataset.category_id(PERSON)
        self.class_index = class_index_map(dataset.categories)
        self.unusable: dict[PersonRef, str] = {}  # per process: persons found truncated or empty

    def ratio_range(self, k: int) -> tuple[float, float]:
        """Mask ratios allowed for pair ``k``: its bucket (test) or the training range."""
        c = self.config
        if self.test_buckets:
            low, high = BUCKETS[k % len(BUCKETS)]
            low, high = max(low, c.min_mask_ratio), min(high, c.max_mask_ratio)
        else:
            low, high = c.min_mask_ratio, c.max_mask_ratio
        return low, high

    def make(self, k: int) -> dict:
        """Return {'pair': arrays+metadata} or {'skip': reason}; never raises on bad data."""
        rng = np.random.default_rng([self.seed, self.split_code, k])
        background = k % len(self.dataset) if self.one_per_background else int(
            rng.integers(len(self.dataset)))
        notes = Counter()
        try:
            bg = self.dataset.load(background)
        except MaskoptError as exc:
            return {"skip": _reason(exc), "detail": str(exc)}
        bg_rgb, bg_ids, bg_record = bg.rgb, bg.ids, bg.record
        if bg.mode != "RGB":
            notes[f"converted_{bg.mode}_to_RGB"] += 1
        low, high = self.ratio_range(k)
        size = self.config.image_size
        bg_rgb = square_crop(bg_rgb, size, cv2.INTER_AREA)
        bg_ids = square_crop(bg_ids, size, cv2.INTER_NEAREST)
        for _ in range(MAX_ATTEMPTS):
            ref = self.persons[int(rng.integers(len(self.persons)))]
            ratio = rng.uniform(low, high)
            u, v = rng.uniform(0, 1, size=2)
            if ref.record == background and len(self.dataset) > 1:
                continue
            if ref in self.unusable:  # judged before: its files have not changed
                notes[self.unusable[ref]] += 1
                continue
            try:
                # the segment map first: a third of the candidates fail on it alone,
                # and then their RGB need not be decoded
                src_ids = self.dataset.load_ids(ref.record)
                obj = src_ids == ref.segment_id
                box = bounding_box(obj)
                problem = self._unusable_person(obj, box)
                if problem:
                    self.unusable[ref] = problem
                    notes[problem] += 1
                    continue
                src = self.dataset.load(ref.record, ids=src_ids)
            except MaskoptError as exc:
                notes[_reason(exc)] += 1
                continue
            src_rgb, src_record = src.rgb, src.record
            if self.config.person_scale == "native":  # as square_crop scales its image
                scale = size / min(src_rgb.shape[:2])
            else:
                scale = _scale_for_ratio(obj[box], size, ratio, u, v)
            pair = self._compose(bg_rgb, bg_ids, bg_record, src_rgb[box], obj[box], scale, u, v)
            if pair is None or not self._accepts(pair["mask_ratio"], low, high):
                notes["ratio_missed"] += 1
                continue
            pair.update(background_image_id=bg_record.image_id,
                        source_image_id=src_record.image_id, source_segment_id=ref.segment_id)
            return {"pair": pair, "notes": notes}
        return {"skip": "no_fitting_person", "notes": notes,
                "detail": f"pair {k}: no person fitted the {low:.0%}-{high:.0%} mask ratio"}

    def _unusable_person(self, obj: np.ndarray, box: tuple[slice, slice] | None) -> str | None:
        """Why a person segment (its pixel mask and bounding box) cannot be pasted, or None."""
        if box is None:
            return "person_zero_area"
        if truncation(obj, box) > self.config.max_truncation:
            return "person_truncated"
        return None

    def _accepts(self, ratio: float, low: float, high: float) -> bool:
        if not low <= ratio <= high:
            return False
        # a test pair must land in the bucket it was made for, not on the next one's edge
        return not self.test_buckets or bucket_name(ratio) == bucket_name((low + high) / 2)

    def _compose(self, bg_rgb, bg_ids, bg_record, obj_rgb, obj_mask, scale, u, v):
        size, sigma = self.config.image_size, self.config.blur_sigma
        hard, (top, left, h, w) = _place(obj_mask, size, scale, u, v)
        alpha = hard.astype(np.float32)
        if sigma > 0:
            alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
        mask = alpha > 0.5
        if not mask.any():
            return None
        canvas = _pasted_colours(obj_rgb, obj_mask, scale, hard, (top, left, h, w))
        weight = alpha[..., None]
        blend = weight * canvas
        blend += (1 - weight) * bg_rgb
        # where alpha rounds to nothing the background stays exactly as it was
        image = cv2.copyTo(bg_rgb, (alpha <= 1 / 512).view(np.uint8),
                           np.round(blend, out=blend).astype(np.uint8))
        pasted_id = int(bg_ids.max()) + 1
        ids = np.where(mask, pasted_id, bg_ids)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        person = {"id": pasted_id, "category_id": self.person_id, "iscrowd": 0,
                  "area": int(mask_utils.area(rle)),
                  "bbox": [float(x) for x in mask_utils.toBbox(rle)],
                  "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}}
        categories = {s["id"]: s["category_id"] for s in bg_record.segments}
        categories[pasted_id] = self.person_id
        crowd = {s["id"] for s in bg_record.segments if s.get("iscrowd", 0)}
        # both class maps and the segment table from one compact label map of the
        # background: COCO's ids reach 256³, too far for a lookup table per map
        known = np.array(sorted(categories), np.int64)
        bg_labels = segment_labels(bg_ids, known)
        labels = np.where(mask, np.searchsorted(known, pasted_id) + 1, bg_labels)
        class_of_label = np.zeros(len(known) + 1, np.uint8)
        class_of_label[1:] = [self.class_index[categories[i]] for i in known.tolist()]
        return {
            "I": image, "I_G": bg_rgb, "M_G": mask, "alpha": alpha, "ids": ids,
            "semantic": class_of_label[labels],
            "target_semantic": class_of_label[bg_labels],
            "segments_info": _segments_info(labels, known, categories, crowd),
            "person": person, "mask_ratio": float(mask.mean()),
        }


def segment_labels(ids: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Label k + 1 where a pixel's segment id is ``known[k]`` (sorted ids), 0 where it
    is none of them: a compact map for bincount and lookups, whatever the ids' range."""
    if not len(known):
        return np.zeros(ids.shape, np.int64)
    index = np.minimum(np.searchsorted(known, ids), len(known) - 1)
    return np.where(known[index] == ids, index + 1, 0)


def _segments_info(labels: np.ndarray, known: np.ndarray, categories: dict[int, int],
                   crowd: set[int] = frozenset()) -> list[dict]:
    """COCO segments_info of a label map (``segment_labels`` of the segment ids, sorted
    ``known``); id 0 is void, crowd regions keep ``iscrowd: 1``."""
    # one pass for all areas and boxes instead of a full-image scan per segment
    areas = np.bincount(labels.ravel(), minlength=len(known) + 1)
    boxes = ndimage.find_objects(labels, max_label=len(known))
    info = []
    for k, segment_id in enumerate(known.tolist()):
        if segment_id == 0 or not areas[k + 1]:
            continue
        rows, cols = boxes[k]
        info.append({"id": segment_id, "category_id": int(categories[segment_id]),
                     "iscrowd": int(segment_id in crowd), "area": int(areas[k + 1]),
                     "bbox": [cols.start, rows.start, cols.stop - cols.start,
                              rows.stop - rows.start]})
    return info


def _reason(error: MaskoptError) -> str:
    text = str(error)
    if "not found" in text:
        return "missing_file"
    if "segment map is" in text:
        return "size_mismatch"
    return "unreadable_image"


# --- writing a split, in parallel ------------------------------------------------------

_worker: dict = {}


def _init_worker(synthesizer: PairSynthesizer, out_dir: Path) -> None:
    cv2.setNumThreads(1)
    _worker.update(synthesizer=synthesizer, out_dir=out_dir)


def _make_and_write(k: int) -> dict:
    result = _worker["synthesizer"].make(k)
    pair = result.pop("pair", None)
    if pair is None:
        return result
    name = f"{k:07d}"
    out = _worker["out_dir"]
    arrays = {"images": pair.pop("I"), "targets": pair.pop("I_G"),
              "masks": pair.pop("M_G").astype(np.uint8) * 255,
              "panoptic": id_to_rgb(pair.pop("ids")), "semantic": pair.pop("semantic"),
              "target_semantic": pair.pop("target_semantic")}
    del pair["alpha"]  # M_G = alpha > 0.5 is what later stages use
    for folder, array in arrays.items():
        Image.fromarray(array).save(out / folder / f"{name}.png", compress_level=1)
    result["pair"] = dict(pair, name=name, bucket=bucket_name(pair["mask_ratio"]))
    return result


def synthesize_split(dataset: PanopticDataset, out_dir: str | Path, *, split: str,
                     n_pairs: int | None, config: SynthesisConfig, seed: int,
                     workers: int = 1, min_pairs: int = 1) -> dict:
    """Write all pairs of one split under ``out_dir`` atomically; return its statistics.

    A split yielding fewer than ``min_pairs`` pairs is an error naming the causes, and
    the pairs written before stay as they were."""
    persons, skipped = find_person_segments(dataset, config.min_person_area)
    test = split != "train"  # the test and validation pairs cycle through the buckets
    synthesizer = PairSynthesizer(dataset, persons, config, seed, split_code=SPLIT_CODES[split],
                                  test_buckets=test and config.person_scale == "mask_ratio",
                                  one_per_background=n_pairs is None)
    total = len(dataset) if n_pairs is None else n_pairs
    images, annotations = [], []
    buckets, notes = Counter(), Counter(skipped)
    details = []
    with atomic_path(out_dir) as staging:
        for folder in PAIR_FOLDERS:
            (staging / folder).mkdir(parents=True)
        results = _run(synthesizer, staging, total, workers, desc=f"synthesize {split}")
        for result in results:
            notes.update(result.get("notes", {}))
            if "skip" in result:
                notes[f"skipped_{result['skip']}"] += 1
                details.append(result.get("detail", result["skip"]))
                continue
            pair = result["pair"]
            image_id = len(images) + 1
            buckets[pair["bucket"]] += 1
            images.append({"id": image_id, "file_name": f"{pair['name']}.png",
                           "width": config.image_size, "height": config.image_size})
            annotations.append({"image_id": image_id, "file_name": f"{pair['name']}.png",
                                **{k: v for k, v in pair.items() if k != "name"}})
        if len(images) < min_pairs:
            raise MaskoptError(_too_few_pairs(split, len(images), total, min_pairs, notes,
                                              dataset))
        write_json(staging / "annotations.json", {
            "info": {"description": f"maskopt cut-and-paste pairs ({split})",
                     "config": asdict(config), "seed": seed},
            "images": images, "annotations": annotations,
            "categories": [dict(cat, index=index) for cid, index in
                           class_index_map(dataset.categories).items()
                           for cat in [dataset.categories[cid]]],
        })
    for line in details[:20]:
        tqdm.write(f"  skipped: {line}")
    return {"pairs": len(images), "requested": total, "buckets": dict(sorted(buckets.items())),
            "events": dict(sorted(notes.items()))}


def _too_few_pairs(split: str, made: int, total: int, min_pairs: int, notes: Counter,
                   dataset: PanopticDataset) -> str:
    causes = ", ".join(f"{k}: {v}" for k, v in notes.most_common() if k.startswith("skipped"))
    message = (f"{split}: {made} of {total} pairs made, fewer than synthesize.min_pairs "
               f"({min_pairs}); {causes or 'no pair was skipped'}")
    if notes["skipped_missing_file"]:
        message += (f"; files listed in {dataset.json_path} are missing: run the download "
                    "stage again (`dvc repro download`) to restore them")
    return message


def _run(synthesizer: PairSynthesizer, staging: Path, total: int, workers: int, desc: str):
    bar = dict(total=total, desc=desc, unit="pair", dynamic_ncols=True)
    if workers <= 1:
        _init_worker(synthesizer, staging)
        yield from tqdm(map(_make_and_write, range(total)), **bar)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_init_worker, initargs=(synthesizer, staging)) as pool:
        yield from tqdm(pool.imap(_make_and_write, range(total), chunksize=8), **bar)
