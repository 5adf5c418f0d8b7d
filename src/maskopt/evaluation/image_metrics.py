"""PSNR, SSIM, LPIPS and FID per mask-ratio bucket, with torchmetrics.

PSNR and SSIM are computed per image (data range 1) and averaged per bucket; PSNR of
identical images is capped at 100 dB so JSON stays finite. LPIPS (AlexNet) and FID
(InceptionV3) need pretrained networks that torchmetrics downloads; when they cannot
be had, the metric is reported as unavailable with the reason, never as a number.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

PSNR_CAP = 100.0
ALL = "all"


def psnr(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, capped at PSNR_CAP."""
    values = peak_signal_noise_ratio(preds, target, data_range=1.0, reduction="none",
                                     dim=(1, 2, 3))
    return values.clamp(max=PSNR_CAP)


def ssim(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, σ 1.5)."""
    return structural_similarity_index_measure(preds, target, data_range=1.0, reduction="none")


def default_lpips() -> torch.nn.Module:
    from torchmetrics.image import LearnedPerceptualImagePatchSimilarity

    return LearnedPerceptualImagePatchSimilarity(net_type="alex", reduction="none",
                                                 normalize=True)


def default_fid_features() -> torch.nn.Module:
    from torchmetrics.image.fid import NoTrainInceptionV3

    return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"pretrained weights could not be loaded ({type(exc).__name__}: {text})"[:300]


class BucketMetrics:
    """Accumulates image metrics per bucket and overall for one row of the table.

    ``lpips_factory`` and ``fid_features`` build the pretrained networks (injectable
    for tests); they are built once and shared by every row through ``shared``.
    """

    def __init__(self, shared: SharedNetworks):
        self.shared = shared
        self.values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.fids: dict[str, object] = {}

    def update(self, preds: torch.Tensor, target: torch.Tensor, buckets: list[str]) -> None:
        preds, target = preds.clamp(0, 1).float(), target.float()
        per_image = {"psnr": psnr(preds, target), "ssim": ssim(preds, target)}
        if self.shared.lpips is not None:
            per_image["lpips"] = self.shared.lpips(preds, target).reshape(-1)
        for name, values in per_image.items():
            for value, bucket in zip(values.tolist(), buckets, strict=True):
                self.values[bucket][name].append(value)
                self.values[ALL][name].append(value)
        if self.shared.fid_features is not None:
            fake, real = (preds * 255).round().byte(), (target * 255).round().byte()
            for group in {ALL, *buckets}:
                chosen = [i for i, b in enumerate(buckets) if group in (ALL, b)]
                fid = self.fids.get(group) or self.fids.setdefault(group, self.shared.new_fid())
                fid.update(real[chosen], real=True)
                fid.update(fake[chosen], real=False)

    def result(self) -> dict[str, dict[str, float | None]]:
        """{bucket: {metric: mean}} with FID where at least 2 images fell in the bucket."""
        out = {}
        for bucket, metrics in self.values.items():
            out[bucket] = {k: sum(v) / len(v) for k, v in metrics.items()}
            fid = self.fids.get(bucket)
            if fid is not None and len(metrics["psnr"]) >= 2:
                out[bucket]["fid"] = float(fid.compute())
            out[bucket]["count"] = len(metrics["psnr"])
        return out


class SharedNetworks:
    """The pretrained LPIPS and FID networks, or the reasons they are unavailable."""

    def __init__(self, device: torch.device | str = "cpu",
                 lpips_factory: Callable[[], torch.nn.Module] = default_lpips,
                 fid_features: Callable[[], torch.nn.Module] = default_fid_features):
        self.unavailable: dict[str, str] = {}
        self.lpips = self._try("lpips", lpips_factory, device)
        self.fid_features = self._try("fid", fid_features, device)

    def _try(self, name: str, factory, device):
        try:
            return factory().to(device).eval()
        except Exception as exc:  # noqa: BLE001 - offline, missing package, broken cache
            self.unavailable[name] = _reason(exc)
            return None

    def new_fid(self):
        from torchmetrics.image.fid import FrechetInceptionDistance

        fid = FrechetInceptionDistance(feature=self.fid_features, reset_real_features=True)
        return fid.to(next(self.fid_features.parameters(), torch.empty(0)).device)
