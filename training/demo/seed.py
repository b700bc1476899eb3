"""Seed a reproducible demo store: same config (seed and ``end`` included), same rows and ids.

``generate_store`` is pure (no I/O) and returns every row; ``seed_store`` writes them into an
empty, migrated store with bulk Core inserts in one transaction, so an interrupted seed leaves
the store empty and the command can simply be run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from engine.commerce.db import Database
from engine.commerce.schema import Base, Product
from engine.errors import Conflict, ValidationError
from training.demo.behaviour import interaction_rows, simulate_browsing
from training.demo.catalogue import build_catalogue, build_channels, build_merchants
from training.demo.common import Window
from training.demo.customers import generate_customers
from training.demo.fraud import PATTERNS, plan_fraud
from training.demo.ledger import build_ledger
from training.demo.vocabulary import TOP_DEMAND
from training.demo.warehouses import build_warehouses, stock_levels, warehouse_rows

Progress = Callable[[str, int, int], None]

# The commerce tables, parents before children (foreign keys).  The fraud and recommendation
# tables share the metadata once their modules are imported; they are not seeded, nor are the
# channels' API keys (random secrets: `cartwise demo` makes them).
_COMMERCE = {
    str(m.class_.__tablename__)
    for m in Base.registry.mappers
    if m.class_.__module__ == Base.__module__
} - {"channel_keys"}
TABLES = tuple(t.name for t in Base.metadata.sorted_tables if t.name in _COMMERCE)
CHUNK = 5_000
GENERATE_STEPS = 7


@dataclass(frozen=True)
class SeedConfig:
    seed: int = 42
    customers: int = 2000
    products: int = 500
    warehouses: int = 4  # at least one per country of a small set; some click_and_collect stores
    merchants: int = 20
    days: int = 60  # history length ending at `end` (default: now, UTC, truncated to the hour)
    sessions_per_customer: float = 6.0
    fraud_rate: float = 0.02  # approximate share of fraudulent payments
    end: datetime | None = None

    def check(self) -> None:
        for name in ("customers", "products", "warehouses", "days"):
            if getattr(self, name) < 1:
                raise ValidationError(f"{name} must be at least 1", field=name)
        if self.merchants < 0:
            raise ValidationError("merchants must be zero or more", field="merchants")
        if not 0 <= self.sessions_per_customer <= 1000:
            raise ValidationError(
                "sessions_per_customer must be between 0 and 1000", field="sessions_per_customer"
            )
        if not 0 <= self.fraud_rate < 0.5:
            raise ValidationError("fraud_rate must be in [0, 0.5)", field="fraud_rate")
        if self.end is not None and self.end.tzinfo is None:
            raise ValidationError("end must be timezone-aware (UTC)", field="end")


@dataclass(frozen=True)
class SeedSummary:
    """What ``seed_store`` wrote.

    ``fraud_payments`` counts every payment of a fraudulent checkout per pattern (declined card
    tests included); ``fraud_chargebacks`` the fraud labels written per pattern. Chargebacks
    that would be filed after ``end`` are not written (``chargebacks_withheld``): their labels
    are not known yet at the end of history. ``chargebacks_written`` also counts the few
    non-fraud disputes (reason ``product_not_received``).
    """

    counts: dict[str, int]
    fraud_payments: dict[str, int]
    fraud_chargebacks: dict[str, int]
    chargebacks_written: int
    chargebacks_withheld: int
    fraud_share: float  # fraudulent payments / all payments
    start: datetime
    end: datetime
    seconds: float


@dataclass(frozen=True)
class DemoStore:
    """Every generated row per table (``TABLES`` order) and the fraud bookkeeping."""

    rows: dict[str, list[dict[str, Any]]]
    fraud_payments: dict[str, int]
    fraud_chargebacks: dict[str, int]
    withheld: dict[str, int]
    window: Window


def generate_store(config: SeedConfig, progress: Progress | None = None) -> DemoStore:
    """All rows of the demo store, deterministic for a given config (pure, no I/O)."""
    config.check()
    report = progress or (lambda _step, _done, _total: None)
    seed = config.seed
    window = Window.ending(config.end, config.days)
    merchants = build_merchants(seed, config.merchants, window)
    cat = build_catalogue(seed, config.products, [m["id"] for m in merchants], window)
    warehouses = build_warehouses(config.warehouses)
    levels = stock_levels(seed, cat, warehouses)
    report("generate", 1, GENERATE_STEPS)
    customers = generate_customers(seed, config.customers, window, TOP_DEMAND)
    report("generate", 2, GENERATE_STEPS)
    browsing = simulate_browsing(seed, customers, cat, window, config.sessions_per_customer)
    report("generate", 3, GENERATE_STEPS)
    fraud = plan_fraud(seed, customers, cat, browsing.checkouts, window, config.fraud_rate)
    report("generate", 4, GENERATE_STEPS)
    ledger = build_ledger(
        seed, browsing.checkouts + fraud.checkouts, cat, warehouses, levels, window
    )
    report("generate", 5, GENERATE_STEPS)
    stock = [
        {
            "warehouse_id": wh,
            "sku": cat.skus[item],
            "on_hand": level + ledger.live[(wh, item)],
            "allocated": ledger.live[(wh, item)],
            "updated_at": window.end,
        }
        for (wh, item), level in sorted(levels.items())
    ]
    interactions = interaction_rows(browsing.sessions + fraud.sessions, cat, window)
    report("generate", 6, GENERATE_STEPS)
    rows = {
        "channels": build_channels(window),
        "merchants": merchants,
        "products": [dict(r) for r in cat.rows],
        "warehouses": warehouse_rows(warehouses, window),
        "customers": [c.row(window) for c in customers + fraud.accounts],
        "stock": stock,
        "orders": ledger.orders,
        "order_lines": ledger.lines,
        "allocations": ledger.allocations,
        "order_events": ledger.events,
        "payments": ledger.payments,
        "chargebacks": ledger.chargebacks,
        "interactions": interactions,
    }
    report("generate", GENERATE_STEPS, GENERATE_STEPS)
    return DemoStore(
        rows=rows,
        fraud_payments={p: ledger.fraud_payments[p] for p in PATTERNS},
        fraud_chargebacks={p: ledger.fraud_chargebacks[p] for p in PATTERNS},
        withheld=dict(sorted(ledger.withheld.items())),
        window=window,
    )


def _refuse_if_not_empty(found: object) -> None:
    if found is not None:
        raise Conflict(
            "the store already has products; the demo seeds only an empty store",
            code="store_not_empty",
        )


def seed_store(db: Database, config: SeedConfig, progress: Progress | None = None) -> SeedSummary:
    """Generate the demo store for ``config`` and write it into ``db`` (migrated and empty).

    Raises ``Conflict`` (code ``store_not_empty``) if the store already has products.
    """
    started = time.perf_counter()
    report = progress or (lambda _step, _done, _total: None)
    with db.engine.connect() as conn:  # fail fast, before spending time on generation
        _refuse_if_not_empty(conn.execute(select(Product.sku).limit(1)).first())
    store = generate_store(config, progress)
    total = sum(len(store.rows[t]) for t in TABLES)
    done = 0
    with db.engine.begin() as conn:
        _refuse_if_not_empty(conn.execute(select(Product.sku).limit(1)).first())
        for name in TABLES:
            table = Base.metadata.tables[name]
            rows = store.rows[name]
            for lo in range(0, len(rows), CHUNK):
                conn.execute(insert(table), rows[lo : lo + CHUNK])
                done += len(rows[lo : lo + CHUNK])
                report("write", done, total)
    payments = store.rows["payments"]
    fraud = sum(store.fraud_payments.values())
    return SeedSummary(
        counts={t: len(store.rows[t]) for t in TABLES},
        fraud_payments=store.fraud_payments,
        fraud_chargebacks=store.fraud_chargebacks,
        chargebacks_written=len(store.rows["chargebacks"]),
        chargebacks_withheld=sum(store.withheld.values()),
        fraud_share=round(fraud / len(payments), 4) if payments else 0.0,
        start=store.window.start,
        end=store.window.end,
        seconds=round(time.perf_counter() - started, 2),
    )
