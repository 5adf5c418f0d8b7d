"""Reader for datasets in COCO panoptic format.

Layout (COCO 2017 after extraction, and the offline sample):

    {root}/{split}2017/<file_name>                       RGB images
    {root}/annotations/panoptic_{split}2017.json          images, annotations, categories
    {root}/annotations/panoptic_{split}2017/<png_name>    segment id maps, id = R + 256 G + 256² B
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskopt.core.errors import MaskoptError
from maskopt.core.io import read_json, read_rgb

PERSON = "person"


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids (int32) of an HxWx3 uint8 map: id = R + 256 G + 256² B."""
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of ``rgb_to_id``: ids in [0, 256³) as uint8 R, G, B."""
    if ids.size and (ids.min() < 0 or ids.max() >= 256 ** 3):
        raise MaskoptError(f"segment ids must lie in [0, 256³), got {ids.min()}..{ids.max()}")
    # the low three bytes of a little-endian uint32 are R, G, B
    as_bytes = ids.astype("<u4")[..., None].view(np.uint8)
    return np.ascontiguousarray(as_bytes[..., :3])


@dataclass(frozen=True)
class PanopticRecord:
    """One annotated image: where its files are and its segments."""

    image_id: int
    image_path: Path
    panoptic_path: Path
    segments: tuple[dict, ...]
    width: int
    height: int


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # HxWx3 uint8
    ids: np.ndarray  # HxW int32 segment ids
    record: PanopticRecord
    mode: str  # the image's stored mode (converted to RGB if it was not)


def split_paths(root: str | Path, split: str) -> tuple[Path, Path, Path]:
    """Image folder, annotation JSON and PNG folder of a split ('train' or 'val')."""
    root = Path(root)
    return (
        root / f"{split}2017",
        root / "annotations" / f"panoptic_{split}2017.json",
        root / "annotations" / f"panoptic_{split}2017",
    )


class PanopticDataset:
    """Images, segment maps and categories of one split of a COCO-panoptic dataset."""

    def __init__(self, image_dir: str | Path, json_path: str | Path, panoptic_dir: str | Path):
        self.json_path = Path(json_path)
        data = read_json(self.json_path)
        for key in ("images", "annotations", "categories"):
            if not isinstance(data, dict) or key not in data:
                raise MaskoptError(f"{self.json_path}: not COCO panoptic, '{key}' is missing")
        self.categories = {int(c["id"]): c for c in data["categories"]}
        images = {int(im["id"]): im for im in data["images"]}
        records = []
        for ann in data["annotations"]:
            try:
                image = images[int(ann["image_id"])]
                records.append(
                    PanopticRecord(
                        image_id=int(ann["image_id"]),
                        image_path=Path(image_dir) / image["file_name"],
                        panoptic_path=Path(panoptic_dir) / ann["file_name"],
                        segments=tuple(ann["segments_info"]),
                        width=int(image["width"]),
                        height=int(image["height"]),
                    )
                )
            except (KeyError, TypeError) as exc:
                raise MaskoptError(
                    f"{self.json_path}: broken annotation for image {ann.get('image_id')!r} "
                    f"(missing {exc})"
                ) from exc
        self.records = sorted(records, key=lambda r: r.image_id)

    @classmethod
    def from_root(cls, root: str | Path, split: str) -> PanopticDataset:
        return cls(*split_paths(root, split))

    def __len__(self) -> int:
        return len(self.records)

    def held_out(self, count: int, seed: int) -> tuple[PanopticDataset, PanopticDataset]:
        """(the rest, ``count`` images drawn by ``seed``): two datasets without a shared
        image, e.g. the training pairs' images and a validation split's."""
        if not 0 <= count < len(self):
            raise MaskoptError(f"{self.json_path}: cannot hold out {count} of its "
                               f"{len(self)} images")
        drawn = set(np.random.default_rng([seed, count]).permutation(len(self))[:count].tolist())
        return (self._with_records([r for i, r in enumerate(self.records) if i not in drawn]),
                self._with_records([r for i, r in enumerate(self.records) if i in drawn]))

    def _with_records(self, records: list[PanopticRecord]) -> PanopticDataset:
        part = copy.copy(self)
        part.records = records
        return part

    def category_id(self, name: str) -> int:
        for cid, cat in self.categories.items():
            if cat["name"] == name:
                return cid
        raise MaskoptError(f"{self.json_path}: no category named {name!r}")

    def load_ids(self, index: int) -> np.ndarray:
        """Segment id map of one image (cheaper than ``load``: the RGB is not decoded)."""
        return load_segment_ids(self.records[index].panoptic_path)

    def load(self, index: int, ids: np.ndarray | None = None) -> LoadedImage:
        """RGB image, segment id map and record of one image; their sizes must agree.

        ``ids`` from an earlier ``load_ids(index)`` saves decoding the map twice.
        """
        record = self.records[index]
        rgb, mode = read_rgb(record.image_path)
        if ids is None:
            ids = load_segment_ids(record.panoptic_path)
        if ids.shape != rgb.shape[:2]:
            raise MaskoptError(
                f"{record.panoptic_path}: segment map is {ids.shape[1]}x{ids.shape[0]} "
                f"but its image is {rgb.shape[1]}x{rgb.shape[0]}"
            )
        return LoadedImage(rgb, ids, record, mode)


def load_segment_ids(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        with Image.open(path) as png:
            return rgb_to_id(np.asarray(png.convert("RGB")))
    except FileNotFoundError as exc:
        raise MaskoptError(f"{path}: segment map not found") from exc
    except OSError as exc:
        raise MaskoptError(f"{path}: unreadable segment map ({exc})") from exc
