"""The sample's zoo segmenter: its scenes are no sample scene, `make zoo` makes and
exports it, the package's copy is the recorded one and starts the sample's segmenter."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from maskopt.core.errors import MaskoptError

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "src" / "maskopt" / "zoo"
SAMPLE_SEEDS = (0, 1, 2)  # the sample's default seed and the three-seed table's


def scene_hashes(root: Path, seed: int, counts: dict[str, int]) -> set[str]:
    from maskopt.data.sample_scenes import write_sample_dataset

    write_sample_dataset(root, seed, counts, 256, 192)
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.jpg")}


def test_the_zoo_draws_no_scene_of_a_sample_split(tmp_path):
    recipe = yaml.safe_load((ROOT / "zoo" / "recipe.yaml").read_text())
    zoo_seed = recipe["params"]["seed"]
    assert zoo_seed not in SAMPLE_SEEDS
    counts = {"train": 6, "val": 6}
    zoo = scene_hashes(tmp_path / "zoo", zoo_seed, counts)
    assert len(zoo) == 12
    for seed in SAMPLE_SEEDS:
        assert not zoo & scene_hashes(tmp_path / f"sample{seed}", seed, counts)


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """`make zoo` on 24 scenes for 6 steps, into a temporary folder."""
    from maskopt.training.zoo import build_zoo

    folder = tmp_path_factory.mktemp("zoo")
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "params": {"seed": 1000, "sample": {"train_images": 24, "test_images": 12},
                   "synthesize": {"validation_images": 4, "min_pairs": 1, "workers": 1},
                   "train": {"segmentation": {"steps": 6, "lr": 0.001}}},
        "curve_every": 3}))
    record = build_zoo(recipe, folder / "work", folder / "out")
    return folder / "out", record


def test_make_zoo_exports_half_precision_weights_with_their_record(tiny_zoo):
    out, record = tiny_zoo
    weights = out / "sample_segmenter.pt"
    assert json.loads((out / "record.json").read_text()) == record
    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert [point["step"] for point in record["curve"]] == [3, 6]
    assert {"coverage", "precision", "loss_ps"} <= set(record["curve"][-1])
    assert record["train_pairs"] > 0 and record["held_out_pairs"] > 0
    state = torch.load(weights, weights_only=True)["networks"]["segmenter"]["state_dict"]
    floats = [v for v in state.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)


def test_a_zoo_file_loads_whole_into_the_segmenter_it_was_made_for(tiny_zoo):
    from maskopt.models.build import build
    from maskopt.models.zoo_weights import load_zoo_segmenter

    out, _ = tiny_zoo
    saved = torch.load(out / "sample_segmenter.pt", weights_only=True)["networks"]["segmenter"]
    segmenter = build({**saved["config"], "load_weights": False})
    report = load_zoo_segmenter(segmenter, saved["config"], out / "sample_segmenter.pt")
    assert report["loaded"] == len(segmenter.state_dict()) and report["random"] == 0
    for key, value in segmenter.state_dict().items():
        assert value.dtype == saved["state_dict"][key].dtype or value.is_floating_point()
        torch.testing.assert_close(value, saved["state_dict"][key].to(value.dtype))


def test_a_zoo_file_for_another_shape_or_no_zoo_file_is_refused_whole(tiny_zoo, tmp_path):
    from maskopt.models.build import build
    from maskopt.models.zoo_weights import load_zoo_segmenter

    out, _ = tiny_zoo
    path = out / "sample_segmenter.pt"
    config = torch.load(path, weights_only=True)["networks"]["segmenter"]["config"]
    segmenter = build({**config, "load_weights": False})
    before = {k: v.clone() for k, v in segmenter.state_dict().items()}
    with pytest.raises(MaskoptError, match=r"made with image_size .* \(params: 256\)"):
        load_zoo_segmenter(segmenter, {**config, "image_size": 256}, path)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(MaskoptError, match="broken.pt: not a zoo segmenter file"):
        load_zoo_segmenter(segmenter, config, broken)
    with pytest.raises(MaskoptError, match="missing; run `make zoo`"):
        load_zoo_segmenter(segmenter, config, tmp_path / "absent.pt")
    for key, value in segmenter.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_the_packaged_zoo_is_the_recorded_one_and_starts_the_sample_segmenter():
    from maskopt.models.build import build, segmenter_config
    from maskopt.pipeline.params import load_params

    record = json.loads((ZOO / "record.json").read_text())
    weights = ZOO / record["file"]
    assert weights.stat().st_size <= 30e6  # the repository's limit for zoo weights
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == record["sha256"]
    params = load_params(ROOT / "params.yaml")
    assert params.segmenter.weights == "sample-zoo"
    saved = torch.load(weights, weights_only=True)
    made = saved["networks"]["segmenter"]["config"]
    segmenter = build(segmenter_config(params, made["num_thing_classes"],
                                       made["num_semantic_classes"], made["thing_category_ids"]))
    assert saved["taxonomy"] and segmenter.weights_report["random"] == 0
    assert segmenter.weights_report["loaded"] == len(segmenter.state_dict())
    assert segmenter.weights_report["sha256"] == record["sha256"]
