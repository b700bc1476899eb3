"""Which fraud model a replica serves: the registry's ``champion`` by default, a pinned version,
or a model directory (``CARTWISE_FRAUD_MODEL``; ``fraud.model`` in the deployment's
``user_config`` overrides it without a restart)."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.errors import CartwiseError
from engine.fraud.model import FraudModel
from serving.settings import Settings

log = logging.getLogger(__name__)


def load_fraud_model(settings: Settings, spec: str | None = None) -> FraudModel | None:
    """The model named by ``spec`` (default ``settings.fraud_model``), or None (logged) when
    there is none yet: scoring then answers 503 ``model_unavailable`` until one is trained."""
    spec = spec or settings.fraud_model
    path = Path(spec)
    if path.is_dir():
        return FraudModel.load(path)
    from training.fraud.registry import ModelRegistry

    registry = ModelRegistry(
        settings.resolved_mlflow_uri(), settings.mlflow_artifacts(), settings.fraud_model_name
    )
    try:
        directory = registry.fetch(spec, settings.data_dir / "models")
    except CartwiseError as exc:
        log.warning("no fraud model %r: %s", spec, exc.message)
        return None
    model = FraudModel.load(directory)
    log.info("fraud model %s loaded from %s", model.version, directory)
    return model
