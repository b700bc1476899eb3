"""One Ray Serve app per test session, driven over real HTTP.

Serve starts on a free loopback port against a fresh SQLite database and the Redis at
``CARTWISE_TEST_REDIS_URL`` (default 127.0.0.1:6379, database 15), serving the fraud model of
the ``fraud_model_dir`` fixture.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.settings import Settings

ADMIN_TOKEN = "e2e-admin-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def serve_settings(tmp_path_factory: pytest.TempPathFactory, fraud_model_dir: Path) -> Settings:
    data_dir = tmp_path_factory.mktemp("serve")
    return Settings(
        data_dir=data_dir,
        fraud_model=str(fraud_model_dir),
        recs_model=str(seeded_store_and_recommender(data_dir)),
        redis_url=os.environ.get("CARTWISE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        http_port=_free_port(),
        admin_token=ADMIN_TOKEN,
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


@pytest.fixture(scope="session")
def http(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
