"""Training and evaluation samples read from the synthesized pairs (maskopt.data.synthesize).

Everything a stage needs per pair is made here, in data-loader workers rather than in
the training step: the signed distance φ of M_G (scipy), Canny edges of I and I_G
(scikit-image, as EdgeConnect; Gaussian σ from params), and the instance targets of
I for the segmenter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from maskopt.core.errors import MaskoptError
from maskopt.core.imaging import gray_and_edges, rgb_to_tensor
from maskopt.core.io import read_json
from maskopt.core.signed_distance import normalized_signed_distance
from maskopt.core.taxonomy import Taxonomy
from maskopt.data.panoptic import rgb_to_id


def _png(path: Path, mode: str | None = None) -> np.ndarray:
    if not path.exists():
        raise MaskoptError(f"{path}: pair file not found (rerun `dvc repro synthesize`)")
    with Image.open(path) as img:
        return np.asarray(img.convert(mode) if mode else img)


@dataclass(frozen=True)
class PairRecords:
    """What a data-loader worker keeps of annotations.json, in a few flat numpy arrays.

    At COCO's size the parsed JSON is ~800 MiB of Python dicts, and every forked worker
    would soon hold its own copy (reference counting writes to every object it reads).
    Numpy arrays are not touched that way, so workers share these pages with the parent.
    Only what ``__getitem__`` needs is kept: the file stem, bucket and mask ratio of
    each pair and the (segment id, thing label) of its non-crowd thing segments.
    """

    names: np.ndarray            # n, str
    buckets: np.ndarray          # n, str
    mask_ratios: np.ndarray      # n, float
    offsets: np.ndarray          # n + 1: pair i's things are [offsets[i], offsets[i+1])
    segment_ids: np.ndarray      # panoptic segment id of each thing
    labels: np.ndarray           # its thing label 1..K

    @classmethod
    def from_annotations(cls, pairs: list[dict], thing_ids: dict[int, int]) -> PairRecords:
        offsets, segment_ids, labels = [0], [], []
        for pair in pairs:
            for seg in pair["segments_info"]:
                # Crowd regions are no instance targets (as COCO and detectron2 treat
                # them); their pixels keep their class in the semantic maps.
                if seg["category_id"] in thing_ids and not seg.get("iscrowd", 0):
                    segment_ids.append(seg["id"])
                    labels.append(thing_ids[seg["category_id"]])
            offsets.append(len(segment_ids))
        return cls(np.array([Path(p["file_name"]).stem for p in pairs]),
                   np.array([p["bucket"] for p in pairs]),
                   np.array([p["mask_ratio"] for p in pairs], dtype=np.float64),
                   np.array(offsets, dtype=np.int64), np.array(segment_ids, dtype=np.int64),
                   np.array(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int | slice):
        if isinstance(index, slice):  # a prefix or other run of pairs, e.g. for a test
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("PairRecords slices take step 1")
            stop = max(stop, start)
            first, last = self.offsets[start], self.offsets[stop]
            return PairRecords(self.names[start:stop], self.buckets[start:stop],
                               self.mask_ratios[start:stop],
                               self.offsets[start:stop + 1] - first,
                               self.segment_ids[first:last], self.labels[first:last])
        things = slice(self.offsets[index], self.offsets[index + 1])
        return {"name": str(self.names[index]), "bucket": str(self.buckets[index]),
                "mask_ratio": float(self.mask_ratios[index]),
                "thing_segments": list(zip(self.segment_ids[things].tolist(),
                                           self.labels[things].tolist(), strict=True))}


class PairDataset(Dataset):
    """One split of the synthesized pairs. Each item is a dict of tensors:

    image, target      3×H×W in [0, 1]  (I, I_G)
    mask, phi          1×H×W            (M_G in {0, 1}; its normalized signed distance)
    gray, edges        1×H×W            (of I; Canny edges of I)
    target_gray, target_edges
    semantic, target_semantic  H×W long (class index, 0 = unlabeled)
    instances          dict boxes (n×4, xyxy), labels (n), masks (n×H×W uint8)
    bucket, mask_ratio, name, flipped (whether it is the mirrored pair)

    With ``cache``, each process keeps every item it loads (both flips) and hands out
    copies, so that decoding and Canny do not take CPU from short training steps.
    Memory grows to the whole split, so it is for small datasets (the sample).
    """

    def __init__(self, split_dir: str | Path, canny_sigma: float = 2.0,
                 flip: bool = False, seed: int = 0, cache: bool = False):
        self.dir = Path(split_dir)
        annotations = self.dir / "annotations.json"
        if not annotations.exists():
            raise MaskoptError(f"{annotations}: not found; run `dvc repro synthesize` first")
        data = read_json(annotations)
        self.taxonomy = Taxonomy(tuple(data["categories"]))
        if not data["annotations"]:
            raise MaskoptError(f"{annotations}: the split has no pairs")
        self.pairs = PairRecords.from_annotations(data["annotations"], self.taxonomy.thing_ids)
        del data  # the parsed JSON goes before any worker is forked
        self.canny_sigma = canny_sigma
        self.flip = flip
        self.seed = seed
        self._cache: dict[tuple[int, bool], dict] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """``dataset[i]``: pair i as stored; ``dataset[(i, epoch)]`` (what the training
        sampler asks for): with the random flip of that epoch, when ``flip`` is on."""
        index, epoch = key if isinstance(key, tuple) else (key, None)
        flipped = bool(self.flip and epoch is not None
                       and np.random.default_rng((self.seed, epoch, index)).random() < 0.5)
        if self._cache is None:
            return self._load(index, flipped)
        if (index, flipped) not in self._cache:
            self._cache[index, flipped] = self._load(index, flipped)
        return _copy(self._cache[index, flipped])

    def _load(self, index: int, flipped: bool) -> dict:
        pair = self.pairs[index]
        name = pair["name"]
        image = _png(self.dir / "images" / f"{name}.png", "RGB")
        target = _png(self.dir / "targets" / f"{name}.png", "RGB")
        mask = _png(self.dir / "masks" / f"{name}.png", "L") > 127
        ids = rgb_to_id(_png(self.dir / "panoptic" / f"{name}.png", "RGB"))
        semantic = _png(self.dir / "semantic" / f"{name}.png")
        target_semantic = _png(self.dir / "target_semantic" / f"{name}.png")
        if flipped:
            image, target, mask, ids, semantic, target_semantic = (
                a[:, ::-1] for a in (image, target, mask, ids, semantic, target_semantic))
        gray, edges = gray_and_edges(image, self.canny_sigma)
        target_gray, target_edges = gray_and_edges(target, self.canny_sigma)
        return {
            "image": rgb_to_tensor(image), "target": rgb_to_tensor(target),
            "mask": torch.from_numpy(mask.astype(np.float32))[None],
            "phi": torch.from_numpy(normalized_signed_distance(mask))[None],
            "gray": torch.from_numpy(gray)[None],
            "target_gray": torch.from_numpy(target_gray)[None],
            "edges": torch.from_numpy(edges)[None],
            "target_edges": torch.from_numpy(target_edges)[None],
            "semantic": torch.from_numpy(semantic.astype(np.int64)),  # astype copies
            "target_semantic": torch.from_numpy(target_semantic.astype(np.int64)),
            "instances": self._instances(ids, pair["thing_segments"]),
            "bucket": pair["bucket"], "mask_ratio": pair["mask_ratio"], "name": name,
            "flipped": flipped,
        }

    def _instances(self, ids: np.ndarray, thing_segments: list[tuple[int, int]]) -> dict:
        boxes, labels, masks = [], [], []
        for segment_id, label in thing_segments:
            m = ids == segment_id
            if not m.any():
                continue
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            labels.append(label)
            masks.append(m)
        h, w = ids.shape
        return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(labels, dtype=torch.int64),
                "masks": torch.from_numpy(np.stack(masks).astype(np.uint8)) if masks
                else torch.zeros((0, h, w), dtype=torch.uint8)}


class FirstPairs(Dataset):
    """The first ``count`` pairs of a split (Table III fine-tunes on N object pairs)."""

    def __init__(self, pairs: Dataset, count: int):
        if not 0 < count <= len(pairs):
            raise MaskoptError(f"asked for the first {count} pairs of a split of {len(pairs)}")
        self.pairs, self.count, self.taxonomy = pairs, count, pairs.taxonomy

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key):
        return self.pairs[key]


def _copy(item: dict) -> dict:
    """A copy of a dataset item whose tensors the caller may change."""
    return {k: (v.clone() if isinstance(v, torch.Tensor) else _copy(v) if isinstance(v, dict)
                else v) for k, v in item.items()}


def collate(items: list[dict]) -> dict:
    """Stack tensors; keep instance targets and names as lists."""
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch


def batches(dataset: Dataset, size: int, limit: int | None = None):
    """The first ``limit`` (default: all) items in order, collated ``size`` at a time."""
    total = len(dataset) if limit is None else min(limit, len(dataset))
    for start in range(0, total, size):
        yield collate([dataset[i] for i in range(start, min(start + size, total))])
