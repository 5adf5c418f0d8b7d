"""The `download` and `synthesize` stages as library calls."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tqdm import tqdm

from maskopt.core.errors import MaskoptError
from maskopt.core.io import atomic_path, write_json
from maskopt.data.coco import download_coco
from maskopt.data.download import warn
from maskopt.data.panoptic import PanopticDataset, split_paths
from maskopt.data.sample_scenes import write_sample_dataset
from maskopt.data.synthesize import SynthesisConfig, synthesize_split
from maskopt.pipeline.params import Params

SOURCE_FILE = "SOURCE.json"
# where COCO's extracted files wait (inside data.downloads) while the sample is in use
PARKED_COCO = "coco-raw"
# raw split -> pair splits: the test pairs are made from COCO val2017, as in the paper;
# the validation pairs (choosing settings such as the best fixed dilation) from train2017
# images held out of the training pairs
PAIR_SPLITS = {"train": ("train", "validation"), "val": ("test",)}


def prepare_raw_data(params: Params, root: str | Path | None = None,
                     downloads: str | Path | None = None) -> dict:
    """Fill ``data.root`` with a COCO-panoptic dataset: the offline sample or COCO 2017.

    Switching sources never deletes COCO: its extracted files are moved into
    ``data.downloads`` while the sample is in use and moved back when COCO is asked for
    again, so the switch back fetches and extracts nothing.
    """
    root = Path(root or params.data.root)
    downloads = Path(downloads or params.data.downloads)
    parked = downloads / PARKED_COCO
    current = _source_of(root)
    if current is None and root.is_dir() and any(root.iterdir()):
        current = _unrecorded_source(root)
    if params.data.source == "sample":
        if current == "coco":
            _park(root, parked)
        sample = params.sample
        counts = {"train": sample.train_images, "val": sample.test_images}
        with atomic_path(root) as staging, tqdm(total=sum(counts.values()),
                                                desc="sample scenes", unit="img") as bar:
            write_sample_dataset(staging, params.seed, counts, sample.width, sample.height, bar)
            write_json(staging / SOURCE_FILE, {"source": "sample", "images": counts})
        return counts
    if current == "sample":
        shutil.rmtree(root)  # made in seconds from the seed
    if current != "coco" and parked.exists():
        if root.exists():
            raise MaskoptError(f"{root} holds files of no known source and {parked} holds an "
                               f"earlier COCO download; move one of them away and run again")
        os.replace(parked, root)
    root.mkdir(parents=True, exist_ok=True)
    # written first: an interrupted download is still known as COCO's (and parked, not lost)
    write_json(root / SOURCE_FILE, {"source": "coco", "complete": False})
    counts = download_coco(root, downloads, params.data.coco_base_url, params.data.max_images,
                           params.data.coco_checksums)
    write_json(root / SOURCE_FILE, {"source": "coco", "complete": True, "images": counts,
                                    "max_images": params.data.max_images})
    return counts


def _source_of(root: Path) -> str | None:
    try:
        return json.loads((root / SOURCE_FILE).read_text()).get("source")
    except (OSError, ValueError):
        return None


def _unrecorded_source(root: Path) -> str:
    """What a ``data.root`` without SOURCE.json holds (one made by an older maskopt, or
    filled by hand): COCO's layout is taken for COCO, kept and set aside like it; other
    files are refused, never deleted."""
    for split in ("train", "val"):
        image_dir, json_path, png_dir = split_paths(root, split)
        if json_path.is_file() or png_dir.is_dir() or image_dir.is_dir():
            return "coco"
    raise MaskoptError(f"{root} holds files of no known source (no {SOURCE_FILE}, not COCO's "
                       "layout); maskopt replaces that folder, so move them away and run "
                       "again")


def _park(root: Path, parked: Path) -> None:
    if parked.exists():
        raise MaskoptError(f"{parked} already holds a COCO download and {root} holds another; "
                           "move one of them away and run again")
    parked.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(root, parked)  # a rename on one filesystem
    warn(f"COCO's files in {root} moved to {parked} while data.source is sample; "
         "data.source: coco moves them back")


def synthesize_pairs(params: Params, raw_root: str | Path | None = None,
                     out_root: str | Path = "data/pairs") -> dict:
    """Make the train, validation and test pairs; return per-split statistics
    (reports/data.json)."""
    raw_root = Path(raw_root or params.data.root)
    s = params.synthesize
    config = SynthesisConfig(image_size=s.image_size, min_person_area=s.min_person_area,
                             max_truncation=s.max_truncation, blur_sigma=s.blur_sigma,
                             min_mask_ratio=s.min_mask_ratio, max_mask_ratio=s.max_mask_ratio,
                             person_scale=s.person_scale)
    wanted = {"train": s.train_pairs, "validation": s.validation_pairs, "test": s.test_pairs}
    report = {}
    for raw_split, splits in PAIR_SPLITS.items():
        dataset = PanopticDataset.from_root(raw_root, raw_split)
        parts = (dataset.held_out(s.validation_images, params.seed) if len(splits) == 2
                 else (dataset,))
        for split, part in zip(splits, parts, strict=True):
            report[split] = synthesize_split(part, Path(out_root) / split, split=split,
                                             n_pairs=wanted[split], config=config,
                                             seed=params.seed, workers=s.workers,
                                             min_pairs=s.min_pairs)
    return report
