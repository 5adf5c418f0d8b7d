"""Offline sample dataset: procedural scenes written in COCO panoptic format.

A miniature of the real task that needs no download: each scene has several
stuff regions (sky, trees, wall, grass, pavement, sea, sand) with their own
textures, and one to three textured person-like figures in varied poses and
sizes, some cut off by the frame or occluding each other. The files go through
the same reader as COCO, so everything downstream runs unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from maskopt.data.panoptic import id_to_rgb, split_paths

PERSON_ID = 1
# Sample-specific ids; names follow COCO panoptic's stuff classes.
STUFF = {"sky": 101, "tree": 102, "wall": 103, "grass": 104, "pavement": 105, "sea": 106,
         "sand": 107, "floor": 108}
CATEGORIES = [{"id": PERSON_ID, "name": "person", "supercategory": "person", "isthing": 1}] + [
    {"id": cid, "name": name, "supercategory": "stuff", "isthing": 0} for name, cid in STUFF.items()
]

_BASE_COLOURS = {
    "sky": (135, 180, 230), "tree": (40, 100, 40), "wall": (190, 170, 150),
    "grass": (80, 150, 60), "pavement": (120, 120, 125), "sea": (30, 80, 150),
    "sand": (210, 190, 140), "floor": (150, 110, 80),
}


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in [-1, 1]: random values on a coarse grid, upsampled smoothly."""
    coarse = rng.uniform(-1, 1, size=(cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _texture(rng: np.random.Generator, name: str, h: int, w: int) -> np.ndarray:
    base = np.array(_BASE_COLOURS[name], np.float32) + rng.uniform(-25, 25, 3)
    shade = 30 * _smooth_noise(rng, h, w, 4) + 12 * _smooth_noise(rng, h, w, 16)
    grain = rng.normal(0, 6, size=(h, w)).astype(np.float32)
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    if name == "sky":
        shade = shade * 0.5 + 40 * (rows / h - 0.5)
        grain *= 0.3
    elif name == "wall":  # brick courses
        shade += 18 * ((rows // 6) % 2) * np.sign(np.sin(cols / 5 + rows // 6))
    elif name == "sea":
        shade += 15 * np.sin(rows * 1.3 + 3 * _smooth_noise(rng, h, w, 6))
    elif name == "pavement":
        shade += 20 * ((rows % 10 < 1) | (cols % 14 < 1))
    image = base[None, None, :] + (shade + grain)[..., None]
    return image.clip(0, 255)


def _background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Stuff layout as a label image of category ids, and its RGB."""
    labels = np.zeros((h, w), np.int32)
    cols = np.arange(w)
    horizon = int(h * rng.uniform(0.3, 0.6))
    wave = (horizon + 4 * _smooth_noise(rng, 1, w, 3)[0]).astype(int)
    rows = np.arange(h)[:, None]
    if rng.random() < 0.3:  # indoor: wall over floor
        upper, lower = "wall", "floor"
        layers = []
    else:
        upper = "sky"
        lower = str(rng.choice(["grass", "pavement", "sand"]))
        layers = ["sea"] if lower == "sand" and rng.random() < 0.7 else []
        if rng.random() < 0.5:
            layers.append("tree")
    labels[:] = STUFF[upper]
    labels[rows >= wave[None, :]] = STUFF[lower]
    if "sea" in layers:  # a band of sea just below the horizon
        band = wave + int(h * rng.uniform(0.08, 0.2))
        labels[(rows >= wave[None, :]) & (rows < band[None, :])] = STUFF["sea"]
    if "tree" in layers:  # tree crowns standing on the horizon
        for _ in range(rng.integers(1, 4)):
            cx, r = rng.integers(0, w), int(h * rng.uniform(0.08, 0.2))
            cy = int(wave[min(cx, w - 1)]) - r // 2
            crown = np.zeros((h, w), np.uint8)
            cv2.ellipse(crown, (int(cx), cy), (r, int(r * 1.3)), 0, 0, 360, 1, -1)
            labels[(crown > 0) & (labels == STUFF[upper])] = STUFF["tree"]
    del cols
    image = np.zeros((h, w, 3), np.float32)
    for name, cid in STUFF.items():
        region = labels == cid
        if region.any():
            image[region] = _texture(rng, name, h, w)[region]
    return image, labels, [name for name, cid in STUFF.items() if (labels == cid).any()]


def _limb(start, length, angle):
    return (int(start[0] + length * np.sin(angle)), int(start[1] + length * np.cos(angle)))


def _draw_person(rng: np.random.Generator, h: int, w: int, height: float, x: float, y: float):
    """A person-like figure: head, torso, two arms, two legs in a random pose.

    Returns its mask and per-pixel colours (skin, shirt with stripes, trousers).
    """
    s = height
    skin, shirt, trousers = (np.array(rng.uniform(lo, hi, 3), np.float32)
                             for lo, hi in ((150, 240), (20, 240), (10, 160)))
    neck = (x, y - 0.78 * s)
    hip = (x + rng.normal(0, 0.03) * s, y - 0.45 * s)
    lean = rng.normal(0, 0.12)
    masks = {part: np.zeros((h, w), np.uint8) for part in ("skin", "shirt", "trousers")}
    thick = max(1, int(0.09 * s))
    cv2.line(masks["shirt"], (int(neck[0]), int(neck[1])), (int(hip[0]), int(hip[1])),
             1, max(2, int(0.2 * s)))
    head = (int(neck[0] + lean * 0.1 * s), int(neck[1] - 0.09 * s))
    cv2.ellipse(masks["skin"], head, (max(1, int(0.065 * s)), max(1, int(0.085 * s))),
                0, 0, 360, 1, -1)
    sitting = rng.random() < 0.2
    for side in (-1, 1):
        shoulder = (neck[0] + side * 0.08 * s, neck[1] + 0.04 * s)
        upper = side * rng.uniform(0.1, 1.6) + np.pi * 0
        elbow = _limb(shoulder, 0.17 * s, upper)
        hand = _limb(elbow, 0.16 * s, upper + side * rng.uniform(-0.3, 1.2))
        cv2.line(masks["shirt"], (int(shoulder[0]), int(shoulder[1])), elbow, 1, thick)
        cv2.line(masks["skin"], elbow, hand, 1, max(1, thick - 1))
        hip_side = (hip[0] + side * 0.05 * s, hip[1])
        thigh = side * rng.uniform(0.0, 0.45) + (side * 1.3 if sitting else 0)
        knee = _limb(hip_side, 0.22 * s, thigh)
        foot = _limb(knee, 0.23 * s, side * rng.uniform(-0.1, 0.3))
        for a, b in ((hip_side, knee), (knee, foot)):
            cv2.line(masks["trousers"], (int(a[0]), int(a[1])), (int(b[0]), int(b[1])),
                     1, thick + 1)
    rows = np.arange(h, dtype=np.float32)[:, None]
    stripes = 25 * np.sign(np.sin(rows / max(1.5, 0.03 * s)))[..., None] * (rng.random() < 0.5)
    colour = np.zeros((h, w, 3), np.float32)
    colour[masks["trousers"] > 0] = trousers
    colour[masks["shirt"] > 0] = (shirt + stripes + np.zeros((h, w, 3), np.float32))[
        masks["shirt"] > 0]
    colour[masks["skin"] > 0] = skin
    colour += rng.normal(0, 5, size=colour.shape).astype(np.float32)
    mask = (masks["skin"] | masks["shirt"] | masks["trousers"]) > 0
    return mask, colour.clip(0, 255)


def make_scene(rng: np.random.Generator, h: int, w: int):
    """One scene: RGB uint8 image, segment id map, segments_info (COCO panoptic)."""
    image, labels, _ = _background(rng, h, w)
    segment_of = np.zeros((h, w), np.int32)
    segments = []
    for cid in np.unique(labels):
        segment_id = len(segments) + 1
        segment_of[labels == cid] = segment_id
        segments.append({"id": segment_id, "category_id": int(cid), "iscrowd": 0})
    for _ in range(rng.integers(1, 4)):
        height = h * rng.uniform(0.3, 1.1)
        foot_x, foot_y = rng.uniform(-0.05, 1.05) * w, rng.uniform(0.55, 1.15) * h
        mask, colour = _draw_person(rng, h, w, height, foot_x, foot_y)
        if mask.sum() < 4:
            continue
        segment_id = len(segments) + 1
        image[mask] = colour[mask]
        segment_of[mask] = segment_id
        segments.append({"id": segment_id, "category_id": PERSON_ID, "iscrowd": 0})
    image = cv2.GaussianBlur(image, (3, 3), 0.5)
    kept = []
    for seg in segments:  # drop segments fully hidden behind later figures
        ys, xs = np.nonzero(segment_of == seg["id"])
        if len(xs):
            seg["area"] = int(len(xs))
            seg["bbox"] = [int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1)]
            kept.append(seg)
    return image.round().astype(np.uint8), segment_of, kept


def write_sample_dataset(root: str | Path, seed: int, counts: dict[str, int],
                         width: int, height: int, progress=None) -> dict[str, int]:
    """Write the sample splits (e.g. {'train': 400, 'val': 100}) under ``root``."""
    written = {}
    for split_index, (split, count) in enumerate(counts.items()):
        image_dir, json_path, png_dir = split_paths(root, split)
        image_dir.mkdir(parents=True, exist_ok=True)
        png_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            rng = np.random.default_rng([seed, split_index, i])
            rgb, ids, segments = make_scene(rng, height, width)
            image_id = i + 1
            name = f"{image_id:012d}"
            Image.fromarray(rgb).save(image_dir / f"{name}.jpg", quality=95)
            Image.fromarray(id_to_rgb(ids)).save(png_dir / f"{name}.png")
            images.append({"id": image_id, "file_name": f"{name}.jpg",
                           "width": width, "height": height})
            annotations.append({"image_id": image_id, "file_name": f"{name}.png",
                                "segments_info": segments})
            if progress is not None:
                progress.update(1)
        json_path.write_text(json.dumps(
            {"info": {"description": "maskopt offline sample (procedural scenes)"},
             "images": images, "annotations": annotations, "categories": CATEGORIES}))
        written[split] = count
    return written
