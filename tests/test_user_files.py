"""What `maskopt remove` and `maskopt mask` do with a user's own files: never overwrite
an input, never write two results to one file, refuse what an inpainter would misread,
and say in one line what is wrong (exit 2, nothing written).

The networks are the tiny trained ones with known detections (tiny.fixed_detections)."""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny import fixed_detections

import maskopt
from maskopt.app.cli import main
from maskopt.core.errors import MaskoptError
from maskopt.removal.remover import Letterbox, Remover, grow_by_distance, max_grow

BOXES = [[4.0, 4.0, 28.0, 28.0]]


@pytest.fixture
def known_detections(trained_project, monkeypatch):
    """Every Remover the CLI or the API builds finds BOXES."""
    real_init = Remover.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        fixed_detections(self, BOXES)

    monkeypatch.setattr(Remover, "__init__", init)
    monkeypatch.setenv("MASKOPT_MODELS", str(trained_project / "models"))
    return trained_project


def photo(path: Path, height=40, width=60, seed=0, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, **save)
    return path


def checksums(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


def refused(capsys, *argv, says: str) -> None:
    code, err = run(capsys, *argv)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and says in lines[0], err


def test_remove_never_writes_over_its_inputs(known_detections, tmp_path, capsys):
    folder = tmp_path / "s"
    single = photo(folder / "p.png")
    rough = photo(tmp_path / "rough.png", seed=1)
    before, rough_before = checksums(folder), checksums(tmp_path)["rough.png"]
    refused(capsys, "remove", folder, "--point", "20,20", "-o", folder,
            says="is the folder of the photos")
    refused(capsys, "remove", single, "--point", "20,20", "-o", single, says="is an input")
    refused(capsys, "remove", single, "--point", "20,20", "-o", folder,  # folder/p.png
            says="is the folder of the photos")
    refused(capsys, "remove", single, "--mask", rough, "-o", rough, says="is an input")
    refused(capsys, "remove", single, "--point", "20,20", "-o", folder / "p.tif",  # as p.png
            says="is an input")
    assert checksums(folder) == before
    assert checksums(tmp_path)["rough.png"] == rough_before


def test_remove_refuses_two_photos_writing_one_file(known_detections, tmp_path, capsys):
    folder = tmp_path / "in"
    photo(folder / "x.jpg")
    photo(folder / "x.png", seed=1)
    refused(capsys, "remove", folder, "--point", "20,20", "-o", tmp_path / "out",
            says="would both write")
    assert not (tmp_path / "out").exists()
    (folder / "x.jpg").unlink()
    photo(folder / "x_mask.png", seed=2)  # x's saved mask would be x_mask's result
    refused(capsys, "remove", folder, "--point", "20,20", "-o", tmp_path / "out",
            "--save-mask", says="would both write")
    assert main(["remove", str(folder), "--point", "20,20", "-o", str(tmp_path / "out"),
                 "--quiet"]) == 0  # without --save-mask the two results do not clash
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.png", "x_mask.png"]


def test_mask_never_rewrites_a_photo(known_detections, tmp_path, capsys):
    folder = tmp_path / "photos"
    rgba = np.dstack([np.full((40, 60, 3), 90, np.uint8), np.full((40, 60), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder.mkdir() or folder / "a.png")
    Image.fromarray(np.full((40, 60), 40000, np.uint16)).save(folder / "b.png")
    before = checksums(folder)
    refused(capsys, "mask", folder, "--point", "20,20", "-o", folder,
            says="is the folder of the photos")
    refused(capsys, "mask", folder / "a.png", "--point", "20,20", "-o", folder,
            says="is the folder of the photos")
    refused(capsys, "mask", folder / "a.png", "--point", "20,20", "-o", folder,
            "--layout", "masks", says="is the folder of the photos")
    rough = photo(tmp_path / "rough" / "a.png", seed=3)  # its mask would be written there
    refused(capsys, "mask", folder / "a.png", "--mask", rough, "-o", rough.parent,
            "--layout", "masks", says="is an input")
    assert checksums(folder) == before


def test_masks_for_iopaint_refuse_a_photo_stored_rotated(known_detections, tmp_path, capsys):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 60x40, shown 40x60
    rotated = photo(tmp_path / "phone.jpg", exif=exif)
    refused(capsys, "mask", rotated, "--point", "20,20", "-o", tmp_path / "masks",
            "--layout", "masks", says="--layout lama")
    assert not list((tmp_path / "masks").glob("*"))
    assert main(["mask", str(rotated), "--point", "20,20", "-o", str(tmp_path / "lama")]) == 0
    upright = Image.open(tmp_path / "lama/phone.png")  # the photo as the mask sees it
    assert upright.size == Image.open(tmp_path / "lama/phone_mask.png").size == (40, 60)
    assert not upright.getexif()


def test_the_extra_margin_is_bounded_by_the_photo(known_detections, tmp_path, capsys):
    single = photo(tmp_path / "p.png")
    limit = max_grow(40, 60)
    assert limit == 6
    refused(capsys, "remove", single, "--point", "20,20", "-o", tmp_path / "o.png",
            "--grow", "100000", says=f"0 to {limit} px")
    refused(capsys, "mask", single, "--point", "20,20", "-o", tmp_path / "m",
            "--grow", "-1", says=f"0 to {limit} px")
    assert not (tmp_path / "o.png").exists() and not list((tmp_path / "m").glob("*"))
    with pytest.raises(MaskoptError, match=f"0 to {limit} px"):
        maskopt.remove(single, point=(20, 20), grow=limit + 1)
    _, mask = maskopt.remove(single, point=(20, 20), grow=limit)
    _, plain = maskopt.remove(single, point=(20, 20))
    assert mask.sum() > plain.sum() and (mask | plain).sum() == mask.sum()


def test_growing_by_distance_is_the_euclidean_disc():
    mask = np.zeros((41, 53), bool)
    mask[20, 10] = mask[5:9, 30:33] = True
    grown = grow_by_distance(mask, 7)
    ys, xs = np.nonzero(mask)
    yy, xx = np.mgrid[:41, :53]
    nearest = np.min((yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2, axis=-1)
    assert np.array_equal(grown, nearest <= 49)


def test_files_that_are_not_a_joint_model_are_one_line(trained_project, tmp_path, capsys):
    single = photo(tmp_path / "p.png")
    for other in ("inpainter_edge.pt", "segmenter.pt"):
        refused(capsys, "remove", single, "--point", "20,20", "-o", tmp_path / "o.png",
                "--models", trained_project / "models" / other, says="not a joint model")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model at all")
    refused(capsys, "remove", single, "--point", "20,20", "-o", tmp_path / "o.png",
            "--models", garbage, says="not a readable maskopt model file")
    refused(capsys, "info", garbage, says="not a readable maskopt model file")
    assert not (tmp_path / "o.png").exists()


def test_an_output_that_cannot_be_written_is_one_line(known_detections, tmp_path, capsys):
    single = photo(tmp_path / "p.png")
    (tmp_path / "a_file").write_text("in the way")
    refused(capsys, "remove", single, "--point", "20,20", "-o", tmp_path / "a_file/o.png",
            says="cannot write")
    assert (tmp_path / "a_file").read_text() == "in the way"


def test_points_are_checked_by_maskopt_not_argparse(known_detections, tmp_path, capsys):
    single = photo(tmp_path / "p.png")
    refused(capsys, "remove", single, "--point", "-1,10", "-o", tmp_path / "o.png",
            says="point -1,10 is outside the 60x40 image")
    refused(capsys, "remove", single, "--box", "-5,0,10,10", "-o", tmp_path / "o.png",
            says="is not inside the 60x40 image")


def test_a_pick_beside_every_segment_names_them_without_contradiction(trained_project):
    remover = Remover(trained_project / "models/joint.pt")
    fixed_detections(remover, [[20.0, 20.0, 30.0, 30.0]])
    lb = Letterbox.fit(40, 60, remover.nets.image_size)
    rgb = np.zeros((40, 60, 3), np.uint8)
    with pytest.raises(MaskoptError, match=r"no segment under point 1,1; segments near it: "
                                           r"person \(score 0.90\) at box (\d+,){3}\d+$"):
        remover(rgb, point=(1, 1))
    inside = lb.to_photo(25, 25)  # in the box, and on the segment
    assert remover(rgb, point=inside).mask[int(inside[1]), int(inside[0])]
    # a 1x1 photo: its one pixel lies in every box; the message says why it was not taken
    dot = np.zeros((1, 1, 3), np.uint8)
    with pytest.raises(MaskoptError, match=r"at box 0,0,1,1 \(its box holds the point, its "
                                           r"mask does not\)$"):
        remover(dot, point=(0, 0))


def test_python_m_maskopt_and_the_api_find_the_model_as_the_cli_does(
        known_detections, tmp_path, monkeypatch):
    done = subprocess.run([sys.executable, "-m", "maskopt", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("maskopt ")
    monkeypatch.chdir(tmp_path)  # no ./models here: $MASKOPT_MODELS is the only way
    image, mask = maskopt.remove(photo(tmp_path / "p.png"), point=(20, 20))
    assert image.shape == (40, 60, 3) and mask.any()
