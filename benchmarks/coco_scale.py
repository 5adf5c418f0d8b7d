"""Time and peak memory of the data path at COCO's size, on a generated stand-in.

Writes a panoptic JSON the size of COCO's train2017 (118,287 images, ~11 segments
each, a person in about half; no image files) and a pairs annotations.json of the same
length, then measures, each in a fresh process (peak resident memory above that
process's start, and wall time): reading the panoptic JSON into `PanopticDataset`,
finding the pasteable person segments (synthesis' planning step), and opening the
pairs for training (`PairDataset`); for the last, also how much of it a forked
data-loader worker copies while it reads every pair's record once.

    .venv/bin/python benchmarks/coco_scale.py [--images 118287] [--dir /tmp/coco_scale]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import time
from pathlib import Path

PERSON = 1
STUFF = list(range(92, 201))


def write_standins(folder: Path, images: int) -> None:
    rng = random.Random(0)
    categories = [{"id": PERSON, "name": "person", "isthing": 1, "supercategory": "person"}]
    categories += [{"id": c, "name": f"stuff{c}", "isthing": 0, "supercategory": "x"}
                   for c in STUFF]
    entries, annotations, pairs = [], [], []
    for i in range(1, images + 1):
        entries.append({"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480})
        segments = [{"id": 1000 + k, "category_id": rng.choice(STUFF), "iscrowd": 0,
                     "area": rng.randint(500, 60000), "bbox": [1, 2, 300, 200]}
                    for k in range(rng.randint(4, 14))]
        if rng.random() < 0.45:
            segments.append({"id": 999, "category_id": PERSON, "iscrowd": int(rng.random() < .05),
                             "area": rng.randint(200, 90000), "bbox": [5, 6, 80, 200]})
        annotations.append({"image_id": i, "file_name": f"{i:012d}.png",
                            "segments_info": segments})
        pairs.append({"image_id": i, "file_name": f"{i:07d}.png", "segments_info": segments,
                      "person": {"id": 5000, "category_id": PERSON, "iscrowd": 0, "area": 3000,
                                 "bbox": [1.0, 2.0, 40.0, 90.0],
                                 "segmentation": {"size": [256, 256],
                                                  "counts": "x" * rng.randint(80, 400)}},
                            "mask_ratio": 0.1, "bucket": "10-20", "background_image_id": i,
                            "source_image_id": i, "source_segment_id": 999})
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    (folder / "annotations/panoptic_train2017.json").write_text(json.dumps(
        {"images": entries, "annotations": annotations, "categories": categories}))
    pair_categories = [dict(c, index=k + 1) for k, c in enumerate(categories)]
    (folder / "pairs").mkdir(exist_ok=True)
    (folder / "pairs/annotations.json").write_text(json.dumps(
        {"images": entries, "annotations": pairs, "categories": pair_categories}))


def _resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _private_kib() -> int:
    """Memory this process does not share with its parent (copy-on-write copies)."""
    text = Path("/proc/self/smaps_rollup").read_text()
    return sum(int(line.split()[1]) for line in text.splitlines()
               if line.startswith(("Private_Dirty:", "Private_Clean:")))


def _walk_epoch(dataset, queue) -> None:
    """In a forked worker: read every pair's record, as one epoch of loading does."""
    before = _private_kib()
    for i in range(len(dataset.pairs)):
        dataset.pairs[i]
    queue.put((_private_kib() - before) / 1024)


def _worker_copy_mib(dataset) -> float:
    context = multiprocessing.get_context("fork")  # what DataLoader workers use on Linux
    queue = context.Queue()
    worker = context.Process(target=_walk_epoch, args=(dataset, queue))
    worker.start()
    copied = queue.get()
    worker.join()
    return copied


def _measure(task: str, folder: str, queue) -> None:
    from maskopt.data.pairs import PairDataset
    from maskopt.data.panoptic import PanopticDataset
    from maskopt.data.synthesize import find_person_segments

    root = Path(folder)
    start_rss = _resident_kib("VmRSS:")  # after the imports: only the data counts
    started = time.perf_counter()
    worker_copy = None
    if task == "open pairs for training":
        dataset = PairDataset(root / "pairs")
        seconds = time.perf_counter() - started
        worker_copy = _worker_copy_mib(dataset)
    else:
        dataset = PanopticDataset(root / "images", root / "annotations/panoptic_train2017.json",
                                  root / "png")
        if task == "find person segments":
            find_person_segments(dataset, 0.005)
        seconds = time.perf_counter() - started
    peak = (_resident_kib("VmHWM:") - start_rss) / 1024
    held = (_resident_kib("VmRSS:") - start_rss) / 1024
    queue.put((seconds, peak, held, worker_copy))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118_287)
    parser.add_argument("--dir", default="/tmp/coco_scale")
    args = parser.parse_args()
    folder = Path(args.dir)
    started = time.perf_counter()
    write_standins(folder, args.images)
    size = (folder / "annotations/panoptic_train2017.json").stat().st_size / 2**20
    pairs = (folder / "pairs/annotations.json").stat().st_size / 2**20
    print(f"{args.images} images: panoptic JSON {size:.0f} MiB, pairs JSON {pairs:.0f} MiB "
          f"(written in {time.perf_counter() - started:.0f} s)")
    context = multiprocessing.get_context("spawn")
    for task in ("read panoptic JSON", "find person segments", "open pairs for training"):
        queue = context.Queue()
        process = context.Process(target=_measure, args=(task, str(folder), queue))
        process.start()
        seconds, peak, held, worker_copy = queue.get()
        process.join()
        line = (f"  {task:<26} {seconds:6.1f} s   peak +{peak:6.0f} MiB   "
                f"held after +{held:6.0f} MiB")
        if worker_copy is not None:
            line += f"   each forked worker copies {worker_copy:.0f} MiB over an epoch"
        print(line)


if __name__ == "__main__":
    main()
