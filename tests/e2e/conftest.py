"""One Ray Serve app per test session, driven over real HTTP.

Serve starts on a free loopback port against a fresh SQLite database and the Redis at
``CARTWISE_TEST_REDIS_URL`` (default 127.0.0.1:6379, database 15), serving the fraud model of
the ``fraud_model_dir`` fixture, with channel keys required.

``channel_keys`` (session) are made through the admin API: a publishable key for every channel
of the seeded store, and secret keys for ``CHANNEL`` and ``OTHER_CHANNEL``. The shared ``http``
client sends ``CHANNEL``'s secret key (what a shop's server holds); ``admin`` is the admin
token's header.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.settings import Settings
from tests.servers import free_port

ADMIN_TOKEN = "e2e-admin-token"
CHANNEL = "app"  # the channel of the shared client's key
OTHER_CHANNEL = "web-de"


@pytest.fixture(scope="session")
def serve_settings(tmp_path_factory: pytest.TempPathFactory, fraud_model_dir: Path) -> Settings:
    data_dir = tmp_path_factory.mktemp("serve")
    return Settings(
        data_dir=data_dir,
        fraud_model=str(fraud_model_dir),
        recs_model=str(seeded_store_and_recommender(data_dir)),
        redis_url=os.environ.get("CARTWISE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        http_port=free_port(),
        admin_token=ADMIN_TOKEN,
        # Chromium, the replicas and the tests share two cores: a replica's loop runs late for
        # long stretches, and admission control (tests/integration/test_admission.py) would
        # refuse some of the widgets' requests
        max_loop_lag_ms=0,
    )


def seeded_store_and_recommender(data_dir: Path) -> Path:
    """A small demo store in the app's own database, and a recommender trained on it (so the
    model's SKUs are the catalogue's)."""
    from tests.servers import seeded_store_and_recommender
    from training.demo.seed import SeedConfig
    from training.recommend.als import AlsParams

    return seeded_store_and_recommender(
        f"sqlite:///{data_dir / 'cartwise.db'}",
        data_dir / "recs-model",
        seed=SeedConfig(seed=5, customers=300, products=120, merchants=4, days=20),
        als=AlsParams(factors=16, iterations=8, alpha=5.0),
    )


@pytest.fixture(scope="session")
def api_url(serve_settings: Settings) -> Iterator[str]:
    from features.connection import connect
    from serving.runtime import serve_app, shutdown

    client = connect(serve_settings.redis_url, timeout_ms=2000)
    client.flushdb()  # a clean online store: nothing left over from an earlier session
    client.close()
    url = serve_app(serve_settings)
    try:
        yield url
    finally:
        shutdown()


@dataclass(frozen=True)
class ChannelKeys:
    publishable: dict[str, str]  # channel -> its publishable key
    secret: str  # CHANNEL's
    other_secret: str  # OTHER_CHANNEL's


@pytest.fixture(scope="session")
def channel_keys(api_url: str) -> ChannelKeys:
    with httpx.Client(base_url=api_url, timeout=30, headers=bearer(ADMIN_TOKEN)) as client:

        def make(channel: str, kind: str) -> str:
            r = client.post(f"/v1/channels/{channel}/keys", json={"kind": kind})
            assert r.status_code == 201, r.text
            return str(r.json()["key"])

        channels = [c["id"] for c in client.get("/v1/channels").json()]
        assert {CHANNEL, OTHER_CHANNEL} <= set(channels), channels
        return ChannelKeys(
            publishable={c: make(c, "publishable") for c in channels},
            secret=make(CHANNEL, "secret"),
            other_secret=make(OTHER_CHANNEL, "secret"),
        )


@pytest.fixture(scope="session")
def http(api_url: str, channel_keys: ChannelKeys) -> Iterator[httpx.Client]:
    """A shop's server: ``CHANNEL``'s secret key on every request (a test's own
    ``Authorization`` header replaces it)."""
    headers = bearer(channel_keys.secret)
    with httpx.Client(base_url=api_url, timeout=30, headers=headers) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    """The ``Authorization`` header of a token or key."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def admin() -> dict[str, str]:
    return bearer(ADMIN_TOKEN)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error(r: httpx.Response, status: int, code: str, field: str | None = None) -> dict:
    """The error body of ``r``, checked: status, machine code and (if given) the field."""
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    assert body["message"]
    if field is not None:
        assert body.get("field") == field, body
    return body
