"""MLflow tracking: one parent run per DVC experiment, one child run per stage.

The store is ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlflow.db`` in the
working directory (the project root under `dvc repro` / `dvc exp run`). The parent
run is named after ``DVC_EXP_NAME`` (set by `dvc exp run`), or ``workspace`` for a
plain `dvc repro`; stages find it by that name, so all stages of one experiment sit
under one parent in the UI. :func:`open_stage_run` touches the store before any
training, so a store that cannot be written fails in seconds, not after hours.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from maskopt.errors import MaskoptError

EXPERIMENT = "maskopt"
DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def experiment_name() -> str:
    return os.environ.get("DVC_EXP_NAME") or "workspace"


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

    def __init__(self, client=None, run_id: str | None = None):
        self.client, self.run_id = client, run_id

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.active:
            import mlflow

            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.active:
            import mlflow

            mlflow.set_tags(dict(tags))

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        if self.active:
            import mlflow

            mlflow.log_artifact(str(path), folder)

    def log_image(self, image, name: str) -> None:
        """Log an H×W×3 uint8 array as a PNG artifact."""
        if self.active:
            from maskopt.io import write_png

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / name
                write_png(path, image)
                self.log_artifact(path, "images")


def _parent_run_id(client, experiment_id: str, name: str) -> str:
    found = client.search_runs([experiment_id],
                               filter_string=f"tags.`maskopt.parent` = '{name}'",
                               max_results=1, order_by=["attributes.start_time DESC"])
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=name,
                            tags={"maskopt.parent": name, "dvc.exp_name": name})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@contextmanager
def open_stage_run(stage: str, params: Mapping, enabled: bool = True) -> Iterator[StageRun]:
    """A child MLflow run for ``stage`` under the experiment's parent run."""
    if not enabled:
        yield StageRun()
        return
    logging.getLogger("alembic").setLevel(logging.WARNING)
    import mlflow

    uri = tracking_uri()
    try:
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.set_experiment(EXPERIMENT)
        client = mlflow.MlflowClient(uri)
        parent = _parent_run_id(client, experiment.experiment_id, experiment_name())
    except Exception as exc:  # noqa: BLE001 - any store failure, reported before training
        raise MaskoptError(f"MLflow store {uri} cannot be used ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); set "
                           "MLFLOW_TRACKING_URI to a writable store") from exc
    with mlflow.start_run(run_name=f"{stage}", parent_run_id=parent,
                          tags={"maskopt.stage": stage, "dvc.exp_name": experiment_name()}) as run:
        flat = flatten(params)
        for start in range(0, len(flat), 90):  # MLflow takes at most 100 params per call
            mlflow.log_params(dict(list(flat.items())[start:start + 90]))
        yield StageRun(client, run.info.run_id)
