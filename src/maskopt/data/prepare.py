"""The `download` and `synthesize` stages as library calls."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tqdm import tqdm

from maskopt.data.coco import download_coco
from maskopt.data.panoptic import PanopticDataset
from maskopt.data.sample_scenes import write_sample_dataset
from maskopt.data.synthesize import SynthesisConfig, synthesize_split
from maskopt.io import atomic_path, write_json
from maskopt.params import Params

SOURCE_FILE = "SOURCE.json"
# raw split -> pair split: the test pairs are made from COCO val2017, as in the paper
PAIR_SPLITS = {"train": "train", "val": "test"}


def prepare_raw_data(params: Params, root: str | Path | None = None) -> dict:
    """Fill ``data.root`` with a COCO-panoptic dataset: the offline sample or COCO 2017."""
    root = Path(root or params.data.root)
    if params.data.source == "sample":
        sample = params.sample
        counts = {"train": sample.train_images, "val": sample.test_images}
        with atomic_path(root) as staging, tqdm(total=sum(counts.values()),
                                                desc="sample scenes", unit="img") as bar:
            write_sample_dataset(staging, params.seed, counts, sample.width, sample.height, bar)
            write_json(staging / SOURCE_FILE, {"source": "sample", "images": counts})
        return counts
    marker = root / SOURCE_FILE
    if marker.exists() and json.loads(marker.read_text()).get("source") != "coco":
        shutil.rmtree(root)  # switching from the sample: do not mix the two
    counts = download_coco(root, params.data.coco_base_url, params.data.max_images,
                           params.data.coco_checksums)
    write_json(marker, {"source": "coco", "images": counts,
                        "max_images": params.data.max_images})
    return counts


def synthesize_pairs(params: Params, raw_root: str | Path | None = None,
                     out_root: str | Path = "data/pairs") -> dict:
    """Make the train and test pairs; return per-split statistics (reports/data.json)."""
    raw_root = Path(raw_root or params.data.root)
    s = params.synthesize
    config = SynthesisConfig(image_size=s.image_size, min_person_area=s.min_person_area,
                             max_truncation=s.max_truncation, blur_sigma=s.blur_sigma,
                             min_mask_ratio=s.min_mask_ratio, max_mask_ratio=s.max_mask_ratio)
    wanted = {"train": s.train_pairs, "test": s.test_pairs}
    report = {}
    for raw_split, split in PAIR_SPLITS.items():
        dataset = PanopticDataset.from_root(raw_root, raw_split)
        report[split] = synthesize_split(dataset, Path(out_root) / split, split=split,
                                         n_pairs=wanted[split], config=config,
                                         seed=params.seed, workers=s.workers)
    return report
