"""The joint model as an MLflow pyfunc model, so the UI's model registry can say which
weights belong to which α and a user can load the chosen version:

    model = mlflow.pyfunc.load_model("models:/maskopt-joint@baseline")
    clean = model.predict({"image": rgb, "category": "person"})  # H×W×3 uint8

The model's artifact is the joint model file itself (models/joint.pt); loading builds
a :class:`maskopt.removal.remover.Remover` on it.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np

SELECTIONS = ("point", "box", "category", "rough_mask")


class JointRemoverModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: ``predict({"image": H×W×3 uint8, one of point/box/category/
    rough_mask})`` → the photo with that object removed."""

    def load_context(self, context) -> None:
        from maskopt.removal.remover import Remover

        self.remover = Remover(context.artifacts["joint"])

    def predict(self, context, model_input, params=None):  # no hints: MLflow reads them as a schema
        image = np.asarray(model_input["image"], dtype=np.uint8)
        chosen = {k: model_input[k] for k in SELECTIONS if model_input.get(k) is not None}
        return self.remover(image, **chosen).image


def log_joint_model(model_file: str | Path, registered_name: str,
                    tags: dict[str, str] | None = None, alias: str | None = None) -> None:
    """Log ``model_file`` in the active run as a pyfunc model, registered as a new
    version of ``registered_name`` with ``tags`` and, when given, the ``alias`` (which
    then points at this version). Requirements are given, not inferred: inference
    would load the model and pip-freeze the environment, for minutes."""
    from importlib.metadata import version

    info = mlflow.pyfunc.log_model(
        name="joint_model", python_model=JointRemoverModel(),
        artifacts={"joint": str(model_file)}, registered_model_name=registered_name,
        pip_requirements=[f"maskopt=={version('maskopt')}", f"torch=={version('torch')}",
                          f"torchvision=={version('torchvision')}"])
    client = mlflow.MlflowClient()
    for key, value in (tags or {}).items():
        client.set_model_version_tag(registered_name, info.registered_model_version, key, value)
    if alias:
        client.set_registered_model_alias(registered_name, alias, info.registered_model_version)
