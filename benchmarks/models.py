"""Parameters, forward time and one training step of every network, on this CPU.

For each inpainter (generator + its discriminator): forward of G, and one full step
(G forward, D on real and fake, G loss incl. feature matching, both backwards and
Adam steps). For the segmenter: inference forward and one training step (L_PS).
Run on an idle machine: with 2 cores, any other job makes the figures swing.

    .venv/bin/python benchmarks/models.py [--size 256] [--batch 4] [--width 64] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from maskopt import losses
from maskopt.models import PanopticFPN
from maskopt.models.build import build, build_discriminator
from maskopt.models.inpainter import count_parameters

CLASSES = 134  # COCO panoptic: 133 categories + unlabeled


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def inputs(kind: str, batch: int, size: int) -> tuple:
    mask = torch.zeros(batch, 1, size, size)
    mask[..., size // 4: size // 2, size // 3: 2 * size // 3] = 1
    gray, edges, rgb = (torch.rand(batch, c, size, size) for c in (1, 1, 3))
    seg = torch.softmax(torch.randn(batch, CLASSES, size, size), 1)
    args = {"edge": (gray, edges, mask), "segmentation": (seg, mask),
            "image": (rgb, edges, seg, mask)}[kind]
    real = {"edge": torch.cat([gray, edges], 1), "segmentation": seg, "image": rgb}[kind]
    return args, real, mask


def bench_inpainter(kind: str, args, vgg) -> None:
    g = build({"kind": kind, "num_classes": CLASSES, "width": args.width, "blocks": 8})
    d = build_discriminator(kind, CLASSES, args.width)
    g_opt = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.0, 0.9))
    d_opt = torch.optim.Adam(d.parameters(), 1e-5, betas=(0.0, 0.9))
    net_in, real, mask = inputs(kind, args.batch, args.size)

    def forward():
        with torch.no_grad():
            g(*net_in)

    def step():
        out = g(*net_in)
        fake = torch.cat([net_in[0], out], 1) if kind == "edge" else (
            torch.softmax(out, 1) if kind == "segmentation" else out)
        d_real, real_feats = d(real)
        d_fake, _ = d(fake.detach())
        d_loss = losses.hinge_discriminator_loss(d_real, d_fake)
        g_fake, fake_feats = d(fake)
        g_loss = losses.hinge_generator_loss(g_fake)
        if kind == "image":
            of, tf = vgg(out), vgg(real)
            g_loss = g_loss + losses.perceptual_loss(of, tf) + losses.style_loss(of, tf) \
                + losses.reconstruction_l1_loss(out, real, mask)
        else:
            g_loss = g_loss + losses.feature_matching_loss(fake_feats, real_feats)
        g_opt.zero_grad()
        d_opt.zero_grad()
        d_loss.backward(inputs=list(d.parameters()))
        g_loss.backward(inputs=list(g.parameters()))
        d_opt.step()
        g_opt.step()

    print(f"{kind:>12} inpainter  G {count_parameters(g) / 1e6:6.2f} M  "
          f"D {count_parameters(d) / 1e6:5.2f} M  forward {timed(forward, args.repeat):6.2f} s  "
          f"train step (G+D) {timed(step, args.repeat):6.2f} s")


def bench_segmenter(args) -> None:
    torch.manual_seed(0)
    seg = PanopticFPN(80, CLASSES, depth=args.depth, image_size=args.size)
    images = torch.rand(args.batch, 3, args.size, args.size)
    s = args.size
    masks = torch.zeros(1, s, s, dtype=torch.uint8)
    masks[:, s // 4: s // 2, s // 3: 2 * s // 3] = 1
    box = torch.tensor([[s / 3, s / 4, 2 * s / 3, s / 2]])
    targets = [{"boxes": box, "labels": torch.tensor([1]), "masks": masks,
                "semantic": torch.randint(1, CLASSES, (s, s))} for _ in range(args.batch)]
    opt = torch.optim.AdamW(seg.parameters(), 1e-4)

    def forward():
        with torch.no_grad():
            seg.eval()(images)

    def step():
        seg.train()
        loss = sum(seg(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    print(f"{'segmenter':>12} R{args.depth}-FPN  {count_parameters(seg) / 1e6:6.2f} M  "
          f"forward {timed(forward, args.repeat):6.2f} s  "
          f"train step (L_PS) {timed(step, args.repeat):6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.size} px, batch {args.batch}, width {args.width}, "
          f"{torch.get_num_threads()} threads")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vgg = losses.VGG19Features("random")
    for kind in ("edge", "segmentation", "image"):
        bench_inpainter(kind, args, vgg)
    bench_segmenter(args)


if __name__ == "__main__":
    main()
