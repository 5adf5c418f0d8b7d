"""COCO 2017 with panoptic annotations, fetched from the official URLs.

Full download: the train/val image archives and the panoptic annotation archive
(whose per-split PNG archives are nested inside it). With ``max_images`` only the
annotation archive is fetched in full; the first N images of each split are then
fetched from COCO's per-image URLs (a few at a time, retried on transient errors)
and the split's JSON is cut down to them, which gives a real COCO run in minutes.

Two folders: ``downloads`` keeps the archives and the unpacked annotation archive
(never a pipeline output, so DVC never hashes them and switching to the sample never
touches them); ``root`` receives only what the pipeline reads: images, PNG maps and
each split's JSON (whole, or cut to ``max_images``).
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from maskopt.core.errors import MaskoptError
from maskopt.data.download import (
    download_many,
    download_with_retries,
    safe_extract,
    warn,
    write_error,
)
from maskopt.data.panoptic import split_paths

SPLITS = ("train", "val")
ANNOTATIONS = "panoptic_annotations_trainval2017.zip"
# Published MD5 sums of the official archives.
ARCHIVES = {
    "train2017.zip": ("zips/train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2"),
    "val2017.zip": ("zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80"),
    ANNOTATIONS: ("annotations/panoptic_annotations_trainval2017.zip",
                  "4170db65fc022c9c296af880dbca6055"),
}


def expected_md5s(checksums: Mapping[str, str | None] | None) -> dict[str, tuple[str | None, str]]:
    """Archive name -> (MD5 or None to skip the check, where that MD5 comes from).

    ``checksums`` (``data.coco_checksums``) overrides the published MD5s for a mirror;
    None for an archive, or for the whole setting, turns its check off (with a warning).
    """
    if checksums is None:
        checksums = dict.fromkeys(ARCHIVES)
    unknown = sorted(set(checksums) - set(ARCHIVES))
    if unknown:
        raise MaskoptError(f"data.coco_checksums: unknown archive(s) {', '.join(unknown)} "
                           f"(known: {', '.join(ARCHIVES)})")
    sums = {}
    for name, (_, published) in ARCHIVES.items():
        if name in checksums:
            sums[name] = (checksums[name], f"data.coco_checksums['{name}']")
        else:
            sums[name] = (published, f"the published MD5 of {name}")
        if sums[name][0] is None:
            warn(f"{name}: checksum verification is off (data.coco_checksums)")
    return sums


def download_coco(root: str | Path, downloads: str | Path, base_url: str,
                  max_images: int | None = None,
                  checksums: Mapping[str, str | None] | None = MappingProxyType({}),
                  retry_backoff: float = 1.0) -> dict[str, int]:
    """Fetch COCO 2017 + panoptic annotations into ``root``; return images per split.

    ``checksums``: ``data.coco_checksums`` (the published MD5s where it is empty)."""
    root, downloads = Path(root), Path(downloads)
    sums = expected_md5s(checksums)
    base_url = base_url.rstrip("/")

    def fetch(name: str) -> Path:
        md5, source = sums[name]
        return download_with_retries(f"{base_url}/{ARCHIVES[name][0]}", downloads / name,
                                     backoff=retry_backoff, md5=md5, md5_source=source)

    unpacked = downloads / Path(ANNOTATIONS).stem
    safe_extract(fetch(ANNOTATIONS), unpacked)
    listings, jobs = {}, []
    for split in SPLITS:
        image_dir, _, _ = split_paths(root, split)
        _, full_json, png_dir = split_paths(unpacked, split)
        safe_extract(png_dir.with_suffix(".zip"), root / "annotations")
        if max_images is None:
            safe_extract(fetch(f"{split}2017.zip"), root)
            listings[split] = full_json
        else:
            listings[split] = _subset_list(full_json, max_images)
            jobs += [(f"{base_url}/{split}2017/{image['file_name']}",
                      image_dir / image["file_name"]) for image in listings[split]["images"]]
    if jobs:  # subset mode: every image of both splits, a few at a time, one bar
        download_many(jobs, desc="COCO images", backoff=retry_backoff)
    counts = {}
    for split, listing in listings.items():
        _, json_path, _ = split_paths(root, split)
        counts[split] = _write_listing(listing, json_path)
    return counts


def _subset_list(full_json: Path, limit: int) -> dict:
    """The split's annotation JSON cut to its first ``limit`` images (by id)."""
    data = json.loads(full_json.read_text())
    if not data.get("images"):
        raise MaskoptError(f"{full_json}: no images listed")
    images = sorted(data["images"], key=lambda im: im["id"])[:limit]
    keep = {im["id"] for im in images}
    return dict(data, images=images,
                annotations=[a for a in data["annotations"] if a["image_id"] in keep])


def _write_listing(listing: Path | dict, json_path: Path) -> int:
    """Put the split's JSON in place (a copy of the whole list, or a subset); return
    its number of images. An identical file is left alone (DVC need not hash it again)."""
    if isinstance(listing, Path):
        images = len(json.loads(listing.read_text())["images"])
        if json_path.is_file() and filecmp.cmp(listing, json_path, shallow=False):
            return images
    else:
        images = len(listing["images"])
    tmp = json_path.with_name(json_path.name + ".part")
    try:
        if isinstance(listing, Path):
            shutil.copyfile(listing, tmp)
        else:
            tmp.write_text(json.dumps(listing))
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(tmp, exc, "free some space and run again") from None
    os.replace(tmp, json_path)
    return images
