"""Fixtures of the integration tests that run servers of their own (see ``tests/servers.py``).

``own_postgres`` (module)
    A ``PgCluster``: a PostgreSQL started by the test module on a free port, which its tests
    may stop and start again; destroyed after the module.  Skips when the PostgreSQL binaries
    are missing or ``CARTWISE_TEST_SKIP_POSTGRES=1``.
``plain_app`` (module)
    A ``PlainApp``: the cartwise app under plain uvicorn (``cartwise serve --plain``) over HTTP,
    on a database ``cartwise`` of ``own_postgres`` and the Redis database ``FAULT_REDIS_URL``
    (flushed before and after), with a small seeded demo store, a recommender trained on it,
    the ``fraud_model_dir`` model, and the shop of ``FaultShop`` for orders with known stock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.events import MessageBus
from tests.servers import AppProcess, PgCluster, seeded_store_and_recommender

FAULT_REDIS_URL = os.environ.get("CARTWISE_TEST_FAULT_REDIS_URL", "redis://127.0.0.1:6379/14")
ADMIN_TOKEN = "fault-admin-token"


@dataclass(frozen=True)
class FaultShop:
    """One customer, one warehouse (DE) and three EUR products with plenty of stock."""

    customer_id: str = "cus-flt"
    warehouse_id: str = "wh-flt"
    prices: dict[str, Decimal] = field(
        default_factory=lambda: {
            "FLT-A": Decimal("10.00"),
            "FLT-B": Decimal("5.50"),
            "FLT-C": Decimal("3.25"),
        }
    )
    on_hand: int = 100_000

    def create(self, db: Database) -> None:
        catalog = Catalog(db, MessageBus())
        catalog.create_customer(
            id=self.customer_id, email="flt@example.com", name="Flt", country="DE"
        )
        catalog.create_warehouse(id=self.warehouse_id, name="Fault DC", country="DE")
        for sku, price in self.prices.items():
            catalog.create_product(
                sku=sku, title=sku, category="faults", list_price=price, currency="EUR"
            )
            catalog.set_stock(self.warehouse_id, sku, self.on_hand)


@dataclass
class PlainApp:
    process: AppProcess
    database_url: str
    shop: FaultShop
    admin: dict[str, str]
    secret: dict[str, str]  # a channel's secret key: what a shop's server sends

    @property
    def url(self) -> str:
        return self.process.url

    def client(self, timeout: float = 30, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, headers=self.secret, **kwargs)


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PgCluster]:
    if os.environ.get("CARTWISE_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("PostgreSQL tests skipped (CARTWISE_TEST_SKIP_POSTGRES=1)")
    why = PgCluster.available()
    if why is not None:
        pytest.skip(why)
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


def _flush_redis() -> None:
    from features.connection import connect

    client = connect(FAULT_REDIS_URL, timeout_ms=2000)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(scope="module")
def plain_app(
    own_postgres: PgCluster, fraud_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlainApp]:
    from training.demo.seed import SeedConfig
    from training.recommend.als import AlsParams

    workdir = tmp_path_factory.mktemp("plain-app")
    url = own_postgres.create_database("cartwise")
    shop = FaultShop()
    recs = seeded_store_and_recommender(
        url,
        workdir / "recs-model",
        seed=SeedConfig(seed=5, customers=200, products=60, merchants=3, days=10),
        als=AlsParams(factors=8, iterations=4, alpha=5.0),
        extra=shop.create,
    )
    _flush_redis()
    process = AppProcess(
        workdir,
        {
            "CARTWISE_DATABASE_URL": url,
            "CARTWISE_REDIS_URL": FAULT_REDIS_URL,
            "CARTWISE_FRAUD_MODEL": str(fraud_model_dir),
            "CARTWISE_RECS_MODEL": str(recs),
            "CARTWISE_ADMIN_TOKEN": ADMIN_TOKEN,
            # these tests drive 16 threads at once on purpose: a shared CI machine's loop then
            # runs late, and admission control (tested in test_admission.py) would refuse some
            "CARTWISE_MAX_LOOP_LAG_MS": "0",
        },
    )
    process.start()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=process.url, timeout=30, headers=admin) as client:
        channel = client.get("/v1/channels").json()[0]["id"]
        key = client.post(f"/v1/channels/{channel}/keys", json={"kind": "secret"}).json()["key"]
    try:
        yield PlainApp(process, url, shop, admin, {"Authorization": f"Bearer {key}"})
    finally:
        process.stop()
        _flush_redis()
