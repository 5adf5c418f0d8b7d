"""Validated pipeline parameters (params.yaml).

Every stage loads the whole file through :func:`load_params`, so a typo or an
out-of-range value fails when the stage starts, with one line naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from maskopt.core.errors import MaskoptError

# The FPN's coarsest level (P5, and the padding of torchvision's detection
# transform) works on multiples of 32; the inpainters need multiples of 4.
NETWORK_STRIDE = 32


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataParams(_Section):
    source: Literal["sample", "coco"] = "sample"
    root: str = "data/raw"             # what the pipeline reads (the stage's output)
    # coco only: archives and unpacked annotations, kept outside the output (DVC does not
    # hash them), and COCO's files while the sample is in use
    downloads: str = "data/downloads"
    # coco only: fetch just this many images per split (individual image URLs)
    max_images: int | None = Field(default=None, ge=1)
    coco_base_url: str = "http://images.cocodataset.org"
    # Expected MD5 per archive name, replacing the published ones (a mirror, a re-packed
    # archive); null for an archive, or for the whole setting, turns its check off
    # (with a warning).
    coco_checksums: dict[str, str | None] | None = Field(default_factory=dict)

    @field_validator("coco_checksums")
    @classmethod
    def _md5_or_null(cls, value: dict | None) -> dict | None:
        if value is None:
            return None
        bad = [k for k, v in value.items() if v is not None and
               (len(v) != 32 or any(c not in "0123456789abcdef" for c in v.lower()))]
        if bad:
            raise ValueError(f"not an MD5 (32 hex digits): {bad}")
        return value


class SampleParams(_Section):
    train_images: int = Field(default=400, ge=8)
    test_images: int = Field(default=400, ge=8)
    width: int = Field(default=256, ge=32)
    height: int = Field(default=192, ge=32)


class SynthesizeParams(_Section):
    image_size: int = Field(default=128, ge=32)
    train_pairs: int | None = Field(default=None, ge=1)
    test_pairs: int | None = Field(default=None, ge=4)
    # train images held out of the training pairs for the validation pairs (which choose
    # the best fixed dilation, docs/results.md); validation_pairs null: one per image
    validation_images: int = Field(default=40, ge=4)
    validation_pairs: int | None = Field(default=None, ge=4)
    # mask_ratio: each pasted person scaled to a drawn mask ratio (training) or bucket
    # (test); native: kept at the size it has in its own image (the paper)
    person_scale: Literal["mask_ratio", "native"] = "mask_ratio"
    min_person_area: float = Field(default=0.005, ge=0, lt=1)
    max_truncation: float = Field(default=0.15, ge=0, le=1)
    blur_sigma: float = Field(default=0.75, ge=0)
    min_mask_ratio: float = Field(default=0.02, gt=0, lt=0.1)
    max_mask_ratio: float = Field(default=0.40, gt=0.1, le=0.4)
    workers: int = Field(default=2, ge=1)
    # a split yielding fewer pairs fails the stage (e.g. its images are missing)
    min_pairs: int = Field(default=4, ge=1)

    @field_validator("image_size")
    @classmethod
    def _divisible_by_stride(cls, value: int) -> int:
        if value % NETWORK_STRIDE:
            raise ValueError(
                f"must be divisible by the network stride {NETWORK_STRIDE} (got {value})"
            )
        return value


class LossParams(_Section):
    """Loss weights, named as in the paper (Sec. III-B, III-D)."""

    lambda_eg: float = Field(default=1.0, ge=0)
    lambda_ef: float = Field(default=10.0, ge=0)
    lambda_sg: float = Field(default=0.1, ge=0)
    lambda_sc: float = Field(default=1.0, ge=0)
    lambda_ig: float = Field(default=0.1, ge=0)
    lambda_if: float = Field(default=0, ge=0)          # paper: 0.1
    lambda_is: float = Field(default=0, ge=0)          # paper: 250
    lambda_ir: float = Field(default=1.0, ge=0)
    lambda_x: float = Field(default=1000.0, ge=0)


class SegmenterParams(_Section):
    backend: Literal["torchvision", "detectron2"] = "torchvision"
    depth: Literal[18, 34, 50, 101] = 18                # paper: 50
    fpn_channels: int = Field(default=64, ge=32)        # paper: 256
    # none: from scratch; sample-zoo: the sample's pretrained segmenter (make zoo);
    # imagenet / coco: torchvision's published weights (downloaded once)
    weights: Literal["none", "sample-zoo", "imagenet", "coco"] = "sample-zoo"
    # backbone stages kept fixed: 2 = stem and res2 (detectron2's FREEZE_AT, for COCO or
    # ImageNet weights: params-coco.yaml); 0 = train all (from scratch)
    freeze_at: int = Field(default=0, ge=0, le=5)

    @field_validator("freeze_at")
    @classmethod
    def _only_pretrained_layers(cls, value: int, info) -> int:
        if value and info.data.get("weights") == "none":
            raise ValueError("would keep randomly initialised layers fixed; use 0 with "
                             "weights: none")
        return value
    box_batch_size: int = Field(default=32, ge=8)       # RoIs per image, box head (paper: 512)
    detections_per_image: int = Field(default=20, ge=1)  # paper: 100
    # Extra mask loss on ground-truth boxes grown by a random margin up to this fraction
    # of the image side, so the mask head can paint on the grown box that joint training
    # and removal give it (see README, "The mask can grow past its box"). 0 = off.
    grown_box_margin: float = Field(default=0.1, ge=0, le=0.5)
    # Region proposals kept per image after the RPN's NMS (the box head runs on all of
    # them when detecting); defaults: detectron2's, as the paper's PanopticFPN.
    # Anchor sizes in px (at synthesize.image_size), one per FPN level P2..P6; null: 1/32
    # .. 1/2 of the image side, detectron2's 32..512 px scaled from its 800-1333 px input.
    anchor_sizes: list[int] | None = None
    proposals_train: int = Field(default=1000, ge=16)
    proposals_test: int = Field(default=1000, ge=16)
    # 4: ResNet's stem (conv + max pool, P2 at 1/4 of the input); 2: without the max
    # pool, every feature map twice as fine (small inputs: limbs a few px wide)
    stem_stride: Literal[2, 4] = 4
    # the mask head's RoIAlign grid (its mask is twice as fine): detectron2's 14 (28x28
    # masks); channels of its four convs, null: fpn_channels (detectron2: 256)
    mask_resolution: int = Field(default=14, ge=7, le=56)
    mask_head_channels: int | None = Field(default=None, ge=16)
    # backend: detectron2 only: resize the input as detectron2 does for its COCO weights
    # (the short side to input_size_test at test, to a random one of input_sizes_train in
    # training, the long side at most input_max_size); null: the pairs at their own size
    input_sizes_train: list[int] | None = None
    input_size_test: int | None = Field(default=None, ge=32)
    input_max_size: int = Field(default=1333, ge=32)

    @field_validator("input_sizes_train", "input_size_test")
    @classmethod
    def _detectron2_resizes(cls, value, info):
        if value and info.data.get("backend") != "detectron2":
            raise ValueError("only backend: detectron2 resizes its input (the torchvision "
                             "backend takes the pairs at their size); use null")
        return value

    @field_validator("fpn_channels")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value % 32:
            raise ValueError(f"must be a multiple of 32 (got {value})")
        return value


class InpainterParams(_Section):
    width: int = Field(default=16, ge=4)                # channels of the first conv (paper: 64)
    blocks: int = Field(default=4, ge=1)                # dilated residual blocks (paper: 8)
    canny_sigma: float = Field(default=1.0, gt=0)       # edge targets (EdgeConnect: 2 at 256 px)
    vgg_weights: Literal["imagenet", "random"] = "random"  # paper: imagenet
    # what the segmentation inpainter is pretrained on: the pretrained segmenter's class
    # probabilities (what it gets in joint training and after) or one-hot labels of I
    segmentation_input: Literal["segmenter", "labels"] = "segmenter"
    # k of the low-rank path for the C class channels of the segmentation and image
    # inpainters (see maskopt.models.inpainter); null: all C channels through the 7×7
    # convolutions, EdgeConnect's layout.
    class_channels: int | None = Field(default=None, ge=1)  # paper scale: 16


class RandomMaskParams(_Section):
    """The random-pattern masks of the paper's baselines (Tables II, III, V; see
    maskopt.data.random_masks): drawn procedurally, or read from a folder of mask images."""

    source: Literal["procedural", "folder"] = "procedural"
    folder: str | None = None                           # e.g. NVIDIA's irregular mask set
    hole: Literal["white", "black"] = "white"           # which colour of a mask file is the hole
    min_ratio: float = Field(default=0.01, gt=0, lt=1)  # share of the image a hole covers
    max_ratio: float = Field(default=0.40, gt=0, lt=1)

    @field_validator("max_ratio")
    @classmethod
    def _above_min(cls, value: float, info) -> float:
        if value <= info.data.get("min_ratio", 0):
            raise ValueError(f"must exceed min_ratio (got {value})")
        return value


class FinetuneParams(_Section):
    """Table III: the random-mask image inpainter fine-tuned on the first N object pairs."""

    pairs: list[int] = [50, 200, 360]                   # N (paper: 20k, 60k, 100k, 110k)
    steps: int = Field(default=100, ge=1)

    @field_validator("pairs")
    @classmethod
    def _positive_and_distinct(cls, value: list[int]) -> list[int]:
        if any(n < 1 for n in value) or len(set(value)) != len(value):
            raise ValueError(f"must be distinct positive pair counts (got {value})")
        return value


class StageSchedule(_Section):
    steps: int = Field(ge=1)
    lr: float = Field(gt=0)
    batch_size: int = Field(default=4, ge=1)            # per process


class SegmentationSchedule(StageSchedule):
    # the paper: Adam (as PanopticFPN), fine-tuning COCO weights; from scratch the sample
    # takes AdamW with weight decay
    optimizer: Literal["adam", "adamw"] = "adamw"
    weight_decay: float = Field(default=1e-4, ge=0)
    # fractions of the steps at which the lr drops 10x (detectron2's 1x schedule: 60k
    # and 80k of 90k, i.e. [0.667, 0.889]); empty: constant lr
    lr_drops: list[float] = Field(default_factory=list)

    @field_validator("lr_drops")
    @classmethod
    def _fractions_in_order(cls, value: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in value) or value != sorted(value):
            raise ValueError(f"must be increasing fractions of the steps, in (0, 1) "
                             f"(got {value})")
        return value


class InpainterSchedule(StageSchedule):
    """The inpainters' pretraining: ``steps`` for each kind, or a number of steps per kind
    (``{edge: 100, segmentation: 250, image: 250}``), each read off that kind's curve."""

    steps: int | dict[Literal["edge", "segmentation", "image"], int]

    @field_validator("steps")
    @classmethod
    def _every_kind_positive(cls, value):
        per_kind = value if isinstance(value, dict) else {"all": value}
        if isinstance(value, dict) and set(value) != {"edge", "segmentation", "image"}:
            raise ValueError("must give the steps of edge, segmentation and image, or one "
                             "number for all three")
        if any(n < 1 for n in per_kind.values()):
            raise ValueError("must be at least 1")
        return value

    def steps_of(self, kind: str) -> int:
        return self.steps[kind] if isinstance(self.steps, dict) else self.steps


class TrainParams(_Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False                                   # bf16 autocast where fast (device.py)
    # avx2: the same CPU kernels on every x86-64 CPU, so fp32 runs agree bit for bit;
    # native: each library's fastest for the CPU (pipeline/launch.py)
    cpu_kernels: Literal["avx2", "native"] = "avx2"
    workers: int = Field(default=0, ge=0)               # data loader processes per rank
    cache_pairs: bool = True                            # keep loaded pairs in loader memory
    threads: int = Field(default=1, ge=0)               # torch CPU threads (0: torch's default)
    checkpoint_every: int = Field(default=50, ge=1)     # steps
    log_every: int = Field(default=10, ge=1)
    grid_pairs: int = Field(default=6, ge=1)            # training pairs in reports/train/*.png
    d_lr_ratio: float = Field(default=0.1, gt=0)        # discriminator lr / generator lr
    # the sample's schedules; params-coco.yaml has the paper's (docs/method.md)
    segmentation: SegmentationSchedule = SegmentationSchedule(steps=100, lr=1e-4, batch_size=8)
    inpainter: InpainterSchedule = InpainterSchedule(
        steps={"edge": 100, "segmentation": 250, "image": 250}, lr=3e-4, batch_size=8)
    joint: StageSchedule = StageSchedule(steps=70, lr=1e-4, batch_size=8)
    mask_expansion: bool = True                         # False: the paper's "w/o MEL" ablation


class EvaluateParams(_Section):
    dilations: list[int] = [-1, 0, 1, 2, 3, 4]  # px of the pairs (Table I: -2 … 8 at 256 px)
    # px the pretrained mask is grown by, against the learned mask (best d chosen on the
    # validation pairs: reports/fixed_dilation.md)
    fixed_dilations: list[int] = [0, 1, 2, 3, 4, 5, 6]
    grid_pairs: int = Field(default=8, ge=1)            # test pairs shown in reports/grids
    # name -> command of an external inpainter (maskopt.evaluation.external), scored on
    # the pretrained segmenter's mask like the paper's baselines (Table V)
    external_inpainters: dict[str, str] = Field(default_factory=dict)
    # a folder of EdgeConnect's published checkpoints (EdgeModel_gen.pth,
    # InpaintingModel_gen.pth): Table V's EdgeC; null leaves its column "–"
    edgeconnect_weights: str | None = None

    @field_validator("fixed_dilations")
    @classmethod
    def _growing(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 0 or len(set(value)) != len(value):
            raise ValueError(f"needs distinct dilations >= 0 px (got {value})")
        return sorted(value)

    @field_validator("external_inpainters")
    @classmethod
    def _plain_names(cls, value: dict) -> dict:
        bad = [k for k in value if not k.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"names may hold letters, digits, - and _ only: {bad}")
        return value


class Params(_Section):
    # Top-level so that `dvc exp run -S alpha=0.05` works verbatim.
    alpha: float = Field(default=0.03, ge=0, le=1)
    seed: int = Field(default=0, ge=0)
    data: DataParams = DataParams()
    sample: SampleParams = SampleParams()
    synthesize: SynthesizeParams = SynthesizeParams()
    loss: LossParams = LossParams()
    segmenter: SegmenterParams = SegmenterParams()
    inpainter: InpainterParams = InpainterParams()
    random_masks: RandomMaskParams = RandomMaskParams()
    finetune: FinetuneParams = FinetuneParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()


def _one_line(error: ValidationError, path: Path) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{key}: {message} (got {item.get('input')!r})")
    return f"{path}: invalid params: " + "; ".join(problems)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params; raise MaskoptError with one readable line."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise MaskoptError(f"{path}: params file not found") from exc
    except yaml.YAMLError as exc:
        raise MaskoptError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise MaskoptError(f"{path}: expected a mapping of params, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise MaskoptError(_one_line(exc, path)) from exc
