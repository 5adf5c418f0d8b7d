"""Latency and memory of the `maskopt serve` page, as a user meets it.

Starts `maskopt serve` in its own process, reads its resident memory once the model
is loaded (before any photo) and after the last removal, then drives the page in
headless Chromium (Playwright, the system browser): uploads a photo of ``--size`` px
(the first sample test scene, resized; the click lands on its pasted person) and
clicks it ``--repeat`` times. Prints the seconds the server spent per click (its
`seconds`) and the seconds from the click until the result is on the page, as the
browser measured them (median and range).

    .venv/bin/python benchmarks/serve.py [--models models/joint.pt] [--size 256] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def scene(size: int, folder: Path) -> tuple[Path, tuple[float, float]]:
    """The first sample test pair's input at ``size`` px, and its person's centre."""
    pairs = ROOT / "data/pairs/test"
    first = json.loads((pairs / "annotations.json").read_text())["images"][0]["file_name"]
    rgb = Image.open(pairs / "images" / first).convert("RGB")
    mask = np.asarray(Image.open(pairs / "masks" / first)) > 127
    ys, xs = np.nonzero(mask)
    scale = size / rgb.width
    path = folder / "scene.png"
    rgb.resize((size, size), Image.BICUBIC).save(path)
    return path, (float(np.median(xs) + 0.5) * scale, float(np.median(ys) + 0.5) * scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models/joint.pt")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    port = free_port()
    maskopt = Path(sys.executable).with_name("maskopt")
    server = subprocess.Popen([str(maskopt), "serve", "--models", args.models, "--port",
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        started = time.monotonic()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() - started > 120:
                    raise SystemExit(f"maskopt serve did not start: "
                                     f"{server.stdout.read()}") from None
                time.sleep(0.2)
        print(f"server up (model loaded) after {time.monotonic() - started:.1f} s; "
              f"resident memory {resident_mb(server.pid):.0f} MB")
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
            photo, (x, y) = scene(args.size, Path(tmp))
            browser = playwright.chromium.launch(executable_path=chromium,
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#file", str(photo))
            page.wait_for_function("document.getElementById('status').textContent"
                                   ".includes('click the object')")
            shown = page.locator("#input").bounding_box()
            server_s, browser_s = [], []
            for _ in range(args.repeat):
                page.evaluate("document.getElementById('status').dataset.browserSeconds = ''")
                page.mouse.click(shown["x"] + x * shown["width"] / args.size,
                                 shown["y"] + y * shown["height"] / args.size)
                page.wait_for_function("document.getElementById('status').dataset"
                                       ".browserSeconds || document.getElementById("
                                       "'message').textContent", timeout=120_000)
                message = page.locator("#message").inner_text()
                if message:
                    raise SystemExit(f"the page says: {message}")
                status = page.locator("#status").inner_text()
                server_s.append(float(status.split(" s on the server")[0].rsplit(" ", 1)[1]))
                browser_s.append(float(page.get_attribute("#status", "data-browser-seconds")))
            if os.environ.get("MASKOPT_SCREENSHOT"):
                page.screenshot(path=os.environ["MASKOPT_SCREENSHOT"], full_page=True)
            browser.close()
        for name, values in (("server", server_s), ("browser", browser_s)):
            print(f"{args.size} px photo, {name} side: median {statistics.median(values):.3f} s "
                  f"(min {min(values):.3f}, max {max(values):.3f}, {len(values)} clicks)")
        print(f"resident memory after the clicks: {resident_mb(server.pid):.0f} MB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
