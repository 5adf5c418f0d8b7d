import os
from pathlib import Path

import pytest
import yaml

from maskopt.core.errors import MaskoptError
from maskopt.pipeline.params import load_params

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, **overrides):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in overrides.items():
        section = raw
        *parents, leaf = dotted.split("__")
        for key in parents:
            section = section[key]
        section[leaf] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_project_params_load_with_paper_weights():
    params = load_params(ROOT / "params.yaml")
    assert params.alpha == 0.03
    assert params.loss.lambda_x == 1000 and params.loss.lambda_ir == 1
    assert params.loss.lambda_sg == 0.1 and params.loss.lambda_ef == 10
    # the sample turns the random-VGG terms off; the paper-scale profile keeps them
    assert params.loss.lambda_if == params.loss.lambda_is == 0
    coco = load_params(ROOT / "params-coco.yaml")
    assert coco.loss.lambda_if == 0.1 and coco.loss.lambda_is == 250


# The settings in which the COCO profile differs from the sample; every other one is
# the same in both files (params-coco.yaml is a whole profile, applied with `cp`).
COCO_ONLY = {
    "data.source", "evaluate.dilations", "evaluate.fixed_dilations", "evaluate.grid_pairs",
    "finetune.pairs",
    "finetune.steps", "inpainter.blocks", "inpainter.canny_sigma", "inpainter.class_channels",
    "inpainter.vgg_weights", "inpainter.width", "loss.lambda_if", "loss.lambda_is",
    "segmenter.backend", "segmenter.box_batch_size", "segmenter.depth",
    "segmenter.detections_per_image", "segmenter.input_sizes_train", "segmenter.input_size_test",
    "segmenter.fpn_channels", "segmenter.freeze_at", "segmenter.weights",
    "synthesize.blur_sigma", "synthesize.image_size", "synthesize.max_truncation",
    "synthesize.min_mask_ratio", "synthesize.min_person_area", "synthesize.person_scale",
    "synthesize.validation_images", "synthesize.workers", "train.cache_pairs",
    "train.amp", "train.cpu_kernels", "train.checkpoint_every", "train.inpainter.lr",
    "train.inpainter.steps.edge", "train.inpainter.steps.image",
    "train.inpainter.steps.segmentation",
    "train.joint.batch_size", "train.joint.lr", "train.joint.steps", "train.log_every",
    "train.segmentation.batch_size", "train.segmentation.lr", "train.segmentation.optimizer",
    "train.segmentation.steps", "train.segmentation.weight_decay", "train.threads",
    "train.workers",
}


def leaves(data: dict, prefix: str = "") -> dict:
    found = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            found |= leaves(value, f"{prefix}{key}.")
        else:
            found[f"{prefix}{key}"] = value
    return found


def test_the_models_defaults_are_params_yaml():
    """One value per setting: the validated model holds params.yaml's, no other set."""
    from maskopt.pipeline.params import Params

    assert Params.model_validate({}) == load_params(ROOT / "params.yaml")


def test_the_coco_profile_is_whole_and_differs_only_where_it_must():
    sample = leaves(yaml.safe_load((ROOT / "params.yaml").read_text()))
    coco = leaves(yaml.safe_load((ROOT / "params-coco.yaml").read_text()))
    assert sorted(set(sample) ^ set(coco)) == []  # every setting in both files
    assert {k for k in sample if sample[k] != coco[k]} == COCO_ONLY


def test_only_the_detectron2_backend_resizes_its_input():
    from maskopt.pipeline.params import Params

    with pytest.raises(ValueError, match="only backend: detectron2 resizes its input"):
        Params.model_validate({"segmenter": {"input_size_test": 800}})
    resized = Params.model_validate({"segmenter": {"backend": "detectron2",
                                                   "weights": "none", "input_size_test": 800}})
    assert resized.segmenter.input_size_test == 800


def test_coco_profile_is_valid():
    params = load_params(ROOT / "params-coco.yaml")
    assert params.data.source == "coco" and params.synthesize.image_size == 256


def test_coco_profile_follows_the_paper_where_it_speaks():
    """Sec. IV-A: Adam, lr 1e-5, batch 4 for PanopticFPN; every person at its own size."""
    params = load_params(ROOT / "params-coco.yaml")
    for schedule in (params.train.segmentation, params.train.joint):
        assert (schedule.lr, schedule.batch_size) == (1e-5, 4)
    assert params.train.segmentation.optimizer == "adam"
    assert params.synthesize.person_scale == "native"
    assert params.synthesize.min_person_area == 0 and params.synthesize.max_truncation == 1
    assert params.segmenter.freeze_at == 2  # detectron2's FREEZE_AT for its COCO weights


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"alpha": -0.1}, "alpha: Input should be greater than or equal to 0"),
        ({"synthesize__image_size": 100}, "synthesize.image_size: must be divisible by"),
        ({"data__source": "imagenet"}, "data.source: Input should be 'sample' or 'coco'"),
        ({"synthesize__blur_sgma": 1.0}, "synthesize.blur_sgma: unknown key"),
        ({"synthesize__workers": "many"}, "synthesize.workers"),
        ({"segmenter__weights": "none", "segmenter__freeze_at": 2},
         "segmenter.freeze_at: would keep randomly initialised"),
        ({"train__inpainter__steps": {"edge": 100, "image": 250}},
         "train.inpainter.steps: must give the steps of edge, segmentation"),
        ({"train__inpainter__steps": {"edge": 0, "segmentation": 1, "image": 1}},
         "train.inpainter.steps: must be at least 1"),
    ],
)
def test_invalid_params_fail_with_one_line_naming_the_key(tmp_path, override, fragment):
    with pytest.raises(MaskoptError) as info:
        load_params(write(tmp_path, **override))
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_inpainter_steps_are_one_number_or_one_per_kind():
    from maskopt.pipeline.params import Params

    sample = load_params(ROOT / "params.yaml").train.inpainter
    assert [sample.steps_of(k) for k in ("edge", "segmentation", "image")] == [100, 250, 250]
    one = Params.model_validate({"train": {"inpainter": {"steps": 7, "lr": 1e-4}}})
    assert one.train.inpainter.steps_of("edge") == one.train.inpainter.steps_of("image") == 7


def test_broken_yaml_is_reported(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("alpha: [0.03\n")
    with pytest.raises(MaskoptError, match="not valid YAML"):
        load_params(path)


def test_each_stage_reads_the_params_dvc_yaml_lists_for_it():
    """maskopt.pipeline.layout.STAGE_PARAMS (what a stage fingerprints and logs) and dvc.yaml
    (what reruns it) name the same keys for every stage."""
    from pathlib import Path

    import yaml

    from maskopt.pipeline.layout import STAGE_PARAMS

    stages = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["stages"]
    listed = {name: (stage.get("do", stage))["params"] for name, stage in stages.items()}
    assert listed.keys() == STAGE_PARAMS.keys()
    for name, keys in STAGE_PARAMS.items():
        assert sorted(listed[name]) == sorted(set(keys)), name


def test_the_launcher_pins_the_kernels_the_params_name(tmp_path, monkeypatch):
    """A stage started through maskopt.pipeline.launch runs on the kernels of
    train.cpu_kernels, whatever the shell had set (torch reports what it uses)."""
    import subprocess
    import sys

    from maskopt.pipeline.launch import stage_environment

    assert stage_environment("native", {"ATEN_CPU_CAPABILITY": "avx512", "A": "1"}) == {"A": "1"}
    probe = tmp_path / "probe.py"
    probe.write_text("import os, torch\nprint(os.environ.get('ONEDNN_MAX_CPU_ISA'), "
                     "torch.backends.cpu.get_cpu_capability())\n")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run([sys.executable, "-m", "maskopt.pipeline.launch", str(probe)],
                          cwd=tmp_path, capture_output=True, text=True, check=True,
                          env={**os.environ, "ATEN_CPU_CAPABILITY": "default"})
    assert done.stdout.split() == ["AVX2", "AVX2"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "params.yaml").write_text("train: {cpu_kernels: avx1024}\n")
    failed = subprocess.run([sys.executable, "-m", "maskopt.pipeline.launch", str(probe)],
                            cwd=broken, capture_output=True, text=True)
    assert failed.returncode == 1 and "cpu_kernels" in failed.stderr
