"""The three training stages, as functions the thin scripts in stages/ call.

Each stage: validate inputs (missing upstream models name the stage that makes
them), open the MLflow run (failing fast on an unwritable store), train with
resume, then on rank 0 write the model file, the metrics JSON and an image grid.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from maskopt.core.device import pin_threads, to_device
from maskopt.core.errors import MaskoptError
from maskopt.core.io import write_json, write_png
from maskopt.data.pairs import FirstPairs, PairDataset, batches
from maskopt.models.build import (
    INPAINTERS,
    build,
    inpainter_config,
    load_model,
    load_state,
    restore,
    save_model,
    segmenter_config,
)
from maskopt.models.inpainter_kinds import KINDS
from maskopt.pipeline.layout import (
    CHECKPOINTS,
    CURVES,
    JOINT_FILE,
    JOINT_WITHOUT_MEL_FILE,
    PAIRS,
    RUN_ONLY,
    SEGMENTER_FILE,
    STAGE_PARAMS,
    TRAIN_REPORTS,
    finetuned_file,
    inpainter_file,
)
from maskopt.pipeline.params import Params
from maskopt.pipeline.tracking import (
    model_alias,
    model_version_tags,
    open_stage_run,
    pick_params,
)
from maskopt.training import distributed
from maskopt.training.checkpoint import fingerprint
from maskopt.training.loop import make_loader, train
from maskopt.training.tasks import (
    InpainterTask,
    JointTask,
    SegmentationTask,
    training_bf16,
)

MASK_KINDS = ("object", "random")  # what the inpainters are pretrained on
REGISTERED_MODEL = "maskopt-joint"  # in MLflow's model registry, one version per run


def _prepare(params: Params) -> distributed.Context:
    ctx = distributed.setup(params.train.device)
    pin_threads(params.train.threads)
    torch.manual_seed(params.seed + ctx.rank)
    if params.inpainter.vgg_weights == "random":
        warnings.filterwarnings("once", message=".*random VGG19.*")
    return ctx


def training_profile(params: Params, train_pairs: int, precision: str) -> dict:
    """How a model file was trained, stored in it (``maskopt info`` prints it, ``maskopt
    remove`` warns when the data were the synthetic sample)."""
    t = params.train
    return {"data_source": params.data.source, "image_size": params.synthesize.image_size,
            "train_pairs": train_pairs, "seed": params.seed, "precision": precision,
            "steps": {"segmentation": t.segmentation.steps, "inpainter": t.inpainter.steps,
                      "joint": t.joint.steps}}


def _finish(name: str, summary: dict, curve: list[dict], grid, run, ctx) -> None:
    if not ctx.is_main:
        return
    slug = name.replace("@", "_")
    write_json(TRAIN_REPORTS / f"{slug}.json", summary)
    write_json(CURVES / f"{slug}.json", curve)
    write_png(TRAIN_REPORTS / f"{slug}.png", grid)
    run.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float)})
    run.log_image(grid, f"{slug}.png")


def _grid_batch(dataset: PairDataset, count: int, device) -> dict:
    return to_device(next(batches(dataset, count, count)), device)


def training_pairs(params: Params, masks: str = "object", first: int | None = None):
    """The training pairs as a stage learns from them: with the pasted persons' masks,
    or (``masks="random"``) with random holes over I_G; all of them, or the ``first``."""
    dataset = PairDataset(PAIRS / "train", params.inpainter.canny_sigma, flip=True,
                          seed=params.seed, cache=params.train.cache_pairs)
    if first is not None:
        dataset = FirstPairs(dataset, first)
    if masks == "random":  # imported here: only this stage depends on it (dvc.yaml)
        from maskopt.data.random_masks import RandomMaskPairs, random_masks

        r = params.random_masks
        dataset = RandomMaskPairs(dataset, random_masks(r.source, params.seed, r.min_ratio,
                                                        r.max_ratio, r.folder, r.hole))
    return dataset


def _run_stage(name: str, params: Params, task_factory, steps: int, batch_size: int,
               upstream: list[Path], save, dataset=None, experiment: Params | None = None
               ) -> dict:
    """``experiment``: the params of the experiment the stage belongs to, where the
    stage changes them (the w/o-MEL ablation): its MLflow parent is that experiment's."""
    ctx = _prepare(params)
    dumped = params.model_dump()
    config = pick_params(dumped, tuple(STAGE_PARAMS[name.split("@")[0]]))  # what it depends on
    settings = pick_params(dumped, tuple(RUN_ONLY))  # logged; a change keeps the checkpoint
    dataset = training_pairs(params) if dataset is None else dataset
    precision = "bf16" if training_bf16(params, ctx) else "fp32"
    try:
        with open_stage_run(name, {**config, **settings},
                            pick_params((experiment or params).model_dump()),
                            enabled=ctx.is_main, precision=precision) as run:
            task = task_factory(ctx, dataset)
            loader = make_loader(dataset, ctx, batch_size, params.train.workers, params.seed)
            checkpoint = CHECKPOINTS / f"{name.replace('@', '_')}.pt"
            summary = train(task, loader, steps=steps, ctx=ctx, checkpoint=checkpoint,
                            fingerprint=fingerprint({"stage": name, **config}, upstream),
                            checkpoint_every=params.train.checkpoint_every,
                            log_every=params.train.log_every, run=run, desc=name)
            if ctx.is_main:
                save(task, run, training_profile(params, len(dataset), precision))
                curve = summary.pop("curve")
                summary["precision"] = precision
                grid = task.grid(_grid_batch(dataset, params.train.grid_pairs, ctx.device))
                _finish(name, summary, curve, grid, run, ctx)
                # The model is out: a later run (new code, new inputs) starts afresh.
                checkpoint.unlink(missing_ok=True)
        return summary
    finally:
        distributed.teardown()


def pretrain_segmentation(params: Params) -> dict:
    def factory(ctx, dataset):
        tax = dataset.taxonomy
        config = segmenter_config(params, tax.num_things, tax.num_classes,
                                  tax.thing_category_ids, list(tax.categories))
        factory.config, factory.taxonomy = config, tax
        return SegmentationTask(build(config), params, ctx)

    def save(task, run, profile):
        save_model(SEGMENTER_FILE, {"segmenter": (factory.config, task.segmenter)},
                   taxonomy=list(factory.taxonomy.categories),
                   trained_on=profile)

    schedule = params.train.segmentation
    return _run_stage("pretrain_segmentation", params, factory, schedule.steps,
                      schedule.batch_size, [], save)


def pretrain_inpainter(params: Params, kind: str, masks: str = "object") -> dict:
    """One inpainter, trained on the pairs' object masks M_G (the method's) or on random
    masks over I_G (``masks="random"``: the paper's baselines, Table II)."""
    if masks not in MASK_KINDS:
        raise MaskoptError(f"masks must be one of {', '.join(MASK_KINDS)} (got {masks!r})")
    stage = "pretrain_inpainter" if masks == "object" else f"pretrain_inpainter_{masks}"
    schedule = params.train.inpainter
    return _train_inpainter(f"{stage}@{kind}", params, kind, inpainter_file(kind, masks),
                            schedule.steps_of(kind), training_pairs(params, masks))


def finetune_inpainter(params: Params, pairs: int) -> dict:
    """Table III: the image inpainter trained on random masks, fine-tuned on the first
    ``pairs`` object-mask training pairs for ``finetune.steps`` steps (the edge and
    segmentation inpainters stay the random-mask ones: the image inpainter is the one
    whose output is scored, and fine-tuning one network is the cheaper experiment)."""
    start = inpainter_file("image", "random")
    return _train_inpainter(f"finetune_inpainter@{pairs}", params, "image",
                            finetuned_file(pairs), params.finetune.steps,
                            training_pairs(params, first=pairs),
                            init_from=(start, "pretrain_inpainter_random@image"))


def _train_inpainter(name: str, params: Params, kind: str, model_file: Path, steps: int,
                     dataset, init_from: tuple[Path, str] | None = None) -> dict:
    """Train one inpainter with its own losses; ``init_from``: (model file, the stage
    that makes it) whose generator and discriminator it starts from. The segmentation
    inpainter learns on the pretrained segmenter's class probabilities
    (``inpainter.segmentation_input``), the input it gets in joint training."""
    start = None if init_from is None else load_model(*init_from)  # fails before training
    upstream = [] if init_from is None else [init_from[0]]
    class_input = None
    if KINDS[kind].reads_classes and params.inpainter.segmentation_input == "segmenter":
        saved = load_model(SEGMENTER_FILE, "pretrain_segmentation")["networks"]["segmenter"]
        class_input = restore(saved, source=str(SEGMENTER_FILE))
        upstream.append(SEGMENTER_FILE)

    def factory(ctx, dataset):
        config = inpainter_config(params, kind, dataset.taxonomy.num_classes)
        factory.config = config
        task = InpainterTask(kind, build(config), params, ctx, dataset.taxonomy.num_classes,
                             class_input)
        if start is not None:
            source = str(init_from[0])
            load_state(task.generator, start["networks"]["generator"]["state_dict"], source)
            load_state(task.discriminator, start["networks"]["discriminator"]["state_dict"],
                       source)
        return task

    def save(task, run, profile):
        d_config = {"kind": "discriminator", "in_channels": task.discriminator.in_channels,
                    "width": params.inpainter.width}
        save_model(model_file, {"generator": (factory.config, task.generator),
                                "discriminator": (d_config, task.discriminator)},
                   trained_on=profile)

    return _run_stage(name, params, factory, steps, params.train.inpainter.batch_size,
                      upstream, save, dataset)


def train_joint(params: Params, without_mel: bool = False) -> dict:
    """Joint training with the mask expansion loss as ``train.mask_expansion`` says, or
    (``without_mel``) the paper's "w/o MEL" ablation beside it, from the same pretrained
    networks and params: stage ``train_joint_without_mel`` → models/joint_without_mel.pt."""
    name, model_file, experiment = "train_joint", JOINT_FILE, params
    if without_mel:
        name, model_file = "train_joint_without_mel", JOINT_WITHOUT_MEL_FILE
        params = params.model_copy(update={"train": params.train.model_copy(
            update={"mask_expansion": False})})
    upstream = [SEGMENTER_FILE, *(inpainter_file(k) for k in INPAINTERS)]
    made_by = {SEGMENTER_FILE: "pretrain_segmentation",
               **{inpainter_file(k): f"pretrain_inpainter@{k}" for k in INPAINTERS}}
    saved = {path: load_model(path, made_by[path]) for path in upstream}  # fails early

    def factory(ctx, dataset):
        tax = dataset.taxonomy
        seg_entry = saved[SEGMENTER_FILE]["networks"]["segmenter"]
        expected = segmenter_config(params, tax.num_things, tax.num_classes,
                                    tax.thing_category_ids, list(tax.categories))
        segmenter = restore(seg_entry, expected, str(SEGMENTER_FILE))
        generators, discriminators, configs = {}, {}, {"segmenter": seg_entry["config"]}
        for kind in INPAINTERS:
            nets = saved[inpainter_file(kind)]["networks"]
            expected = inpainter_config(params, kind, tax.num_classes)
            generators[kind] = restore(nets["generator"], expected, str(inpainter_file(kind)))
            discriminators[kind] = restore(nets["discriminator"], None, str(inpainter_file(kind)))
            configs[kind] = nets["generator"]["config"]
        factory.configs = configs
        return JointTask(segmenter, generators, discriminators, params, ctx, tax.num_classes)

    def save(task, run, profile):
        nets = {"segmenter": (factory.configs["segmenter"], task.segmenter),
                **{k: (factory.configs[k], task.g[k]) for k in INPAINTERS}}
        save_model(model_file, nets, alpha=params.alpha, box_margin=task.margin,
                   canny_sigma=params.inpainter.canny_sigma,
                   mask_expansion=params.train.mask_expansion,
                   taxonomy=saved[SEGMENTER_FILE].get("taxonomy", []),
                   trained_on=profile)
        if run.active and not without_mel:  # the registry holds the models users run
            from maskopt.removal.mlflow_model import log_joint_model  # imports mlflow's pyfunc

            log_joint_model(JOINT_FILE, REGISTERED_MODEL,
                            model_version_tags(params.alpha, profile["precision"]),
                            model_alias())

    schedule = params.train.joint
    return _run_stage(name, params, factory, schedule.steps, schedule.batch_size, upstream,
                      save, experiment=experiment)
