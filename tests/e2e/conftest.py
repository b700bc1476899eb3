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
    return Settings(
        data_dir=tmp_path_factory.mktemp("serve"),
        fraud_model=str(fraud_model_dir),
        redis_url=os.environ.get("CARTWISE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        http_port=_free_port(),
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture(scope="session")
def api_url(serve_settings: Settings) -> Iterator[str]:
    from serving.runtime import serve_app, shutdown

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
