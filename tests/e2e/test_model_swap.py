"""Ray Serve replicas follow the model registry: a promotion and a rollback of the pricing model
(an elasticity fit) reach the running app without a restart while quotes and fraud scores flow,
and none of them fails.

Pricing is the kind the shared Serve app follows through the registry (its fraud model and
recommender are pinned directories, which other tests rely on); the registry is emptied again at
the end, so the app goes back to the newest fit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from serving.settings import Settings
from tests.e2e.conftest import ChannelKeys, bearer
from tests.servers import metric_samples, metric_sum

pytestmark = pytest.mark.e2e


def _cli(settings: Settings, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTWISE_")}
    env |= {
        "CARTWISE_DATA_DIR": str(settings.data_dir),
        "CARTWISE_REDIS_URL": settings.redis_url,
        "CARTWISE_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [str(Path(sys.executable).with_name("cartwise")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def pricing_versions(serve_settings: Settings) -> Iterator[dict[str, str]]:
    """Two registered pricing versions (1 champion, 2 challenger): version -> fit id."""
    from training.pricing.train import PricingRegistry

    registry = PricingRegistry(
        serve_settings.resolved_mlflow_uri(),
        serve_settings.mlflow_artifacts(),
        serve_settings.pricing_model_name,
    )
    try:
        for _ in range(2):
            _cli(serve_settings, "train", "pricing")
        yield {
            v: json.loads(_cli(serve_settings, "models", "show", "pricing", v))["tags"]["fit_id"]
            for v in ("1", "2")
        }
    finally:
        registry.client.delete_registered_model(registry.name)


def _until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """``check`` true five times running (a replica polls every few seconds)."""
    deadline, agreed = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        agreed = agreed + 1 if check() else 0
        if agreed >= 5:
            return
        time.sleep(0.2)
    raise AssertionError(f"serving did not reach: {what}")


def test_serve_follows_promotion_and_rollback_under_traffic(
    api_url: str,
    admin: dict[str, str],
    channel_keys: ChannelKeys,
    serve_settings: Settings,
    pricing_versions: dict[str, str],
) -> None:
    seen: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=api_url, timeout=30) as http:
            skus = [p["sku"] for p in http.get("/v1/products", params={"limit": 5},
                    headers=bearer(channel_keys.secret)).json()["items"]]  # fmt: skip
            while not stop.is_set():
                quote = http.post(
                    "/v1/prices/quote",
                    json={"skus": skus},
                    headers=bearer(next(iter(channel_keys.publishable.values()))),
                )
                score = http.post(
                    "/v1/fraud/score",
                    json={
                        "transaction_id": f"swap-{uuid.uuid4().hex[:12]}",
                        "customer_id": "swap-c1",
                        "amount": 19.5,
                        "currency": "EUR",
                    },
                    headers=bearer(channel_keys.secret),
                )
                seen.extend((quote.status_code, score.status_code))

    def serving(version: str) -> Callable[[], bool]:
        def check() -> bool:
            health = httpx.get(f"{api_url}/healthz", timeout=10).json()["models"]["pricing"]
            fit = httpx.get(f"{api_url}/v1/pricing/elasticities", headers=admin, timeout=10)
            return bool(
                health["champion"] == version and fit.json()["fit_id"] == pricing_versions[version]
            )

        return check

    _until(serving("1"), "pricing v1")
    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        _cli(serve_settings, "models", "promote", "pricing", "2")
        _until(serving("2"), "pricing v2 after the promotion")
        _cli(serve_settings, "models", "rollback", "pricing")
        _until(serving("1"), "pricing v1 after the rollback")
    finally:
        stop.set()
        worker.join(30)
    assert seen and set(seen) == {200}, {s: seen.count(s) for s in set(seen)}

    # what each replica serves, for Prometheus: v1 again, v2 no longer
    with httpx.Client(base_url=api_url, timeout=10) as http:
        samples = metric_samples(http, admin)
    served = "cartwise_model_served"
    assert metric_sum(samples, served, kind="pricing", role="champion", version="1") >= 1
    assert metric_sum(samples, served, kind="pricing", role="champion", version="2") == 0
    assert metric_sum(samples, served, kind="fraud", role="champion") >= 1
