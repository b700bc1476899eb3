"""Which models a replica serves: the registry's ``champion`` by default, a pinned version, or a
model directory (``CARTWISE_FRAUD_MODEL`` / ``CARTWISE_RECS_MODEL``; ``fraud.model`` /
``recs.model`` in the deployment's ``user_config`` override them without a restart)."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.errors import CartwiseError
from engine.fraud.model import FraudModel
from engine.recommend.artifact import RecModel
from serving.settings import Settings

log = logging.getLogger(__name__)


def load_fraud_model(settings: Settings, spec: str | None = None) -> FraudModel | None:
    """The model named by ``spec`` (default ``settings.fraud_model``), or None (logged) when
    there is none yet: scoring then answers 503 ``model_unavailable`` until one is trained."""
    directory = _resolve(settings, spec or settings.fraud_model, settings.fraud_model_name)
    if directory is None:
        return None
    model = FraudModel.load(directory)
    log.info("fraud model %s loaded from %s", model.version, directory)
    return model


def load_rec_model(settings: Settings, spec: str | None = None) -> RecModel | None:
    """The recommender named by ``spec`` (default ``settings.recs_model``), or None (logged):
    widgets then serve trending items only, flagged ``degraded``."""
    directory = _resolve(settings, spec or settings.recs_model, settings.recs_model_name, recs=True)
    if directory is None:
        return None
    model = RecModel.load(directory)
    log.info("recommender %s loaded from %s", model.version, directory)
    return model


def _resolve(settings: Settings, spec: str, name: str, *, recs: bool = False) -> Path | None:
    path = Path(spec)
    if path.is_dir():
        return path
    from training.fraud.registry import ModelRegistry
    from training.recommend.artifact import RecsRegistry

    kind = RecsRegistry if recs else ModelRegistry
    registry = kind(settings.resolved_mlflow_uri(), settings.mlflow_artifacts(), name)
    try:
        return registry.fetch(spec, settings.data_dir / "models" / name)
    except CartwiseError as exc:
        log.warning("no %s model %r: %s", name, spec, exc.message)
        return None
