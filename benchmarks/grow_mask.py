"""The extra margin (`--grow`, the page's slider) on a large photo: a disc-shaped
dilation (cv2.dilate with an elliptic kernel, what `remove` used before) against the
distance transform `maskopt.removal.remover.grow_by_distance` uses, for several margins, each
pair timed back to back on the same mask so both see the machine in the same state.

    .venv/bin/python benchmarks/grow_mask.py [--size 4000] [--margins 10 40 150 400]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from maskopt.removal.remover import grow_by_distance


def disc_dilation(mask: np.ndarray, pixels: int) -> np.ndarray:
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), disc) > 0


def timed(work):
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=4000, help="photo side, px")
    parser.add_argument("--margins", type=int, nargs="+", default=[10, 40, 150, 400])
    args = parser.parse_args()
    size = args.size
    mask = np.zeros((size, size), bool)  # a person-sized upright blob in the middle
    cv2.ellipse(mask.view(np.uint8), (size // 2, size // 2), (size // 10, size // 4), 0, 0,
                360, 1, -1)
    print(f"{size}x{size} photo, mask {mask.mean():.1%} of it; limit {size // 10} px")
    print("margin px | disc dilation s | distance transform s | ratio | pixels differing")
    for pixels in args.margins:
        grow_by_distance(mask, pixels)  # warm-up of the fast one (the slow one is minutes)
        dilated, slow = timed(lambda p=pixels: disc_dilation(mask, p))
        by_distance, fast = timed(lambda p=pixels: grow_by_distance(mask, p))
        differ = int((dilated != by_distance).sum())
        print(f"{pixels:9d} | {slow:15.2f} | {fast:20.2f} | {slow / fast:5.1f} | "
              f"{differ} ({differ / max(dilated.sum(), 1):.2e} of the grown mask)")


if __name__ == "__main__":
    main()
