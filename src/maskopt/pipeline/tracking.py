"""MLflow tracking: one parent run per DVC experiment, one child run per stage.

The store is ``MLFLOW_TRACKING_URI`` when set, else ``mlflow.db`` in the project's
workspace — also for queued experiments, which DVC runs in a copy of the project
under ``.dvc/tmp/exps/``: their runs land beside the others. The parent run is named
after ``DVC_EXP_NAME`` (set by `dvc exp run`), or ``workspace`` for a plain `dvc
repro`; it carries the experiment's key params (α, MEL, λ, sizes, data source) and,
once evaluated, its headline metrics, and stages find it by name and key params, so
all stages of one experiment sit under one parent. Child runs are named
``<experiment>/<stage>``; every run is tagged with the git commit and DVC experiment.
:func:`open_stage_run` touches the store before any training, so a store that cannot
be written fails in seconds, not after hours.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from maskopt.core.errors import MaskoptError

EXPERIMENT = "maskopt"
STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
STORE_LOCK = "mlflow.db.lock"
# What tells experiments apart in the UI; the parent run carries these.
KEY_PARAMS = ("alpha", "train.mask_expansion", "loss", "seed", "data.source",
              "synthesize.image_size", "segmenter.depth", "inpainter.width",
              "inpainter.blocks", "train.joint.steps", "train.joint.lr")
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",  # the UI's model-training view
    "mlflow.note.content": "maskopt: joint segmentation + inpainting with the mask "
                           "expansion loss. One parent run per DVC experiment (key params "
                           "and headline metrics), one child run per stage.",
}


def workspace_root(cwd: Path | None = None) -> Path:
    """The project's workspace, also from inside a queued experiment's copy of it
    (``<workspace>/.dvc/tmp/exps/<tmp>/``)."""
    cwd = (cwd or Path.cwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def _workspace_uri() -> str:
    return f"sqlite:///{workspace_root() / STORE_FILE}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or _workspace_uri()


def pick_params(dumped: Mapping, keys: tuple[str, ...] = KEY_PARAMS) -> dict:
    """The dotted ``keys`` of a (nested) params dict, e.g. ``Params.model_dump()``."""
    picked = {}
    for key in keys:
        value = dumped
        for part in key.split("."):
            value = value[part]
        picked[key] = value
    return picked


def git_commit() -> str | None:
    """The commit the run's code is at: DVC's baseline for an experiment, else HEAD."""
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        return os.environ["DVC_EXP_BASELINE_REV"]
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def experiment_name() -> str:
    return os.environ.get("DVC_EXP_NAME") or "workspace"


def model_alias(name: str | None = None) -> str:
    """The registered model's alias for experiment ``name`` (default: this one):
    ``models:/maskopt-joint@<alias>`` loads that experiment's newest joint model."""
    alias = re.sub(r"[^\w-]", "-", name or experiment_name())
    # MLflow reserves "latest" and "v<N>" (version numbers)
    return f"exp-{alias}" if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias) \
        else alias


def model_version_tags(alpha: float, precision: str) -> dict[str, str]:
    """What tells registered joint models apart in the registry."""
    return {"alpha": str(alpha), "experiment": experiment_name(),
            "commit": git_commit() or "unknown", "precision": precision}


def flatten(params: Mapping, prefix: str = "") -> dict[str, str]:
    """{'a': {'b': 1}} → {'a.b': '1'}, the form MLflow's params table shows."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


class StageRun:
    """What a stage logs; a no-op on ranks other than 0 (``active=False``)."""

    def __init__(self, client=None, run_id: str | None = None, parent_id: str | None = None):
        self.client, self.run_id, self.parent_id = client, run_id, parent_id

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.active:
            import mlflow

            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_parent_metrics(self, metrics: Mapping[str, float]) -> None:
        """Metrics on the experiment's parent run (what the runs table compares)."""
        if self.active:
            from mlflow.entities import Metric

            now = int(1000 * time.time())
            self.client.log_batch(self.parent_id, metrics=[
                Metric(k, float(v), now, 0) for k, v in metrics.items()])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.active:
            import mlflow

            mlflow.set_tags(dict(tags))

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        if self.active:
            import mlflow

            mlflow.log_artifact(str(path), folder)

    def log_table(self, columns: Mapping[str, list], name: str) -> None:
        """A table (column → values) as a JSON artifact MLflow's UI shows as a table."""
        if self.active:
            import mlflow

            mlflow.log_table(dict(columns), name)

    def log_image(self, image, name: str) -> None:
        """Log an H×W×3 uint8 array as a PNG artifact."""
        if self.active:
            from maskopt.core.io import write_png

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / name
                write_png(path, image)
                self.log_artifact(path, "images")


def _params_hash(params: Mapping) -> str:
    return hashlib.sha1(json.dumps(flatten(params), sort_keys=True).encode()).hexdigest()[:12]


def _parent_run_id(client, experiment_id: str, name: str, params: Mapping,
                   tags: Mapping[str, str]) -> str:
    """The parent run of experiment ``name`` with these key params (a workspace rerun
    with other params gets a parent of its own: MLflow params cannot change)."""
    digest = _params_hash(params)
    found = client.search_runs(
        [experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
        filter_string=f"tags.`maskopt.parent` = '{name}' and tags.`maskopt.params` = '{digest}'")
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=name,
                            tags={"maskopt.parent": name, "maskopt.params": digest, **tags})
    from mlflow.entities import Param

    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in flatten(params).items()])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _store_setup_lock():
    """Stages run side by side (`maskopt repro`) must not both create the store's tables,
    the experiment or the parent run: one process at a time sets them up."""
    from filelock import FileLock

    return FileLock(str(workspace_root() / STORE_LOCK), timeout=600)


def _experiment_and_parent(uri: str, name: str, key_params: Mapping | None,
                           tags: Mapping[str, str]):
    import mlflow

    client = mlflow.MlflowClient(uri)
    if client.get_experiment_by_name(EXPERIMENT) is None and uri == _workspace_uri():
        # artifacts beside the store, not in the copy a queued experiment runs in
        client.create_experiment(EXPERIMENT,
                                 (workspace_root() / ARTIFACTS_DIR).resolve().as_uri())
    experiment = mlflow.set_experiment(EXPERIMENT)
    for key, value in EXPERIMENT_TAGS.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    parent = _parent_run_id(client, experiment.experiment_id, name, key_params or {}, tags)
    return client, parent


@contextmanager
def open_stage_run(stage: str, params: Mapping, key_params: Mapping | None = None,
                   enabled: bool = True, precision: str | None = None) -> Iterator[StageRun]:
    """A child MLflow run ``<experiment>/<stage>`` logging ``params``, under the
    experiment's parent run, which carries ``key_params`` (see :data:`KEY_PARAMS`).
    ``precision`` (a training stage's "bf16" or "fp32") tags both. The parent's end
    time follows its last child's, so it spans the experiment."""
    if not enabled:
        yield StageRun()
        return
    logging.getLogger("alembic").setLevel(logging.WARNING)
    import mlflow

    uri = tracking_uri()
    name = experiment_name()
    tags = {"dvc.exp_name": name}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if precision:
        tags["maskopt.precision"] = precision
    try:
        mlflow.set_tracking_uri(uri)
        with _store_setup_lock():
            client, parent = _experiment_and_parent(uri, name, key_params, tags)
            if precision:  # the parent may have been made by a stage that trains nothing
                client.set_tag(parent, "maskopt.precision", precision)
    except Exception as exc:  # noqa: BLE001 - any store failure, reported before training
        raise MaskoptError(f"MLflow store {uri} cannot be used ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); set "
                           "MLFLOW_TRACKING_URI to a writable store") from exc
    with mlflow.start_run(run_name=f"{name}/{stage}", parent_run_id=parent,
                          tags={"maskopt.stage": stage, **tags}) as run:
        flat = flatten(params)
        for start in range(0, len(flat), 90):  # MLflow takes at most 100 params per call
            mlflow.log_params(dict(list(flat.items())[start:start + 90]))
        yield StageRun(client, run.info.run_id, parent)
    client.set_terminated(parent, end_time=int(1000 * time.time()))
