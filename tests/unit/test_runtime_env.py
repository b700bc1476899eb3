"""The environment ``serving.runtime.start_ray`` gives Ray and Serve before they start."""

from __future__ import annotations

import os

import pytest
import ray

from serving.runtime import start_ray
from serving.settings import Settings

pytestmark = pytest.mark.unit
DRAIN = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"
SET = (
    DRAIN,
    "RAY_SERVE_ENABLE_HA_PROXY",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED",
    "RAY_worker_niceness",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
    "RAY_USAGE_STATS_ENABLED",
)


@pytest.fixture
def joined(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Ray counts as started: start_ray sets the environment and returns."""
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    for name in SET:  # unset now, and whatever start_ray sets is undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


def test_haproxy_ingress_drains_a_stopping_replica_for_2_s(joined: pytest.MonkeyPatch) -> None:
    start_ray(Settings(ingress="haproxy"))
    assert os.environ[DRAIN] == "2"
    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert os.environ["RAY_worker_niceness"] == "0"  # noqa: SIM112 (Ray spells it so)


def test_an_operators_drain_period_is_kept(joined: pytest.MonkeyPatch) -> None:
    joined.setenv(DRAIN, "30")
    start_ray(Settings(ingress="haproxy"))
    assert os.environ[DRAIN] == "30"
