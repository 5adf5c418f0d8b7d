"""Pairs per second of `synthesize` at 256 px, beside the I/O floor on the same images.

The I/O floor decodes the same background/source images and segment maps and
encodes the same six PNGs per pair, without any of the synthesis work; each pair's
floor is timed right after the pair is made. The sources are the offline sample's
640x480 scenes with their segment ids replaced by random ones in COCO's range (COCO
panoptic ids are RGB codes up to 256^3; the sample's are 1, 2, 3...). Run on an
idle machine.

    .venv/bin/python benchmarks/synthesize.py [--pairs 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from maskopt.data.panoptic import PanopticDataset, id_to_rgb, load_segment_ids, split_paths
from maskopt.data.sample_scenes import write_sample_dataset
from maskopt.data.synthesize import (
    PAIR_FOLDERS,
    PairSynthesizer,
    SynthesisConfig,
    _init_worker,
    _make_and_write,
    find_person_segments,
    synthesize_split,
)


def with_coco_range_ids(root: Path, split: str, seed: int = 0) -> None:
    """Give every segment of a written sample split a random id in [1, 256^3), in its
    segment map and its annotation, as COCO's ids are."""
    rng = np.random.default_rng(seed)
    _, json_path, png_dir = split_paths(root, split)
    data = json.loads(json_path.read_text())
    for annotation in data["annotations"]:
        segments = annotation["segments_info"]
        new_ids = rng.choice(256 ** 3 - 1, size=len(segments), replace=False) + 1
        path = png_dir / annotation["file_name"]
        ids = load_segment_ids(path)
        lookup = {seg["id"]: int(new_id) for seg, new_id in zip(segments, new_ids, strict=True)}
        remapped = np.zeros_like(ids)
        for old_id, new_id in lookup.items():
            remapped[ids == old_id] = new_id
        Image.fromarray(id_to_rgb(remapped)).save(path)
        for seg in segments:
            seg["id"] = lookup[seg["id"]]
    json_path.write_text(json.dumps(data))


def decode_and_encode(dataset: PanopticDataset, record_ids: tuple[int, int],
                      arrays: list[np.ndarray], out: Path) -> float:
    """Seconds to decode two images with their segment maps and encode ``arrays`` as PNGs
    (the I/O a pair cannot do without)."""
    start = time.perf_counter()
    for index in record_ids:
        dataset.load(index)
    for k, array in enumerate(arrays):
        Image.fromarray(array).save(out / f"{k}.png", compress_level=1)
    return time.perf_counter() - start


def paired_run(dataset: PanopticDataset, config: SynthesisConfig, tmp: Path) -> tuple:
    """Each pair made and written by the stage's own per-pair function, then its I/O floor
    timed right after, so both see the machine in the same state (on this VM its speed
    swings by 1.5x within seconds, which made two separate runs' ratio useless)."""
    persons, _ = find_person_segments(dataset, config.min_person_area)
    synthesizer = PairSynthesizer(dataset, persons, config, seed=0, split_code=0,
                                  test_buckets=False, one_per_background=True)
    out, floor_out = tmp / "paired", tmp / "paired_floor"
    for folder in PAIR_FOLDERS:
        (out / folder).mkdir(parents=True)
    floor_out.mkdir()
    by_id = {r.image_id: i for i, r in enumerate(dataset.records)}
    _init_worker(synthesizer, out)  # what synthesize_split does with one worker
    synth_times, floor_times = [], []
    for k in range(len(dataset)):
        start = time.perf_counter()
        result = _make_and_write(k)
        elapsed = time.perf_counter() - start
        if "pair" not in result:
            continue
        pair = result["pair"]
        arrays = [np.asarray(Image.open(out / folder / f"{pair['name']}.png"))
                  for folder in PAIR_FOLDERS]
        sources = (by_id[pair["background_image_id"]], by_id[pair["source_image_id"]])
        synth_times.append(elapsed)
        floor_times.append(decode_and_encode(dataset, sources, arrays, floor_out))
    return np.array(synth_times), np.array(floor_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    config = SynthesisConfig(image_size=args.size, min_person_area=0.005, max_truncation=0.15,
                             blur_sigma=1.5, min_mask_ratio=0.02, max_mask_ratio=0.4)
    # in memory where the OS offers it: disk write latency is not what is measured
    memory = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=memory if memory.is_dir() else None) as tmp:
        tmp = Path(tmp)
        # COCO-like source images: 640x480 scenes
        write_sample_dataset(tmp / "raw", 0, {"train": args.pairs}, 640, 480)
        with_coco_range_ids(tmp / "raw", "train")
        dataset = PanopticDataset.from_root(tmp / "raw", "train")
        start = time.perf_counter()
        stats = synthesize_split(dataset, tmp / "pairs", split="train", n_pairs=None,
                                 config=config, seed=0, workers=1)
        whole = time.perf_counter() - start
        synth, floor = paired_run(dataset, config, tmp)
    n = stats["pairs"]
    print(f"pairs: {n} at {args.size} px from 640x480 sources with COCO-range segment ids, "
          f"one process, in {tmp.parent}")
    print(f"synthesize stage: {whole:.2f} s -> {n / whole:.1f} pairs/s")
    print(f"paired: making and writing {synth.sum():.2f} s, I/O floor (decode 2 images + "
          f"2 maps, encode 6 PNGs) {floor.sum():.2f} s")
    print(f"ratio synthesize / I/O floor: {synth.sum() / floor.sum():.2f}x "
          f"(median pair {np.median(synth / floor):.2f}x)")


if __name__ == "__main__":
    main()
