"""External inpainters as evaluation rows (maskopt.evaluation.external): the export in
IOPaint's and LaMa's layouts, the stand-in command, and each way a command can fail."""

import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskopt.core.errors import MaskoptError
from maskopt.core.imaging import tensor_to_rgb
from maskopt.data.pairs import PairDataset
from maskopt.evaluation.engine import Sources
from maskopt.evaluation.evaluate import evaluate_pairs
from maskopt.evaluation.external import export_pair, read_result, run_inpainter
from maskopt.evaluation.image_metrics import SharedNetworks
from maskopt.evaluation.rows import Row

STAND_IN = f"{shlex.quote(sys.executable)} {Path(__file__).with_name('stand_in_inpainter.py')}"
IOPAINT = STAND_IN + " --image {images} --mask {masks} --output {output}"
LAMA = STAND_IN + " --lama {lama} --output {output}"


def offline_metrics() -> SharedNetworks:
    def offline():
        raise OSError("offline")

    return SharedNetworks(lpips_factory=offline, fid_features=offline)


@pytest.fixture
def exported(pairs_dir, tmp_path):
    """The tiny test pairs exported with their ground-truth masks."""
    dataset = PairDataset(pairs_dir / "test")
    for i in range(len(dataset)):
        item = dataset[i]
        export_pair(tmp_path, item["name"], tensor_to_rgb(item["image"]),
                    item["mask"][0].numpy() > 0.5)
    return dataset, tmp_path


def test_export_has_both_layouts(exported):
    dataset, folder = exported
    name = dataset[0]["name"]
    for path in (f"images/{name}.png", f"masks/{name}.png", f"lama/{name}.png",
                 f"lama/{name}_mask.png"):
        assert (folder / path).exists(), path
    mask = np.asarray(Image.open(folder / "masks" / f"{name}.png"))
    assert set(np.unique(mask)) <= {0, 255}


def evaluate_external(commands: dict[str, str], dataset, workdir: Path):
    """The external inpainters as evaluation rows on the ground-truth masks."""
    rows = [Row(name, "gt", f"external:{name}", name) for name in commands]
    table, per_image, _, failures = evaluate_pairs(rows, Sources({}, {}), dataset,
                                                   offline_metrics(), 0, None, commands,
                                                   workdir)
    return table, per_image["psnr"], failures


def test_stand_in_rows_are_scored_and_keep_the_known_pixels(pairs_dir, tmp_path):
    dataset = PairDataset(pairs_dir / "test")
    table, per_image, failures = evaluate_external({"iopaint": IOPAINT, "lama": LAMA},
                                                   dataset, tmp_path)
    assert failures == {}
    for row in ("iopaint", "lama"):
        assert len(per_image[row]) == len(dataset) and table[row]["all"]["count"] == len(dataset)
        assert table[row]["all"]["mask_coverage"] == 1.0  # it filled the GT mask
    name, folder = f"{dataset[0]['name']}__gt+0", tmp_path
    rgb = np.asarray(Image.open(folder / "images" / f"{name}.png"))
    hole = np.asarray(Image.open(folder / "masks" / f"{name}.png")) > 127
    result = read_result("iopaint", folder / "results" / "iopaint", name, rgb, hole)
    assert np.array_equal(result[~hole], rgb[~hole])  # the stand-in inverted them
    assert not np.array_equal(result[hole], rgb[hole])


def test_each_failure_names_the_inpainter_and_keeps_the_other_rows(pairs_dir, tmp_path):
    dataset = PairDataset(pairs_dir / "test")
    skipped = f"{dataset[1]['name']}__gt+0"
    commands = {"good": IOPAINT, "missing": "no-such-inpainter {images} {output}",
                "failing": IOPAINT + " --fail", "partial": IOPAINT + f" --skip {skipped}",
                "typo": STAND_IN + " --image {imgs} --output {output}"}
    table, _, failures = evaluate_external(commands, dataset, tmp_path)
    assert list(table) == ["good"]
    assert "program 'no-such-inpainter' not found" in failures["missing"]
    assert "exit code 1 (stand-in: failing as asked)" in failures["failing"]
    assert f"wrote no result for {skipped}" in failures["partial"]
    assert "bad command" in failures["typo"] and "{images}" in failures["typo"]
    assert all(why.startswith(f"external inpainter {name}:") for name, why in failures.items())


def test_a_result_of_the_wrong_size_is_refused(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(MaskoptError, match="a.png is 8x8, the input 16x16"):
        read_result("x", tmp_path, "a", np.zeros((16, 16, 3), np.uint8),
                    np.ones((16, 16), bool))
    with pytest.raises(MaskoptError, match="the command is empty"):
        run_inpainter("x", "  ", tmp_path, tmp_path / "out")
