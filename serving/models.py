"""Which models a replica serves: the registry's ``champion`` by default, a pinned version, or a
model directory (``CARTWISE_FRAUD_MODEL`` / ``CARTWISE_RECS_MODEL``; ``fraud.model`` /
``recs.model`` in the deployment's ``user_config`` override them without a restart)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import CartwiseError, ValidationError
from engine.fraud.model import FraudModel
from engine.recommend.artifact import RecModel
from serving.settings import Settings

if TYPE_CHECKING:
    from training.fraud.registry import ModelRegistry

log = logging.getLogger(__name__)


def load_fraud_model(settings: Settings, spec: str | None = None) -> FraudModel | None:
    """The model named by ``spec`` (default ``settings.fraud_model``), or None (logged) when
    there is none yet: scoring then answers 503 ``model_unavailable`` until one is trained."""
    directory = _resolve(settings, spec or settings.fraud_model, "fraud")
    if directory is None:
        return None
    model = FraudModel.load(directory)
    log.info("fraud model %s loaded from %s", model.version, directory)
    return model


def load_rec_model(settings: Settings, spec: str | None = None) -> RecModel | None:
    """The recommender named by ``spec`` (default ``settings.recs_model``), or None (logged):
    widgets then serve trending items only, flagged ``degraded``."""
    directory = _resolve(settings, spec or settings.recs_model, "recs")
    if directory is None:
        return None
    model = RecModel.load(directory)
    log.info("recommender %s loaded from %s", model.version, directory)
    return model


def registry(settings: Settings, name: str) -> ModelRegistry:
    """The registry of a kind (``fraud``, ``recs``, ``pricing``) or of its registered name."""
    return registry_for(settings, name)[1]


def registry_for(settings: Settings, name: str) -> tuple[str, ModelRegistry]:
    """(kind, registry) for a kind or a registered model's name; ``ValidationError`` (field
    ``name``) for anything else."""
    from training.fraud.registry import ModelRegistry
    from training.pricing.train import PricingRegistry
    from training.recommend.artifact import RecsRegistry

    names: dict[str, tuple[type[ModelRegistry], str]] = {
        "fraud": (ModelRegistry, settings.fraud_model_name),
        "recs": (RecsRegistry, settings.recs_model_name),
        "pricing": (PricingRegistry, settings.pricing_model_name),
    }
    for kind, (cls, registered) in names.items():
        if name in (kind, registered):
            return kind, cls(
                settings.resolved_mlflow_uri(), settings.mlflow_artifacts(), registered
            )
    known = ", ".join(f"{k} ({n})" for k, (_, n) in names.items())
    raise ValidationError(f"no model {name!r}; one of {known}", field="name")


def model_dir(settings: Settings, registry: ModelRegistry) -> Path:
    """Where a registered model's versions are downloaded."""
    return settings.data_dir / "models" / registry.name


def _resolve(settings: Settings, spec: str, kind: str) -> Path | None:
    path = Path(spec)
    if path.is_dir():
        return path
    found = registry(settings, kind)
    try:
        return found.fetch(spec, model_dir(settings, found))
    except CartwiseError as exc:
        log.warning("no %s model %r: %s", found.name, spec, exc.message)
        return None
