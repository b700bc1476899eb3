"""The deployment's ``user_config`` (serving/config.yaml) applied by ``reconfigure``: policy
and model changes without a restart, all or nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ValidationError
from serving.deployment import CartwiseApi

pytestmark = pytest.mark.integration
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_FRAUD", "redis://127.0.0.1:6379/10")


@pytest.fixture
def replica(tmp_path: Path, fraud_model_dir: Path) -> Any:
    # the class as written (Serve wraps it for HTTP ingress; the wrapper starts an ASGI app)
    cls = next(c for c in CartwiseApi.func_or_class.__mro__ if "reconfigure" in vars(c))
    api = cls.__new__(cls)
    cls.__init__(
        api, {"data_dir": str(tmp_path), "redis_url": URL, "fraud_model": str(fraud_model_dir)}
    )
    yield api
    api.container.close()


def test_reconfigure_applies_the_policy_and_loads_a_model_only_when_it_changes(
    replica: Any, fraud_model_dir: Path, tmp_path: Path
) -> None:
    service = replica.container.fraud
    started = service.model
    assert started is not None
    config = {"fraud": {"model": str(fraud_model_dir), "elevated_at": 10, "highest_at": 20}}
    replica.reconfigure(config)  # Serve's call right after start: the model bootstrap loaded
    assert (service.policy.elevated_at, service.policy.highest_at) == (10, 20)
    assert service.model is started
    replica.reconfigure(config)  # the same directory again: nothing to load
    assert service.model is started
    other = tmp_path / "other-model"
    shutil.copytree(fraud_model_dir, other)
    replica.reconfigure({"fraud": {"model": str(other)}})  # another model: loaded and swapped
    assert service.model is not started and service.model.version == started.version
    assert replica.container.lifecycle.status()["fraud"]["champion"] == str(other)


def test_a_bad_user_config_changes_nothing(replica: Any) -> None:
    service = replica.container.fraud
    policy, model = service.policy, service.model
    with pytest.raises(ValidationError) as err:
        replica.reconfigure({"fraud": {"model": "/nowhere", "elevated_at": 90, "highest_at": 80}})
    assert err.value.field == "elevated_at"
    assert service.policy is policy and service.model is model
