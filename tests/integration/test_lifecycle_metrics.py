"""What a replica's model follower tells Prometheus: the version it serves (a directory spec,
the real fraud model) and the polls that could not load what they name."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine.fraud.model import FraudModel
from engine.rollout import Rollout
from serving.lifecycle import Follower
from serving.metrics import MODEL_REFRESH_ERRORS, MODEL_SERVED

pytestmark = pytest.mark.integration


def _value(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


def test_served_versions_and_failed_loads_are_counted(
    fraud_model_dir: Path, tmp_path: Path
) -> None:
    applied: list[Rollout[Any]] = []
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    # a directory spec never asks the registry anything but its name
    registry = SimpleNamespace(name="cartwise-fraud-test")
    follower = Follower(
        "fraud-test",
        str(broken),
        registry,
        tmp_path,
        FraudModel.load,
        applied.append,  # type: ignore[arg-type]
    )
    errors = _value(MODEL_REFRESH_ERRORS, "fraud-test")
    assert follower.refresh() is False and follower.error
    assert _value(MODEL_REFRESH_ERRORS, "fraud-test") == errors + 1
    assert not applied

    follower.spec = str(fraud_model_dir)
    assert follower.refresh() is True and applied
    name = fraud_model_dir.name  # a directory is labelled by its name, never its path
    assert _value(MODEL_SERVED, "fraud-test", "champion", name) == 1

    other = tmp_path / "v2"
    other.symlink_to(fraud_model_dir, target_is_directory=True)
    follower.spec = str(other)
    assert follower.refresh() is True
    assert _value(MODEL_SERVED, "fraud-test", "champion", "v2") == 1
    assert _value(MODEL_SERVED, "fraud-test", "champion", name) == 0
