"""`maskopt mask`, `maskopt remove --inpainter` and the `maskopt serve` page, the page
driven in headless Chromium as a person would use it (Playwright, the system browser).

The networks are the tiny trained ones with known detections (tiny.fixed_detections):
the joint segmenter finds two boxes, the pretrained one a smaller box inside the first."""

import base64
import io
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from browser import CHROMIUM, needs_chromium
from PIL import Image
from tiny import fixed_detections

from maskopt.cli import main
from maskopt.removal import Letterbox, Remover

STAND_IN = Path(__file__).with_name("stand_in_inpainter.py")
JOINT_BOXES = [[8.0, 8.0, 16.0, 24.0], [20.0, 4.0, 30.0, 12.0]]
PRETRAINED_BOXES = [[10.0, 10.0, 14.0, 22.0]]


@pytest.fixture
def remover(trained_project):
    models = trained_project / "models"
    r = Remover(models / "joint.pt", pretrained_segmenter=models / "segmenter.pt")
    fixed_detections(r, JOINT_BOXES)
    fixed_detections(r, PRETRAINED_BOXES, segmenter=r.pretrained)
    return r


def scene_files(folder: Path, count: int = 2) -> list[Path]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"scene{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def centre_of_first_box(height: int, width: int, size: int) -> tuple[float, float]:
    return Letterbox.fit(height, width, size).to_photo(12, 16)


@pytest.fixture
def cli_with_known_detections(remover, monkeypatch):
    """The CLI's networks: ``remover`` (loading is tested in test_remove.py)."""
    from maskopt import cli

    monkeypatch.setattr(cli, "_remover", lambda args: (remover, None))
    return remover


def test_mask_writes_a_folder_in_lamas_layout(cli_with_known_detections, tmp_path):
    photos = scene_files(tmp_path / "photos")
    x, y = centre_of_first_box(60, 90, cli_with_known_detections.nets.image_size)
    out = tmp_path / "for_lama"
    assert main(["mask", str(tmp_path / "photos"), "--point", f"{x},{y}", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "scene0.png", "scene0_mask.png", "scene1.png", "scene1_mask.png"]
    for photo in photos:
        image = np.asarray(Image.open(out / f"{photo.stem}.png"))
        mask = np.asarray(Image.open(out / f"{photo.stem}_mask.png"))
        assert image.shape == (60, 90, 3) and mask.shape == (60, 90) and mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255} and mask[int(y), int(x)] == 255
        assert np.array_equal(image, np.asarray(Image.open(photo).convert("RGB")))


def test_mask_grow_and_learned_margin_off_compare_with_a_fixed_margin(
        cli_with_known_detections, tmp_path):
    scene_files(tmp_path / "photos", 1)
    x, y = centre_of_first_box(60, 90, cli_with_known_detections.nets.image_size)

    def mask(*options):
        out = tmp_path / "_".join(options or ("learned",))
        assert main(["mask", str(tmp_path / "photos" / "scene0.jpg"), "--point", f"{x},{y}",
                     "-o", str(out), "--layout", "masks", *options]) == 0
        assert [p.name for p in out.iterdir()] == ["scene0.png"]  # masks only, for IOPaint
        return np.asarray(Image.open(out / "scene0.png")) > 127

    learned, grown = mask(), mask("--grow", "3")
    pretrained = mask("--learned-margin", "off")
    fixed = mask("--learned-margin", "off", "--grow", "3")
    assert learned.sum() < grown.sum() and (grown | learned).sum() == grown.sum()
    assert pretrained.sum() < learned.sum()  # the pretrained box is the smaller one
    assert pretrained.sum() < fixed.sum() and (fixed | pretrained).sum() == fixed.sum()


def test_remove_with_an_external_inpainter_keeps_every_pixel_outside_the_mask(
        cli_with_known_detections, tmp_path):
    photo = scene_files(tmp_path, 1)[0]
    x, y = centre_of_first_box(60, 90, cli_with_known_detections.nets.image_size)
    command = f"{sys.executable} {STAND_IN} --image {{images}} --mask {{masks}} " \
              "--output {output}"
    out = tmp_path / "clean.png"
    assert main(["remove", str(photo), "--point", f"{x},{y}", "-o", str(out),
                 "--inpainter", command, "--save-mask"]) == 0
    original = np.asarray(Image.open(photo).convert("RGB"))
    clean = np.asarray(Image.open(out))
    hole = np.asarray(Image.open(tmp_path / "clean_mask.png")) > 127
    assert np.array_equal(clean[~hole], original[~hole])
    assert not np.array_equal(clean[hole], original[hole])  # the stand-in's fill
    assert main(["remove", str(photo), "--point", f"{x},{y}", "-o", str(out),
                 "--inpainter", "no-such-inpainter {images}"]) == 2


# --- the page ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def page_url(remover):
    import uvicorn

    from maskopt.server import create_app

    app = create_app(remover, "a 64 px synthetic demo model", max_upload_bytes=200_000,
                     max_pixels=1_000_000)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}/"
    server.should_exit = True
    thread.join(10)


def decoded(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def _text(page, element: str) -> str:
    return page.locator(f"#{element}").inner_text()


@needs_chromium
def test_the_page_removes_the_clicked_person_and_recovers_from_a_bad_upload(
        page_url, remover, pairs_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    scene = sorted((pairs_dir / "test/images").iterdir())[0]  # a sample test scene
    original = np.asarray(Image.open(scene).convert("RGB"))
    height, width = original.shape[:2]
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--proxy-server=http://127.0.0.1:9"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1600})
            page.goto(page_url)
            page.wait_for_selector("#demo:not([hidden])")
            assert "64 px synthetic demo" in _text(page, "demo")

            page.set_input_files("#file", str(not_an_image))  # a bad upload: a message
            page.wait_for_function("document.getElementById('message').textContent !== ''")
            assert "notes.png: unreadable or truncated image" in _text(page, "message")

            page.set_input_files("#file", str(scene))  # then a good one works
            page.wait_for_function("document.getElementById('status').textContent"
                                   ".includes('click the object')")
            assert _text(page, "message") == ""
            shown = page.locator("#input").bounding_box()
            x, y = centre_of_first_box(height, width, remover.nets.image_size)
            page.mouse.click(shown["x"] + x * shown["width"] / width,
                             shown["y"] + y * shown["height"] / height)
            page.wait_for_function("(document.getElementById('result').src || '')"
                                   ".startsWith('data:image/png')")
            result = decoded(page.get_attribute("#result", "src"))
            mask = decoded(page.get_attribute("#result", "data-mask")) > 127
            assert result.shape == original.shape and mask[int(y), int(x)]
            assert np.array_equal(result[~mask], original[~mask])  # only inside the mask
            assert not np.array_equal(result[mask], original[mask])
            overlay = decoded(page.get_attribute("#input", "src"))
            assert not np.array_equal(overlay[mask], original[mask])  # both masks drawn
            assert "(score 0.90)" in _text(page, "status")

            page.mouse.click(shown["x"] + 2, shown["y"] + 2)  # the top-left corner: nothing
            page.wait_for_function("document.getElementById('message').textContent !== ''")
            assert "no segment under point" in _text(page, "message")
            page.screenshot(path=str(tmp_path / "page.png"))
        finally:
            browser.close()
