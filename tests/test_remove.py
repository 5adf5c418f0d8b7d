"""`maskopt remove` and `maskopt.remove`: selection, full-resolution paste, bad input.

The networks are the tiny trained ones; the segmenter's detections are replaced by
known boxes so the selection is deterministic (2 training steps detect nothing)."""


import numpy as np
import pytest
import torch
from PIL import Image
from tiny import fixed_detections
from torchvision.ops import MultiScaleRoIAlign

import maskopt
from maskopt.app.cli import main
from maskopt.core.errors import MaskoptError
from maskopt.removal.remover import Letterbox, Remover, crop_grid


@pytest.fixture
def remover(trained_project):
    r = Remover(trained_project / "models/joint.pt")
    fixed_detections(r, [[8.0, 8.0, 16.0, 24.0], [20.0, 4.0, 30.0, 12.0]])
    return r


def photo(height=77, width=123, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_point_removes_that_segment_and_keeps_every_other_pixel(remover):
    image = photo()
    box = Letterbox.fit(77, 123, remover.nets.image_size)
    x, y = box.to_photo(12, 16)  # centre of the first instance
    result = remover(image, point=(x, y))
    assert result.image.shape == image.shape and result.mask.shape == image.shape[:2]
    assert result.mask[int(y), int(x)]
    assert np.array_equal(result.image[~result.mask], image[~result.mask])
    assert not np.array_equal(result.image[result.mask], image[result.mask])
    x1, y1 = box.to_photo(25, 8)
    assert not result.mask[int(y1), int(x1)]  # the other instance stays


def test_bf16_removal_runs_nhwc_and_paints_what_fp32_paints(trained_project):
    """The same removal in both precisions (fixed detections; the paper-scale test runs
    the real segmenter in bf16)."""
    image = photo(seed=3)
    rough = np.zeros(image.shape[:2], bool)
    rough[20:50, 40:80] = True
    results = {}
    for precision in ("fp32", "bf16"):
        remover = Remover(trained_project / "models/joint.pt", precision=precision)
        fixed_detections(remover, [[10.0, 6.0, 22.0, 20.0]])  # where `rough` falls
        pools = [type(m) for m in remover.nets.segmenter.modules()
                 if isinstance(m, MultiScaleRoIAlign)]
        assert pools == [MultiScaleRoIAlign] * 2  # torchvision's kernel: no gradients here
        weight = remover.nets.image.generator.encoder[1].weight
        assert weight.is_contiguous(memory_format=torch.channels_last) == (precision == "bf16")
        results[precision] = remover(image, rough_mask=rough)
    assert np.array_equal(results["fp32"].mask, results["bf16"].mask)
    hole = results["fp32"].mask
    gap = np.abs(results["fp32"].image[hole].astype(int) - results["bf16"].image[hole])
    assert gap.mean() < 8  # bf16 rounding, not a different picture
    assert np.array_equal(results["bf16"].image[~hole], image[~hole])


def test_box_class_and_rough_mask_selection(remover):
    image = photo()
    lb = Letterbox.fit(77, 123, remover.nets.image_size)
    x0, y0 = lb.to_photo(20, 4)
    x1, y1 = lb.to_photo(30, 12)
    y0 = max(y0, 0.0)  # the instance reaches into the letterbox padding
    by_box = remover(image, box=(x0, y0, x1, y1)).mask
    assert by_box[int((y0 + y1) / 2), int((x0 + x1) / 2)]
    rough = np.zeros(image.shape[:2], bool)
    rough[int(y0) + 2:int(y1) - 2, int(x0) + 2:int(x1) - 2] = True
    assert np.array_equal(remover(image, rough_mask=rough).mask, by_box)
    everyone = remover(image, category="person").mask
    assert everyone.sum() > by_box.sum() and (everyone | by_box).sum() == everyone.sum()


def test_bad_selections_say_what_is_wrong(remover):
    image = photo()
    with pytest.raises(MaskoptError, match="outside the 123x77 image"):
        remover(image, point=(500, 5))
    with pytest.raises(MaskoptError, match=r"no segment under point 1,1; segments near it: "
                                           r"person \(score 0.90\)"):
        remover(image, point=(1, 1))
    with pytest.raises(MaskoptError, match="unknown class 'dog'"):
        remover(image, category="dog")


def test_python_api_reads_paths_and_grayscale(trained_project, monkeypatch, tmp_path):
    real_init = Remover.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        fixed_detections(self, [[0.0, 0.0, 32.0, 32.0]])

    monkeypatch.setattr(Remover, "__init__", init)
    gray = photo()[..., 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    out, mask = maskopt.remove(tmp_path / "gray.png", point=(60, 40),
                               models=trained_project / "models/joint.pt")
    assert out.shape == (77, 123, 3) and mask.all()


def test_cli_folder_with_a_bad_file_exif_rgba_and_16_bit(trained_project, monkeypatch, tmp_path,
                                                         capsys):
    _patched_remover(monkeypatch)
    folder = tmp_path / "in"
    folder.mkdir()
    rgba = np.dstack([photo(40, 60), np.full((40, 60), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "a_rgba.png")
    Image.fromarray((np.arange(40 * 60).reshape(40, 60) * 17).astype(np.uint16)).save(
        folder / "b_16bit.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: stored 60x40, shown 40x60
    Image.fromarray(photo(40, 60)).save(folder / "c_exif.jpg", exif=exif)
    (folder / "d_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    code = main(["remove", str(folder), "--point", "20,20", "-o", str(out), "--save-mask",
                 "--models", str(trained_project / "models/joint.pt")])
    assert code == 1
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "skipped" in printed and "d_broken.png" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "a_rgba.png", "a_rgba_mask.png", "b_16bit.png", "b_16bit_mask.png",
        "c_exif.png", "c_exif_mask.png"]
    assert Image.open(out / "c_exif.png").size == (40, 60)


def test_cli_errors_are_one_line_with_nonzero_exit(trained_project, tmp_path, capsys):
    image = tmp_path / "p.png"
    Image.fromarray(photo()).save(image)
    code = main(["remove", str(image), "--point", "1,1", "-o", str(tmp_path / "o.png"),
                 "--models", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "no model found (looked at: " in err and "missing.pt" in err
    code = main(["remove", str(image), "--point", "1,1", "-o", str(tmp_path / "o.png"),
                 "--models", str(trained_project / "models/joint.pt"), "--max-pixels", "1000"])
    err = capsys.readouterr().err
    assert code == 2 and "above the limit" in err and "--max-pixels" in err
    assert not (tmp_path / "o.png").exists()
    with pytest.raises(SystemExit):
        main(["remove", str(image), "--point", "1", "-o", "x.png"])


def _patched_remover(monkeypatch):
    real_init = Remover.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        fixed_detections(self, [[4.0, 4.0, 28.0, 28.0]])

    monkeypatch.setattr(Remover, "__init__", init)


def test_cli_says_what_it_removed_and_warns_once_about_the_sample_model(
        trained_project, monkeypatch, tmp_path, capsys):
    _patched_remover(monkeypatch)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray(photo(40, 60)).save(folder / f"{name}.png")
    monkeypatch.chdir(tmp_path)  # another folder than the project's
    monkeypatch.setenv("MASKOPT_MODELS", str(trained_project / "models"))
    assert main(["remove", str(folder), "--point", "20,20", "-o", "out"]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if "removed" in line]
    assert len(lines) == 2
    assert "a.png: removed person (score 0.90); mask " in lines[0]
    assert "of the image; wrote out/a.png (" in lines[0] and lines[0].endswith(" s)")
    assert captured.err.count("trained on the synthetic sample") == 1
    assert "not a model for real photos" in captured.err

    assert main(["remove", str(folder / "a.png"), "--point", "20,20", "-o", "q.png",
                 "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_model_lookup_says_where_it_looked(monkeypatch, tmp_path, capsys):
    from maskopt.removal.locate import model_candidates

    monkeypatch.delenv("MASKOPT_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)
    places = model_candidates()
    assert places[0].as_posix() == "models/joint.pt"
    # an editable install also looks in the project it was installed from
    assert any(p.parent.parent.joinpath("dvc.yaml").exists() for p in places[1:])
    Image.fromarray(photo()).save(tmp_path / "p.png")
    monkeypatch.setenv("MASKOPT_MODELS", str(tmp_path / "nowhere.pt"))
    code = main(["remove", "p.png", "--point", "1,1", "-o", "o.png"])
    err = capsys.readouterr().err
    assert code == 2 and "looked at: " in err and "nowhere.pt" in err and "MASKOPT_MODELS" in err


def test_info_prints_networks_and_training_profile(trained_project, capsys):
    assert main(["info", str(trained_project / "models/joint.pt")]) == 0
    out = capsys.readouterr().out
    for text in ("segmenter", "edge", "image", "alpha: ", "box_margin: ",
                 "trained on: sample data, 32 px", "real photos need the COCO profile"):
        assert text in out
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("maskopt ")


def test_crop_grid_samples_the_photo_where_the_crop_lies():
    """The grid of a crop that is the whole photo is the identity, and a crop inside the
    photo samples the photo's semantic map where the crop lies."""
    probs = torch.softmax(torch.randn(1, 7, 32, 32), 1)
    photo_box = Letterbox.fit(40, 64, 32)
    same = torch.nn.functional.grid_sample(probs, crop_grid(photo_box, (0, 0), photo_box),
                                           align_corners=False)
    torch.testing.assert_close(same, probs, atol=1e-5, rtol=0)
    crop_box = Letterbox.fit(32, 32, 32)  # the photo's 32×32 crop at (16, 8), upscaled
    crop = torch.nn.functional.grid_sample(probs, crop_grid(photo_box, (16, 8), crop_box),
                                           align_corners=False)
    # crop pixel (15.5, 15.5) + 0.5 is photo (32, 24), network (16, 12 + pad 6) of the photo
    y, x = 12 + photo_box.pad_y, 16
    torch.testing.assert_close(crop[..., 15:17, 15:17].mean((-1, -2)),
                               probs[..., y - 1:y + 1, x - 1:x + 1].mean((-1, -2)),
                               atol=1e-5, rtol=0)
