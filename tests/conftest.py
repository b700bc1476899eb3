"""Shared fixtures of the cartwise test suite (names are stable: other test modules reuse them).

Databases
    ``postgres_url`` (session)
        Base SQLAlchemy URL of the test PostgreSQL: env ``CARTWISE_TEST_POSTGRES_URL``, default
        ``postgresql+psycopg://postgres@127.0.0.1:5432/test``. If the server does not answer, every
        test that needs it **fails** with a message saying so; set ``CARTWISE_TEST_SKIP_POSTGRES=1``
        to skip the PostgreSQL tests instead (whether or not the server is up).
    ``make_pg_schema`` (function) / ``make_pg_schema_session`` (session)
        Factory ``make() -> url``: creates a fresh schema ``cw_<random hex>`` and returns the base
        URL with ``?options=-csearch_path%3D<schema>`` appended, so everything done through that URL
        (tables, ``alembic_version``) lands in the schema. The schemas are dropped (``CASCADE``)
        when the fixture's scope ends.
    ``db`` (function, parametrized ``sqlite`` / ``postgres``)
        A fresh ``engine.commerce.db.Database`` per test, migrated (``db.migrate()``), disposed at
        teardown. SQLite is a file in ``tmp_path``; the postgres param carries
        ``pytest.mark.postgres`` and uses its own schema from ``make_pg_schema``.
    ``db_snapshot`` (function)
        ``db_snapshot() -> dict``: row counts of every commerce table plus the exact stock,
        order-status and allocation-state rows; compare two snapshots to prove "nothing written".

Commerce objects
    ``published``: list of every event published on ``bus`` (in publication order).
    ``bus``: a fresh ``engine.events.MessageBus`` recording into ``published``.
    ``catalog`` / ``orders``: ``Catalog`` / ``Orders`` over ``db`` and ``bus``.
    ``store``: a small shop (see :class:`Store`) made through ``catalog``; it clears ``published``
        when done, so a test sees only the events it caused.

Failure injection
    ``breakable_clock``: a clock (``clock()`` -> aware UTC ``datetime``) for ``Catalog`` /
        ``Orders``; after ``breakable_clock.broken = True`` it returns naive datetimes, which the
        ``UTCDateTime`` column type refuses at flush, so the transaction fails after the work was
        planned (to prove nothing is written and no event is published).

Fraud models
    ``fraud_transactions`` (session): payment attempts of a small seeded demo store (SQLite),
        labelled by its chargebacks, in the transactions import format.
    ``fraud_model_dir`` (session): an XGBoost model trained on them and exported (ONNX +
        ``model.json`` + ``trees.npz``), version ``"test-1"``.

Redis
    ``flushed_redis``: ``flushed_redis(url)`` is a context manager giving a client of a Redis
        database flushed on the way in and out (each test module uses its own database number).

Concurrency
    ``run_concurrently``: ``run_concurrently(fn, n) -> list[Outcome]`` runs ``fn(i)`` for
        ``i in range(n)`` on ``n`` threads released together by a ``threading.Barrier``; each
        ``Outcome`` has ``value`` or ``error``. Fails if a thread is still running after 120 s.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.domain import LineRequest
from engine.commerce.orders import OrderRequest, Orders
from engine.commerce.schema import Base
from engine.events import Event, MessageBus

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

COMMERCE_TABLES = tuple(table.name for table in Base.metadata.sorted_tables)


# --- PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """Base URL of the test PostgreSQL; fails (or skips, if asked to) when it is unreachable."""
    if os.environ.get("CARTWISE_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("PostgreSQL tests skipped (CARTWISE_TEST_SKIP_POSTGRES=1)")
    url = os.environ.get("CARTWISE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL at {make_url(url).render_as_string(hide_password=True)} is unreachable "
            f"({str(exc).splitlines()[0]}). Start it (see DESIGN.md), point "
            "CARTWISE_TEST_POSTGRES_URL at another server, or set CARTWISE_TEST_SKIP_POSTGRES=1.",
            pytrace=False,
        )
    finally:
        engine.dispose()
    return url


@contextmanager
def _pg_schemas(base_url: str) -> Iterator[Callable[[], str]]:
    admin = create_engine(base_url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    created: list[str] = []

    def make() -> str:
        schema = f"cw_{secrets.token_hex(8)}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        created.append(schema)
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    try:
        yield make
    finally:
        for schema in reversed(created):
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def make_pg_schema(postgres_url: str) -> Iterator[Callable[[], str]]:
    """``make() -> url`` of a fresh PostgreSQL schema, dropped at the end of the test."""
    with _pg_schemas(postgres_url) as make:
        yield make


@pytest.fixture(scope="session")
def make_pg_schema_session(postgres_url: str) -> Iterator[Callable[[], str]]:
    """Like ``make_pg_schema`` but the schemas live until the end of the session."""
    with _pg_schemas(postgres_url) as make:
        yield make


# --- the commerce database ------------------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated commerce database on SQLite (file) or PostgreSQL (own schema)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cartwise.db'}"
    else:
        url = request.getfixturevalue("make_pg_schema")()
    database = Database(url)
    try:
        database.migrate()
        yield database
    finally:
        database.dispose()


def snapshot(db: Database) -> dict[str, Any]:
    """Everything a failed request must leave untouched, in comparable form."""

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in conn.execute(text(sql))]

    with db.engine.connect() as conn:
        return {
            "counts": {
                t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in COMMERCE_TABLES
            },
            "stock": rows(
                "SELECT warehouse_id, sku, on_hand, allocated FROM stock ORDER BY warehouse_id, sku"
            ),
            "orders": rows("SELECT id, status FROM orders ORDER BY id"),
            "allocations": rows("SELECT id, state FROM allocations ORDER BY id"),
        }


@pytest.fixture
def db_snapshot(db: Database) -> Callable[[], dict[str, Any]]:
    """``db_snapshot()``: see :func:`snapshot`."""
    return lambda: snapshot(db)


# --- commerce objects -----------------------------------------------------------------------------


@pytest.fixture
def published() -> list[Event]:
    """Every event published on ``bus``, in order."""
    return []


@pytest.fixture
def bus(published: list[Event]) -> MessageBus:
    bus = MessageBus()
    bus.subscribe(Event, published.append)
    return bus


@pytest.fixture
def catalog(db: Database, bus: MessageBus) -> Catalog:
    return Catalog(db, bus)


@pytest.fixture
def orders(db: Database, bus: MessageBus) -> Orders:
    return Orders(db, bus)


@dataclass(frozen=True)
class Store:
    """The ``store`` fixture's shop (all prices EUR).

    - customer ``cus-ana`` (DE); channel ``web`` (EUR, DE); merchant ``m-main``
    - warehouse ``wh-de`` in DE (shipping only), ``wh-fr`` in FR (click_and_collect)
    - products and on-hand stock:

      ======  ======  =========  =====  =====
      sku     price   category   wh-de  wh-fr
      ======  ======  =========  =====  =====
      TEE     19.99   apparel        5      3
      MUG      8.50   kitchen       10      -
      CAP     12.00   apparel        -      2
      ======  ======  =========  =====  =====
    """

    customer_id: str = "cus-ana"
    channel_id: str = "web"
    merchant_id: str = "m-main"
    warehouse_de: str = "wh-de"
    warehouse_fr: str = "wh-fr"
    prices: dict[str, Decimal] = field(
        default_factory=lambda: {
            "TEE": Decimal("19.99"),
            "MUG": Decimal("8.50"),
            "CAP": Decimal("12.00"),
        }
    )
    categories: dict[str, str] = field(
        default_factory=lambda: {"TEE": "apparel", "MUG": "kitchen", "CAP": "apparel"}
    )
    stock: dict[tuple[str, str], int] = field(
        default_factory=lambda: {
            ("wh-de", "TEE"): 5,
            ("wh-fr", "TEE"): 3,
            ("wh-de", "MUG"): 10,
            ("wh-fr", "CAP"): 2,
        }
    )

    def request(self, *lines: tuple[str, int], **kwargs: Any) -> OrderRequest:
        """An EUR order of ``(sku, qty)`` lines for the store's customer."""
        kwargs.setdefault("customer_id", self.customer_id)
        kwargs.setdefault("currency", "EUR")
        return OrderRequest(lines=[LineRequest(sku, qty) for sku, qty in lines], **kwargs)


@pytest.fixture
def store(catalog: Catalog, published: list[Event]) -> Store:
    shop = Store()
    catalog.create_customer(id=shop.customer_id, email="ana@example.com", name="Ana", country="DE")
    catalog.create_channel(id=shop.channel_id, name="Web shop", currency="EUR", country="DE")
    catalog.create_merchant(id=shop.merchant_id, name="Main merchant", country="DE")
    catalog.create_warehouse(id=shop.warehouse_de, name="Berlin DC", country="DE")
    catalog.create_warehouse(
        id=shop.warehouse_fr, name="Paris store", country="FR", click_and_collect=True
    )
    for sku, price in shop.prices.items():
        catalog.create_product(
            sku=sku,
            title=sku.title(),
            category=shop.categories[sku],
            list_price=price,
            currency="EUR",
            cost=price / 2,
        )
    for (warehouse_id, sku), on_hand in shop.stock.items():
        catalog.set_stock(warehouse_id, sku, on_hand)
    published.clear()
    return shop


# --- failure injection ---------------------------------------------------------------------------


class BreakableClock:
    def __init__(self) -> None:
        self.broken = False

    def __call__(self) -> datetime:
        now = datetime.now(UTC)
        return now.replace(tzinfo=None) if self.broken else now


@pytest.fixture
def breakable_clock() -> BreakableClock:
    return BreakableClock()


# --- concurrency ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    index: int
    value: Any = None
    error: BaseException | None = None


def _run_concurrently(fn: Callable[[int], Any], n: int, *, timeout: float = 120.0) -> list[Outcome]:
    barrier = threading.Barrier(n)
    outcomes = [Outcome(i) for i in range(n)]

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=timeout)
            outcomes[i].value = fn(i)
        except BaseException as exc:
            outcomes[i].error = exc

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(t.is_alive() for t in threads)
    assert stuck == 0, f"{stuck} of {n} workers still running after {timeout}s (deadlock?)"
    return outcomes


@pytest.fixture
def run_concurrently() -> Callable[..., list[Outcome]]:
    return _run_concurrently


# --- fraud models ---------------------------------------------------------------------------------

FRAUD_SEED_END = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def fraud_transactions(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from training.demo.seed import SeedConfig, seed_store
    from training.fraud.dataset import transactions_from_db

    db = Database(f"sqlite:///{tmp_path_factory.mktemp('fraud-store') / 'store.db'}")
    db.migrate()
    config = SeedConfig(
        seed=11,
        customers=400,
        products=80,
        merchants=10,
        days=30,
        fraud_rate=0.04,
        end=FRAUD_SEED_END,
    )
    seed_store(db, config)
    try:
        return transactions_from_db(db, as_of=FRAUD_SEED_END)
    finally:
        db.dispose()


@pytest.fixture(scope="session")
def fraud_model_dir(fraud_transactions: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.fraud.backtest import fit, prepare
    from training.fraud.export import export

    data = prepare(fraud_transactions)
    rows = data.label >= 0
    model = fit(data, rows, {"n_estimators": 60, "max_depth": 4, "learning_rate": 0.2})
    directory = tmp_path_factory.mktemp("fraud-model")
    export(model, directory, check_rows=data.inputs[:200], meta={"version": "test-1"})
    return directory


# --- redis ----------------------------------------------------------------------------------------


@contextmanager
def _flushed_redis(url: str) -> Iterator[Any]:
    from features.connection import connect

    client = connect(url, timeout_ms=2000)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def flushed_redis() -> Callable[[str], Any]:
    return _flushed_redis
