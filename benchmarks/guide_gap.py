"""What the image inpainter's pretraining on ground-truth guides costs (issue 44, item 3).

The image inpainter is pretrained with the guides of I_G: Canny edges of I_G and its
one-hot labels. Table I, the joint model and `remove` give it the edge and
segmentation inpainters' predictions instead (EdgeConnect's third stage, which
fine-tunes the image inpainter on such predictions, is not in the pipeline). On the
test pairs, with the same hole (M_G) and the same pretrained networks, this prints the
image inpainter's PSNR with each pair of guides and their paired difference (mean,
wins, bootstrap 95 %), pooled and per mask-ratio bucket. Needs the pipeline's models
(`dvc repro`).

    .venv/bin/python benchmarks/guide_gap.py
"""

from __future__ import annotations

import numpy as np
import torch

from maskopt.core.imaging import one_hot
from maskopt.data.pairs import PairDataset, batches
from maskopt.evaluation.image_metrics import psnr
from maskopt.evaluation.statistics import paired_comparison
from maskopt.models.build import INPAINTERS
from maskopt.models.inference import Networks, inpaint
from maskopt.models.inpainter import composite
from maskopt.pipeline.layout import JOINT_FILE, PAIRS, SEGMENTER_FILE, inpainter_file


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(1)  # as the evaluate stage
    canny_sigma = Networks.load(JOINT_FILE).canny_sigma
    nets = Networks.load_pretrained(SEGMENTER_FILE, {k: inpainter_file(k) for k in INPAINTERS},
                                    canny_sigma, torch.device("cpu"), "pretrain_inpainter")
    test = PairDataset(PAIRS / "test", canny_sigma)
    classes = test.taxonomy.num_classes
    given = {"ground-truth guides (pretraining)": [], "predicted guides (Table I)": []}
    buckets: list[str] = []
    for batch in batches(test, 8):
        image, hole, target = batch["image"], batch["mask"], batch["target"]
        truth = nets.image(image, batch["target_edges"],
                           one_hot(batch["target_semantic"], classes), hole)
        soft = torch.softmax(nets.segmenter.predict(image).semantic_logits.float(), 1)
        for name, filled in zip(given, (composite(truth, image, hole),
                                        inpaint(nets, image, hole, soft)), strict=True):
            given[name] += psnr(filled.clamp(0, 1), target).tolist()
        buckets += list(batch["bucket"])
    for name, values in given.items():
        print(f"{name}: PSNR {np.mean(values):.2f} dB over {len(values)} test pairs")
    truth, predicted = given.values()
    print("ground-truth − predicted guides, PSNR dB (mean [95 %], wins):")
    for bucket in ["all", *sorted(set(buckets))]:
        chosen = [i for i, b in enumerate(buckets) if bucket in ("all", b)]
        c = paired_comparison([truth[i] for i in chosen], [predicted[i] for i in chosen])
        print(f"  {bucket}: {c['mean_difference']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}], "
              f"wins {c['wins']}/{c['images']}")


if __name__ == "__main__":
    main()
