"""COCO 2017 with panoptic annotations, fetched from the official URLs.

Full download: the train/val image archives and the panoptic annotation archive
(whose per-split PNG archives are nested inside it). With ``max_images`` only the
annotation archive is fetched in full; the first N images of each split are then
fetched from COCO's per-image URLs (a few at a time, retried on transient errors)
and the split's JSON is cut down to them, which gives a real COCO run in minutes.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from maskopt.data.download import download_file, download_many, safe_extract
from maskopt.data.panoptic import split_paths
from maskopt.errors import MaskoptError

SPLITS = ("train", "val")
# Published MD5 sums of the official archives.
ARCHIVES = {
    "train2017.zip": ("zips/train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2"),
    "val2017.zip": ("zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80"),
    "panoptic_annotations_trainval2017.zip": (
        "annotations/panoptic_annotations_trainval2017.zip",
        "4170db65fc022c9c296af880dbca6055",
    ),
}


def download_coco(root: str | Path, base_url: str, max_images: int | None = None,
                  checksums: dict[str, str | None] | None = None,
                  retry_backoff: float = 1.0) -> dict[str, int]:
    """Fetch COCO 2017 + panoptic annotations under ``root``; return images per split.

    ``checksums`` overrides the published MD5s (a mirror, or the tests' archives); a
    None there skips the check for that archive, with a warning.
    """
    root = Path(root)
    downloads = root / "downloads"
    unknown = sorted(set(checksums or {}) - set(ARCHIVES))
    if unknown:
        raise MaskoptError(f"data.coco_checksums: unknown archive(s) {', '.join(unknown)} "
                           f"(known: {', '.join(ARCHIVES)})")
    sums = {name: md5 for name, (_, md5) in ARCHIVES.items()} | (checksums or {})
    for name in sorted(k for k, v in sums.items() if v is None):
        warnings.warn(f"{name}: checksum verification is off (data.coco_checksums)",
                      stacklevel=2)

    def fetch(name: str) -> Path:
        path, _ = ARCHIVES[name]
        return download_file(f"{base_url.rstrip('/')}/{path}", downloads / name, md5=sums[name])

    safe_extract(fetch("panoptic_annotations_trainval2017.zip"), root)
    for split in SPLITS:
        safe_extract(root / "annotations" / f"panoptic_{split}2017.zip", root / "annotations")

    counts, jobs, subsets = {}, [], {}
    for split in SPLITS:
        image_dir, json_path, _ = split_paths(root, split)
        if max_images is None:
            safe_extract(fetch(f"{split}2017.zip"), root)
            _restore_full_list(json_path)
        else:
            subsets[split] = _subset_list(json_path, max_images)
            jobs += [(f"{base_url.rstrip('/')}/{split}2017/{image['file_name']}",
                      image_dir / image["file_name"]) for image in subsets[split]["images"]]
    if jobs:  # subset mode: every image of both splits, a few at a time, one bar
        download_many(jobs, desc="COCO images", backoff=retry_backoff)
    for split in SPLITS:
        _, json_path, _ = split_paths(root, split)
        if split in subsets:
            tmp = json_path.with_name(json_path.name + ".part")
            tmp.write_text(json.dumps(subsets[split]))
            os.replace(tmp, json_path)
        counts[split] = len(json.loads(json_path.read_text())["images"])
    return counts


def _full_list(json_path: Path) -> Path:
    """Where a subset run keeps the split's uncut annotation JSON."""
    return json_path.with_name(json_path.stem + ".full.json")


def _restore_full_list(json_path: Path) -> None:
    """A full run after a subset run: put the uncut list back, so the stage's output is
    the whole split and never the earlier subset's."""
    full_json = _full_list(json_path)
    if full_json.exists():
        os.replace(full_json, json_path)


def _subset_list(json_path: Path, limit: int) -> dict:
    """The split's annotation JSON cut to its first ``limit`` images (by id); the uncut
    list is kept beside it, so another limit, or none, starts from the whole split."""
    full_json = _full_list(json_path)
    if not full_json.exists():
        os.replace(json_path, full_json)
    data = json.loads(full_json.read_text())
    if not data.get("images"):
        raise MaskoptError(f"{full_json}: no images listed")
    images = sorted(data["images"], key=lambda im: im["id"])[:limit]
    keep = {im["id"] for im in images}
    return dict(data, images=images,
                annotations=[a for a in data["annotations"] if a["image_id"] in keep])
