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

from maskopt.app.cli import main
from maskopt.removal.remover import Letterbox, Remover

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
    from maskopt.app import cli

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


def test_remove_on_a_folder_runs_the_external_inpainter_once(cli_with_known_detections,
                                                              tmp_path, capsys):
    photos = scene_files(tmp_path / "photos", 3)
    x, y = centre_of_first_box(60, 90, cli_with_known_detections.nets.image_size)
    log = tmp_path / "runs.txt"
    command = f"{sys.executable} {STAND_IN} --image {{images}} --mask {{masks}} " \
              f"--output {{output}} --log {log}"
    out = tmp_path / "clean"
    assert main(["remove", str(tmp_path / "photos"), "--point", f"{x},{y}", "-o", str(out),
                 "--inpainter", command, "--save-mask"]) == 0
    assert log.read_text().splitlines() == ["run"]  # one run for the whole folder
    for photo in photos:
        clean = np.asarray(Image.open(out / f"{photo.stem}.png"))
        hole = np.asarray(Image.open(out / f"{photo.stem}_mask.png")) > 127
        original = np.asarray(Image.open(photo).convert("RGB"))
        assert hole.any() and np.array_equal(clean[~hole], original[~hole])
    # the inpainter leaves the second photo out: it is skipped by name, the others written
    skipping = f"{command} --skip photo000001"
    again = tmp_path / "again"
    assert main(["remove", str(tmp_path / "photos"), "--point", f"{x},{y}", "-o", str(again),
                 "--inpainter", skipping]) == 1
    assert sorted(p.name for p in again.iterdir()) == ["scene0.png", "scene2.png"]
    assert f"skipped {photos[1]}: external inpainter --inpainter: wrote no result" in \
        capsys.readouterr().out


# --- the page ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def page_url(remover):
    import uvicorn

    from maskopt.app.server import create_app

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
            assert page.get_attribute("#download", "download") == f"{scene.stem}-removed.png"
            assert page.get_attribute("#grow", "max") == str(max(height, width) // 10)
            page.click("#compare")  # before/after: the original in the result's place
            assert page.get_attribute("#result", "src").startswith("blob:")
            page.click("#compare")
            assert page.get_attribute("#result", "src").startswith("data:image/png")

            page.mouse.click(shown["x"] + 2, shown["y"] + 2)  # the top-left corner: nothing
            page.wait_for_function("document.getElementById('message').textContent !== ''")
            message = _text(page, "message")
            assert "no segment under point 0,0" in message  # whole pixels, not 0.4375,0.4375
            # nothing stale stays: no result, no download, the photo without the old masks
            assert page.get_attribute("#result", "src") is None
            assert page.locator("#download").is_hidden() and page.locator("#compare").is_hidden()
            assert page.get_attribute("#input", "src").startswith("blob:")
            outlines = page.locator(".nearby")  # the segments the message names, drawn
            assert outlines.count() >= 1 and "person 0.90" in outlines.first.inner_text()
            page.screenshot(path=str(tmp_path / "page.png"))

            page.set_input_files("#file", str(not_an_image))  # a failed upload clears too
            page.wait_for_function("document.getElementById('message').textContent"
                                   ".includes('notes.png')")
            assert page.get_attribute("#input", "src") is None
            assert page.locator(".nearby").count() == 0
        finally:
            browser.close()


# --- the page's guards: Host, origin, content type, memory, errors --------------------


def _post(url: str, path: str, data: bytes, headers: dict) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url + path.lstrip("/"), data=data, headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, {"text": body.decode()}


def _png(height=60, width=90, seed=0) -> bytes:
    buffer = io.BytesIO()
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


UPLOAD = {"Content-Type": "application/octet-stream", "X-Filename": "scene.png"}
JSON = {"Content-Type": "application/json"}


def test_the_server_answers_only_its_own_page(page_url):
    """A page on another origin reaches nothing: not through another Host name (DNS
    rebinding), not with a simple cross-origin POST, not with a foreign Origin."""
    import json

    status, _ = _post(page_url, "/api/photo", _png(), {**UPLOAD, "Host": "evil.example"})
    assert status == 400
    status, body = _post(page_url, "/api/photo", _png(), {"Content-Type": "text/plain"})
    assert status == 415 and "application/octet-stream" in body["error"]
    status, _ = _post(page_url, "/api/photo", _png(), {**UPLOAD, "Origin": "http://evil.example"})
    assert status == 403
    status, body = _post(page_url, "/api/photo", _png(), UPLOAD)
    assert status == 200 and body["max_grow"] == 9
    pick = json.dumps({"photo": body["photo"], "point": [1, 1]}).encode()
    status, _ = _post(page_url, "/api/remove", pick, {"Content-Type": "text/plain"})
    assert status == 415
    status, body = _post(page_url, "/api/remove", b'{"photo": "x", "grow": "lots"}', JSON)
    assert status == 422 and body["error"].startswith("bad request (grow: ")


def test_the_margin_limit_and_a_missed_click_are_answers_not_errors(page_url, remover):
    import json

    _, photo = _post(page_url, "/api/photo", _png(), UPLOAD)
    x, y = centre_of_first_box(60, 90, remover.nets.image_size)
    status, body = _post(page_url, "/api/remove", json.dumps(
        {"photo": photo["photo"], "point": [x, y], "grow": 100000}).encode(), JSON)
    assert status == 422 and "0 to 9 px" in body["error"]
    status, body = _post(page_url, "/api/remove", json.dumps(
        {"photo": photo["photo"], "point": [1, 1]}).encode(), JSON)
    assert status == 422 and "no segment under point 1,1" in body["error"]
    assert body["nearby"] and all(len(s["box"]) == 4 for s in body["nearby"])


def test_photos_in_use_stay_while_others_are_uploaded(page_url, remover):
    """A bounded mixed load: three clients keep working on their photos while a fourth
    uploads two others each round, 1.5 x KEPT_PHOTOS in all. The least recently used
    go, never one in use (first in, first out dropped all three)."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from maskopt.app.server import KEPT_PHOTOS

    x, y = centre_of_first_box(60, 90, remover.nets.image_size)
    rounds = 3 * KEPT_PHOTOS // 4
    together = threading.Barrier(4, timeout=120)

    def worker(seed: int) -> list[int]:
        _, photo = _post(page_url, "/api/photo", _png(seed=seed), UPLOAD)
        pick = json.dumps({"photo": photo["photo"], "point": [x, y]}).encode()
        statuses = []
        for _ in range(rounds):
            together.wait()
            statuses.append(_post(page_url, "/api/remove", pick, JSON)[0])
        return statuses

    def uploader() -> list[int]:
        statuses = []
        for i in range(rounds):
            together.wait()
            statuses += [_post(page_url, "/api/photo", _png(seed=100 + 2 * i + j), UPLOAD)[0]
                         for j in range(2)]
        return statuses

    with ThreadPoolExecutor(4) as pool:
        removes = [pool.submit(worker, seed) for seed in range(3)]
        uploads = pool.submit(uploader)
        assert uploads.result() == [200] * (2 * rounds)
        statuses = [s for future in removes for s in future.result()]
    assert statuses == [200] * (3 * rounds)
    status, body = _post(page_url, "/api/remove", json.dumps(
        {"photo": "0" * 32, "point": [x, y]}).encode(), JSON)
    assert status == 404 and "used most recently" in body["error"]


def test_photo_store_keeps_the_most_recently_used_within_its_bytes():
    from maskopt.app.server import PhotoStore, UserError

    store = PhotoStore(count=2, max_bytes=3 * 100)
    small = np.zeros((10, 10), np.uint8)  # 100 bytes
    a, b = store.add(small), store.add(small)
    store.use(a)  # b is now the least recently used
    c = store.add(small)
    assert store.use(a) is not None and store.use(c) is not None
    with pytest.raises(UserError, match="open it again"):
        store.use(b)
    big = store.add(np.zeros((10, 25), np.uint8))  # 250 bytes: only it and nothing else fits
    with pytest.raises(UserError):
        store.use(a)
    assert store.use(big).shape == (10, 25)


def test_serve_on_a_busy_port_is_one_line_and_warns_off_loopback(capsys):
    from maskopt.app.server import allowed_hosts, is_loopback, listening_socket
    from maskopt.core.errors import MaskoptError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(MaskoptError, match="cannot listen on 127.0.0.1:.*--port"):
            listening_socket("127.0.0.1", taken.getsockname()[1])
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    assert "evil.example" not in allowed_hosts("0.0.0.0")
    assert "photos.lan" in allowed_hosts("0.0.0.0", ["Photos.lan"])


def test_serve_command_binds_before_it_says_where_to_open(trained_project, capsys):
    """`maskopt serve` on a busy port: an error, and no address printed before it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = main(["serve", "--port", str(taken.getsockname()[1]),
                     "--models", str(trained_project / "models/joint.pt")])
    captured = capsys.readouterr()
    assert code == 2 and "cannot listen on" in captured.err and "open http" not in captured.out


def test_a_client_leaving_mid_upload_is_no_traceback(page_url, caplog):
    host, port = page_url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(b"POST /api/photo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
                    + b"x" * 1000)
    time.sleep(0.5)
    status, _ = _post(page_url, "/api/photo", _png(), UPLOAD)  # still serving
    assert status == 200
    assert "Traceback" not in caplog.text and "ClientDisconnect" not in caplog.text
