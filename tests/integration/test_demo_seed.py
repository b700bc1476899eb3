"""Seeding the demo store into real databases (SQLite files; one PostgreSQL schema)."""

from __future__ import annotations

import os
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from engine.commerce.db import Database
from engine.commerce.domain import HOLDS_ALLOCATION
from engine.commerce.schema import Base, Money, UTCDateTime
from engine.errors import Conflict
from training.demo.fraud import PATTERNS
from training.demo.seed import TABLES, SeedConfig, SeedSummary, seed_store

pytestmark = pytest.mark.integration

END = datetime(2026, 5, 1, 12, tzinfo=UTC)
CONFIG = SeedConfig(seed=7, customers=200, products=100, merchants=8, days=20, end=END)
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# --- helpers --------------------------------------------------------------------------------------


def seeded(path: Path, config: SeedConfig = CONFIG) -> tuple[Database, SeedSummary]:
    db = Database(f"sqlite:///{path}")
    db.migrate()
    return db, seed_store(db, config)


# Result columns of these names come back as aware datetimes / Decimals on every backend.
TYPED: dict[str, Any] = {
    **dict.fromkeys(("created_at", "updated_at", "filed_at", "ts"), UTCDateTime()),
    **dict.fromkeys(("amount", "total", "line_total", "unit_price"), Money),
}


def _typed(sql: str, params: dict[str, Any]) -> Any:
    """``text(sql)`` with datetime parameters bound as UTC datetimes (naive in SQLite)."""
    stmt = text(sql)
    dates = [
        bindparam(k, type_=UTCDateTime()) for k, v in params.items() if isinstance(v, datetime)
    ]
    return stmt.bindparams(*dates) if dates else stmt


def rows(db: Database, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(_typed(sql, params).columns(**TYPED), params)]


def scalar(db: Database, sql: str, **params: Any) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(_typed(sql, params), params).scalar_one()


def table(db: Database, name: str) -> list[tuple[Any, ...]]:
    """All rows of a table in a stable order, timestamps as aware UTC datetimes."""
    t = Base.metadata.tables[name]
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(t.select().order_by(*t.primary_key.columns))]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, SeedSummary]]:
    db, summary = seeded(tmp_path_factory.mktemp("demo") / "t.db")
    yield db, summary
    db.dispose()


# --- the seeded store -----------------------------------------------------------------------------


def test_summary_matches_the_tables(store: tuple[Database, SeedSummary]) -> None:
    db, summary = store
    for name in TABLES:
        assert scalar(db, f"SELECT count(*) FROM {name}") == summary.counts[name], name
    assert summary.counts["products"] == 100 and summary.counts["customers"] >= 200
    assert summary.chargebacks_written == summary.counts["chargebacks"]
    assert summary.start == END - timedelta(days=20) and summary.end == END
    assert 0 < summary.seconds < 60


def test_references_resolve(store: tuple[Database, SeedSummary]) -> None:
    db, _ = store
    dangling = {
        "interaction customer": "SELECT count(*) FROM interactions i LEFT JOIN customers c "
        "ON c.id = i.customer_id WHERE c.id IS NULL",
        "interaction sku": "SELECT count(*) FROM interactions i LEFT JOIN products p "
        "ON p.sku = i.sku WHERE i.sku IS NOT NULL AND p.sku IS NULL",
        "order without lines": "SELECT count(*) FROM orders o WHERE NOT EXISTS "
        "(SELECT 1 FROM order_lines l WHERE l.order_id = o.id)",
        "order without placed event": "SELECT count(*) FROM orders o WHERE NOT EXISTS "
        "(SELECT 1 FROM order_events e WHERE e.order_id = o.id AND e.type = 'placed')",
        "payment of someone else": "SELECT count(*) FROM payments p JOIN orders o "
        "ON o.id = p.order_id WHERE o.customer_id <> p.customer_id",
        "chargeback on other order": "SELECT count(*) FROM chargebacks c JOIN payments p "
        "ON p.id = c.payment_id WHERE p.order_id <> c.order_id OR p.status <> 'authorized'",
        "order line of hidden or inactive": "SELECT count(*) FROM order_lines l JOIN products p "
        "ON p.sku = l.sku WHERE NOT p.active OR p.hidden",
        "search with sku": "SELECT count(*) FROM interactions WHERE (type = 'search') "
        "<> (sku IS NULL)",
        "allocation without stock row": "SELECT count(*) FROM allocations a LEFT JOIN stock s "
        "ON s.sku = a.sku AND s.warehouse_id = a.warehouse_id WHERE s.sku IS NULL",
        "currency": "SELECT count(*) FROM orders o JOIN channels c ON c.id = o.channel_id "
        "WHERE o.currency <> 'EUR' OR c.currency <> 'EUR'",
    }
    assert {k: scalar(db, sql) for k, sql in dangling.items()} == dict.fromkeys(dangling, 0)
    # a pickup order picks up at a click & collect store
    assert (
        scalar(
            db,
            "SELECT count(*) FROM orders o JOIN warehouses w ON w.id = "
            "o.pickup_warehouse_id WHERE NOT w.click_and_collect",
        )
        == 0
    )
    assert scalar(db, "SELECT count(*) FROM warehouses WHERE click_and_collect") >= 1


def test_stock_matches_live_allocations(store: tuple[Database, SeedSummary]) -> None:
    db, _ = store
    assert scalar(db, "SELECT count(*) FROM stock WHERE allocated > on_hand OR on_hand < 0") == 0
    live = Counter[tuple[str, str]]()
    for wh, sku, qty in rows(
        db, "SELECT warehouse_id, sku, qty FROM allocations WHERE state = 'allocated'"
    ):
        live[(wh, sku)] += qty
    stock = {
        (wh, sku): allocated
        for wh, sku, allocated in rows(db, "SELECT warehouse_id, sku, allocated FROM stock")
    }
    assert {k: v for k, v in stock.items() if v} == dict(live)
    assert sum(live.values()) > 0  # some orders are still open at the end
    assert scalar(db, "SELECT count(*) FROM stock WHERE on_hand = 0") > 0  # some sold out
    # allocation state follows the order status
    expected = {s.value: "allocated" for s in HOLDS_ALLOCATION}
    expected.update(
        {
            "cancelled": "released",
            "fulfilled": "fulfilled",
            "shipped": "fulfilled",
            "delivered": "fulfilled",
            "refunded": "fulfilled",
        }
    )
    for status, state in rows(
        db,
        "SELECT DISTINCT o.status, a.state FROM orders o JOIN allocations a ON a.order_id = o.id",
    ):
        assert expected[status] == state, (status, state)
    # every line is allocated in full
    short = rows(
        db,
        "SELECT l.order_id, l.sku FROM order_lines l WHERE l.qty <> (SELECT "
        "sum(a.qty) FROM allocations a WHERE a.order_id = l.order_id "
        "AND a.sku = l.sku)",
    )
    assert short == []


def test_totals_and_payments_are_consistent(store: tuple[Database, SeedSummary]) -> None:
    db, _ = store
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for order_id, qty, unit_price, line_total in rows(
        db, "SELECT order_id, qty, unit_price, line_total FROM order_lines"
    ):
        assert line_total == qty * unit_price, order_id
        sums[order_id] += line_total
    for order_id, total in rows(db, "SELECT id, total FROM orders"):
        assert total == sums[order_id], order_id
    for pay_id, amount, total in rows(
        db,
        "SELECT p.id, p.amount, o.total FROM payments p "
        "JOIN orders o ON o.id = p.order_id "
        "WHERE p.status = 'authorized'",
    ):
        assert amount == total, pay_id
    authorized = dict(
        rows(
            db,
            "SELECT o.id, (SELECT count(*) FROM payments p WHERE "
            "p.order_id = o.id AND p.status = 'authorized') FROM orders o",
        )
    )
    statuses = dict(rows(db, "SELECT id, status FROM orders"))
    for order_id, n in authorized.items():
        status = statuses[order_id]
        if status == "placed":
            assert n == 0, order_id
        elif status == "cancelled":
            assert n <= 1, order_id  # cancelled before or after paying
        else:
            assert n == 1, order_id
    assert set(statuses.values()) >= {"delivered", "cancelled", "refunded", "shipped"}
    methods = Counter(m for (m,) in rows(db, "SELECT method FROM payments"))
    assert methods.most_common(1)[0][0] == "card" and set(methods) == {"card", "wallet", "bnpl"}
    assert (
        rows(
            db,
            "SELECT id FROM payments WHERE method = 'card' AND (card_fingerprint "
            "NOT LIKE 'fp_%' OR length(card_last4) <> 4 OR card_country IS NULL)",
        )
        == []
    )


def test_timestamps_are_utc_and_inside_history(store: tuple[Database, SeedSummary]) -> None:
    db, summary = store
    checks = {
        "orders": ["created_at", "updated_at"],
        "payments": ["created_at"],
        "order_events": ["created_at"],
        "interactions": ["ts"],
        "chargebacks": ["filed_at"],
        "stock": ["updated_at"],
    }
    for name, columns in checks.items():
        t = Base.metadata.tables[name]
        with db.engine.connect() as conn:
            for row in conn.execute(t.select()):
                for col in columns:
                    value = row._mapping[col]
                    assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
                    assert summary.start <= value <= summary.end, (name, col, value)
    assert (
        scalar(
            db,
            "SELECT count(*) FROM customers WHERE created_at > :end",
            end=summary.end,
        )
        == 0
    )
    assert scalar(db, "SELECT count(*) FROM orders WHERE updated_at < created_at") == 0


def test_every_fraud_pattern_is_labelled(store: tuple[Database, SeedSummary]) -> None:
    db, summary = store
    found = rows(
        db,
        "SELECT c.note, c.reason, p.created_at, c.filed_at, c.amount, p.amount "
        "FROM chargebacks c JOIN payments p ON p.id = c.payment_id",
    )
    notes = Counter(note for note, reason, *_ in found if reason == "fraudulent")
    assert set(notes) == set(PATTERNS)
    assert dict(notes) == summary.fraud_chargebacks
    for note, reason, paid, filed, cb_amount, amount in found:
        assert reason in ("fraudulent", "product_not_received")
        assert (note in PATTERNS) == (reason == "fraudulent")
        assert cb_amount == amount
        assert filed > paid
        if reason == "fraudulent":
            assert timedelta(days=3) <= filed - paid <= timedelta(days=30)
    assert (
        scalar(
            db,
            "SELECT count(*) FROM chargebacks WHERE filed_at > :end",
            end=END,
        )
        == 0
    )
    # no fraud label can be known yet for the last 3 days of payments
    recent = scalar(
        db,
        "SELECT count(*) FROM chargebacks c JOIN payments p ON p.id = c.payment_id "
        "WHERE c.reason = 'fraudulent' AND p.created_at > :since",
        since=END - timedelta(days=3),
    )
    assert recent == 0
    assert 0 < summary.fraud_share < 0.15


def _labelled(db: Database, pattern: str) -> list[dict[str, Any]]:
    keys = (
        "payment_id",
        "customer_id",
        "created_at",
        "amount",
        "card_fingerprint",
        "device_id",
        "ip",
        "card_country",
        "shipping_country",
        "customer_country",
        "merchant_id",
    )
    found = rows(
        db,
        "SELECT p.id, p.customer_id, p.created_at, p.amount, p.card_fingerprint, "
        "p.device_id, p.ip, p.card_country, o.shipping_country, cu.country, "
        "o.merchant_id FROM chargebacks c JOIN payments p ON p.id = c.payment_id "
        "JOIN orders o ON o.id = c.order_id JOIN customers cu ON cu.id = o.customer_id "
        "WHERE c.note = :note",
        note=pattern,
    )
    return [dict(zip(keys, r, strict=True)) for r in found]


def _earlier(db: Database, customer_id: str, before: Any) -> list[tuple[Any, ...]]:
    return rows(
        db,
        "SELECT card_fingerprint, device_id, ip, amount FROM payments WHERE "
        "customer_id = :c AND created_at < :t",
        c=customer_id,
        t=before,
    )


def _median(values: list[Decimal]) -> Decimal:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def test_fraud_patterns_look_like_their_names(store: tuple[Database, SeedSummary]) -> None:
    db, _ = store
    for burst in _labelled(db, "card_testing"):
        tries = rows(
            db,
            "SELECT status, created_at, ip, device_id, amount FROM payments "
            "WHERE card_fingerprint = :fp",
            fp=burst["card_fingerprint"],
        )
        assert len(tries) >= 5
        assert sum(s == "declined" for s, *_ in tries) > len(tries) / 2
        assert max(t for _, t, *_ in tries) - min(t for _, t, *_ in tries) < timedelta(minutes=30)
        assert len({(ip, dev) for _, _, ip, dev, _ in tries}) == 1
        assert max(a for *_, a in tries) <= 20
    for theft in _labelled(db, "stolen_card"):
        before = _earlier(db, theft["customer_id"], theft["created_at"])
        assert before, "stolen cards hit existing customers"
        assert theft["card_fingerprint"] not in {fp for fp, *_ in before}
        assert theft["amount"] >= 2 * _median([a for *_, a in before])
        assert theft["shipping_country"] not in (theft["customer_country"], theft["card_country"])
    for ato in _labelled(db, "account_takeover"):
        before = _earlier(db, ato["customer_id"], ato["created_at"])
        assert before
        assert ato["device_id"] not in {d for _, d, _, _ in before}
        assert ato["ip"] not in {ip for _, _, ip, _ in before}
        assert ato["shipping_country"] != ato["customer_country"]
        assert ato["amount"] >= max(150, 2 * _median([a for *_, a in before]))
    by_merchant: dict[str, list[datetime]] = defaultdict(list)
    for hit in _labelled(db, "compromised_merchant"):
        by_merchant[hit["merchant_id"]].append(hit["created_at"])
    assert 1 <= len(by_merchant) <= 2
    for merchant, times in by_merchant.items():
        window = {
            "m": merchant,
            "a": min(times),
            "b": max(times),
        }
        total = scalar(
            db,
            "SELECT count(*) FROM payments p JOIN orders o ON o.id = p.order_id "
            "WHERE o.merchant_id = :m AND p.status = 'authorized' "
            "AND p.created_at BETWEEN :a AND :b",
            **window,
        )
        assert len(times) / total >= 0.4, (merchant, len(times), total)


def test_tastes_are_learnable(store: tuple[Database, SeedSummary]) -> None:
    """Per-customer favourite category (first 80 % of time) beats the global favourite."""
    db, _ = store
    events = rows(
        db,
        "SELECT i.customer_id, i.ts, p.category FROM interactions i "
        "JOIN products p ON p.sku = i.sku ORDER BY i.ts, i.event_id",
    )
    cut = events[int(len(events) * 0.8)][1]
    train = [(c, cat.split("/")[0]) for c, ts, cat in events if ts < cut]
    test = [(c, cat.split("/")[0]) for c, ts, cat in events if ts >= cut]
    overall = Counter(cat for _, cat in train).most_common(1)[0][0]
    per_customer: dict[str, Counter[str]] = defaultdict(Counter)
    for customer, cat in train:
        per_customer[customer][cat] += 1

    def guess(customer: str) -> str:
        seen = per_customer.get(customer)
        return seen.most_common(1)[0][0] if seen else overall

    personal = sum(guess(c) == cat for c, cat in test) / len(test)
    popular = sum(overall == cat for _, cat in test) / len(test)
    assert personal > popular + 0.15, (personal, popular)


def test_same_seed_gives_identical_rows(
    store: tuple[Database, SeedSummary], tmp_path: Path
) -> None:
    db, summary = store
    twin, twin_summary = seeded(tmp_path / "twin.db")
    try:
        assert twin_summary.counts == summary.counts
        for name in (
            "products",
            "customers",
            "stock",
            "orders",
            "order_lines",
            "payments",
            "chargebacks",
            "order_events",
            "interactions",
        ):
            assert table(twin, name) == table(db, name), name
    finally:
        twin.dispose()
    other, _ = seeded(tmp_path / "other.db", SeedConfig(**{**CONFIG.__dict__, "seed": 8}))
    try:
        assert table(other, "orders") != table(db, "orders")
    finally:
        other.dispose()


def test_refuses_a_store_that_has_products(store: tuple[Database, SeedSummary]) -> None:
    db, summary = store
    with pytest.raises(Conflict) as err:
        seed_store(db, CONFIG)
    assert err.value.code == "store_not_empty"
    assert scalar(db, "SELECT count(*) FROM orders") == summary.counts["orders"]


# --- PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema ``seedtest_<hex>`` on the test PostgreSQL, dropped afterwards."""
    if os.environ.get("CARTWISE_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("PostgreSQL tests skipped (CARTWISE_TEST_SKIP_POSTGRES=1)")
    base = os.environ.get("CARTWISE_TEST_POSTGRES_URL", POSTGRES_URL)
    admin = create_engine(base, poolclass=NullPool, connect_args={"connect_timeout": 5})
    schema = f"seedtest_{secrets.token_hex(6)}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.postgres
def test_postgres_gets_the_same_store(store: tuple[Database, SeedSummary], pg_url: str) -> None:
    sqlite_db, sqlite_summary = store
    db = Database(pg_url)
    try:
        db.migrate()
        summary = seed_store(db, CONFIG)
        assert summary.counts == sqlite_summary.counts
        assert summary.fraud_payments == sqlite_summary.fraud_payments
        for name in ("products", "customers", "orders", "payments", "chargebacks", "stock"):
            assert table(db, name) == table(sqlite_db, name), name
        assert scalar(db, "SELECT count(*) FROM stock WHERE allocated > on_hand") == 0
        with pytest.raises(Conflict):
            seed_store(db, CONFIG)
        # the sequences moved past the seeded rows: the service can still add events
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO order_events (order_id, type, actor, data, created_at) "
                    "SELECT id, 'note', 'test', '{}', now() FROM orders LIMIT 1"
                )
            )
        assert scalar(db, "SELECT count(*) FROM order_events") == summary.counts["order_events"] + 1
    finally:
        db.dispose()
