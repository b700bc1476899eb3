"""The Redis key schema (features/KEYS.md) pinned to exact names, and plan shapes."""

from __future__ import annotations

import pytest

from features.definitions import VIEWS_BY_NAME, Entity, FeatureEvent, LabelEvent, Source
from features.plan import (
    STOCK_TOTAL_KEY,
    hll_key,
    plan_event,
    plan_label,
    seen_key,
    stock_key,
    view_key,
)

pytestmark = pytest.mark.unit
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def test_exact_key_names() -> None:
    customer = VIEWS_BY_NAME["customer_txn"]
    assert view_key(customer, "cus_1") == "cw:v:customer_txn:cus_1"
    assert view_key(customer, "a:b") == "cw:v:customer_txn:a:b"
    assert hll_key(customer, "cards", 19675, "cus_1") == "cw:h:customer_txn:cards:19675:cus_1"
    assert seen_key("ev-1") == "cw:seen:ev-1"
    assert stock_key("SKU-1") == "cw:stock:SKU-1"
    assert STOCK_TOTAL_KEY == "cw:stock:available"


def test_transaction_plan_reads_then_writes_exact_fields() -> None:
    event = FeatureEvent("tx1", Source.TRANSACTION, "payment", T0,
                         {Entity.CUSTOMER: "c1"}, {"amount": 1250}, {"shipping_country": "DE"})
    plan = plan_event(event, read=True, record=True)
    assert plan.dedupe_key == "cw:seen:tx1"
    key = "cw:v:customer_txn:c1"
    assert ("G", key, "_w") in plan.reads
    # 1 h window: twelve 5-minute buckets ending with the current one
    k5 = int(T0 // 300)
    assert ("S", key, "txn_count@300", k5 - 11, k5) in plan.reads
    k_day = int(T0 // 86400)
    assert ("S", key, "amount_sum@86400", k_day - 29, k_day) in plan.reads
    assert ("I", key, f"amount_sum@86400|{k_day}", 1250) in plan.writes
    assert ("T", key, "amount_sum@86400", k_day, 30, k_day) in plan.writes
    assert ("V", key, "last_txn", "DE", T0) in plan.writes
    assert plan.writes[-2:] == [("M", key, "_w", T0), ("E", key, 31 * 86400 + 86400)]
    # only views whose entity is present are touched
    assert all("customer" in str(op[1]) for op in plan.reads + plan.writes)


def test_label_plan_counts_by_transaction_day() -> None:
    tx_ts, reported = T0, T0 + 10 * 86400
    plan = plan_label(LabelEvent("cb1", tx_ts, reported, {Entity.MERCHANT: "m1",
                                                          Entity.CARD: "k1"}))
    assert plan.dedupe_key == "cw:seen:label:cb1"
    k_tx, k_rep = int(tx_ts // 86400), int(reported // 86400)
    assert ("I", "cw:v:merchant_txn:m1", f"df@86400|{k_tx}", 1) in plan.writes
    assert ("T", "cw:v:merchant_txn:m1", "df@86400", k_rep, 37, k_tx) in plan.writes
    assert ("I", "cw:v:card_txn:k1", "fk", 1) in plan.writes
    assert not plan.reads


def test_label_older_than_retention_is_ignored() -> None:
    plan = plan_label(LabelEvent("cb2", T0, T0 + 60 * 86400, {Entity.MERCHANT: "m1"}))
    assert plan.writes == []


def test_interaction_plan_filters_by_event_type() -> None:
    view = FeatureEvent("e1", Source.INTERACTION, "view", T0,
                        {Entity.SKU: "S1", Entity.CUSTOMER: "c1"}, {"qty": 1}, {"sku": "S1"})
    fields = [op[2] for op in plan_event(view, read=False, record=True).writes if op[0] == "I"]
    k1h = int(T0 // 300)
    assert f"views@300|{k1h}" in fields
    assert not any(str(f).startswith(("carts@", "units_sold@")) for f in fields)
