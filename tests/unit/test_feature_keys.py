"""The Redis key schema (features/KEYS.md) pinned to exact names, and plan shapes."""

from __future__ import annotations

import pytest

from features.backends import encode_writes
from features.definitions import VIEWS_BY_NAME, Entity, FeatureEvent, LabelEvent, Source
from features.plan import (
    STOCK_OUT_KEY,
    STOCK_TOTAL_KEY,
    TREND_ALL,
    Op,
    hll_key,
    plan_event,
    plan_label,
    recent_key,
    seen_key,
    stock_key,
    trend_key,
    view_key,
    zset_key,
)
from features.pricing import competitor_key
from features.telemetry import minute_key

pytestmark = pytest.mark.unit
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def contains(op: Op, *run: object) -> bool:
    items = list(op)
    return any(items[i : i + len(run)] == list(run) for i in range(len(items)))


def test_exact_key_names() -> None:
    customer = VIEWS_BY_NAME["customer_txn"]
    assert view_key(customer, "cus_1") == "cw:v:customer_txn:cus_1"
    assert view_key(customer, "a:b") == "cw:v:customer_txn:a:b"
    assert zset_key(customer, "cards", "cus_1") == "cw:z:customer_txn:cards:cus_1"
    ip = VIEWS_BY_NAME["ip_txn"]
    assert hll_key(ip, "cards", 2833333, "10.0.0.1") == "cw:h:ip_txn:cards:2833333:10.0.0.1"
    assert seen_key("ev-1") == "cw:seen:ev-1"
    assert stock_key("SKU-1") == "cw:stock:SKU-1"
    assert competitor_key("SKU-1") == "cw:comp:SKU-1"
    assert minute_key(29_000_000) == "cw:lat:29000000"
    assert STOCK_TOTAL_KEY == "cw:stock:available"
    assert STOCK_OUT_KEY == "cw:stock:out"
    assert recent_key(Entity.CUSTOMER, "cus_1") == "cw:recent:customer:cus_1"
    assert recent_key(Entity.SESSION, "s:1") == "cw:recent:session:s:1"
    assert trend_key("shoes", 20_000) == "cw:trend:shoes:20000"
    assert trend_key(TREND_ALL, 20_000) == "cw:trend:*:20000"


def test_an_interaction_updates_recent_items_and_trending_in_the_same_call() -> None:
    event = FeatureEvent(
        "ev1",
        Source.INTERACTION,
        "add_to_cart",
        T0,
        {Entity.CUSTOMER: "c1", Entity.SESSION: "s1", Entity.SKU: "K1", Entity.CATEGORY: "shoes"},
        {"qty": 2},
        {"sku": "K1"},
    )
    writes = plan_event(event, read=False, record=True).writes
    day = int(T0 // 86400)
    ttl = (day + 1) * 86400 - int(T0) + 3 * 86400
    assert ("R", "cw:recent:customer:c1", "add_to_cart|K1", T0, 50, 30 * 86400) in writes
    assert ("R", "cw:recent:session:s1", "add_to_cart|K1", T0, 50, 30 * 86400) in writes
    assert ("Z", f"cw:trend:*:{day}", "K1", 6, ttl) in writes
    assert ("Z", f"cw:trend:shoes:{day}", "K1", 6, ttl) in writes


def test_transaction_plan_reads_then_writes_exact_fields() -> None:
    event = FeatureEvent(
        "tx1",
        Source.TRANSACTION,
        "payment",
        T0,
        {Entity.CUSTOMER: "c1"},
        {"amount": 1250},
        {"shipping_country": "DE"},
    )
    plan = plan_event(event, read=True, record=True)
    assert plan.dedupe_key == "cw:seen:tx1"
    key = "cw:v:customer_txn:c1"
    k_day = int(T0 // 86400)
    assert plan.reads == [
        ("HGETALL", key),
        ("ZCOUNT", "cw:z:customer_txn:cards:c1", (int(T0 // 14400) - 5) * 14400, "+inf"),
        ("ZCOUNT", "cw:z:customer_txn:cards:c1", (k_day - 6) * 86400, "+inf"),
        ("ZCOUNT", "cw:z:customer_txn:devices:c1", (k_day - 6) * 86400, "+inf"),
        ("ZCOUNT", "cw:z:customer_txn:ips:c1", (int(T0 // 14400) - 5) * 14400, "+inf"),
    ]
    k5 = int(T0 // 300)  # 1 h window: twelve 5-minute buckets ending with the current one
    windows = {o[0]: o[4] for o in plan.outputs if o[1] == "window"}
    assert windows["customer_txn.txn_count_1h"] == (b"txn_count@300", k5 - 11, k5)
    assert windows["customer_txn.amount_sum_30d"] == (b"amount_sum@86400", k_day - 29, k_day)
    write = plan.writes[0]
    assert write[:3] == ("W", key, 31 * 86400 + 86400)
    assert contains(write, "A", "amount_sum@86400", k_day, 1250, 30)
    assert contains(write, "V", "last_txn", "DE", T0)
    assert contains(write, "M", "_w", T0)
    assert ("Y", "cw:z:customer_txn:cards:c1") not in [op[:2] for op in plan.writes]


def test_write_arguments_are_flat() -> None:
    event = FeatureEvent(
        "tx2",
        Source.TRANSACTION,
        "payment",
        T0,
        {Entity.CUSTOMER: "c1", Entity.CARD: "k1"},
        {"amount": 99},
        {},
    )
    plan = plan_event(event, read=False, record=True)
    args = encode_writes(plan)
    assert args[:3] == ["cw:seen:tx2", 7 * 86400, len(plan.writes)]
    assert plan.writes[1][:4] == ("Y", "cw:z:customer_txn:cards:c1", "k1", T0)
    assert plan.writes[1][4] == f"({T0 - (7 * 86400 + 86400)!r}"


def test_label_plan_counts_by_transaction_day() -> None:
    tx_ts, reported = T0, T0 + 10 * 86400
    plan = plan_label(
        LabelEvent("cb1", tx_ts, reported, {Entity.MERCHANT: "m1", Entity.CARD: "k1"})
    )
    assert plan.dedupe_key == "cw:seen:label:cb1"
    k_tx = int(tx_ts // 86400)
    merchant = next(op for op in plan.writes if op[1] == "cw:v:merchant_txn:m1")
    assert contains(merchant, "A", "df@86400", k_tx, 1, 37)
    card = next(op for op in plan.writes if op[1] == "cw:v:card_txn:k1")
    assert contains(card, "I", "fk", 1)
    assert not plan.reads


def test_label_older_than_retention_is_ignored() -> None:
    plan = plan_label(LabelEvent("cb2", T0, T0 + 60 * 86400, {Entity.MERCHANT: "m1"}))
    assert plan.writes == []


def test_interaction_plan_filters_by_event_type() -> None:
    view = FeatureEvent(
        "e1",
        Source.INTERACTION,
        "view",
        T0,
        {Entity.SKU: "S1", Entity.CUSTOMER: "c1"},
        {"qty": 1},
        {"sku": "S1"},
    )
    writes = plan_event(view, read=False, record=True).writes
    sku_block = next(op for op in writes if op[1] == "cw:v:sku_activity:S1")
    assert contains(sku_block, "A", "views@300", int(T0 // 300))
    assert not any(contains(sku_block, "A", p) for p in ("carts@86400", "units_sold@3600"))
