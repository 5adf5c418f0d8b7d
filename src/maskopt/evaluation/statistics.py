"""Paired comparisons of two rows on the same test images: wins and a bootstrap interval.

A difference of means alone cannot say whether 0.3 dB is real on 100 images; the
per-image differences can. The interval is the percentile bootstrap of the mean
paired difference (images resampled with replacement, a fixed seed so reports are
reproducible). A claim "A beats B" holds when the whole interval is above 0.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 10_000


def paired_comparison(a: list[float], b: list[float], resamples: int = RESAMPLES,
                      seed: int = 0) -> dict[str, float]:
    """Mean of a − b, the images where a > b, and a 95 % bootstrap interval of the mean."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired rows need the same non-zero length, got {a.shape} and {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean_difference": float(diff.mean()), "wins": int((diff > 0).sum()),
            "images": len(diff), "low": float(low), "high": float(high),
            "holds": bool(low > 0)}
