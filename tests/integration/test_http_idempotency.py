"""Replays over HTTP create nothing twice: 1,000 concurrent copies (16 client threads) of the
same order (same Idempotency-Key), the same events batch (same event ids) and the same fraud
feedback (same decision and label), against the app under plain uvicorn on PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

REPLAYS = 1000
THREADS = 16


@pytest.fixture(scope="module")
def http(plain_app: Any) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS)
    with plain_app.client(timeout=60, limits=limits) as client:
        yield client


def _replay(send: Callable[[], httpx.Response], label: str) -> list[httpx.Response]:
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(lambda _: send(), range(REPLAYS)))
    took = time.perf_counter() - started
    print(f"{label}: {REPLAYS} replays over {THREADS} threads in {took:.1f} s")
    return answers


def _scalar(app: Any, sql: str, **params: Any) -> Any:
    engine = create_engine(app.database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()
    finally:
        engine.dispose()


def _allocated(http: httpx.Client, sku: str) -> int:
    levels = http.get(f"/v1/stock/{sku}").json()["warehouses"]
    return sum(level["allocated"] for level in levels)


def test_an_order_replayed_1000_times_is_one_order_reserving_stock_once(
    plain_app: Any, http: httpx.Client
) -> None:
    shop = plain_app.shop
    key = f"order-{uuid.uuid4().hex}"
    body = {
        "customer_id": shop.customer_id,
        "currency": "EUR",
        "lines": [{"sku": "FLT-A", "qty": 3}, {"sku": "FLT-C", "qty": 1}],
    }
    before = {sku: _allocated(http, sku) for sku in ("FLT-A", "FLT-C")}
    answers = _replay(
        lambda: http.post("/v1/orders", json=body, headers={"Idempotency-Key": key}), "orders"
    )
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 1, 200: REPLAYS - 1}, statuses
    assert all(
        r.headers.get("Idempotent-Replayed") == "true" for r in answers if r.status_code == 200
    )
    assert len({r.json()["id"] for r in answers}) == 1
    assert _scalar(plain_app, "SELECT count(*) FROM orders WHERE idempotency_key = :k", k=key) == 1
    assert _allocated(http, "FLT-A") - before["FLT-A"] == 3
    assert _allocated(http, "FLT-C") - before["FLT-C"] == 1


def test_an_events_batch_replayed_1000_times_is_counted_once(
    plain_app: Any, http: httpx.Client
) -> None:
    customer = f"cus-ev-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    batch = [
        {
            "event_id": f"{customer}-{kind}-{i}",
            "type": kind,
            "customer_id": customer,
            "session_id": f"s-{customer}",
            "sku": "FLT-B",
            "timestamp": (now - timedelta(seconds=10 - i)).isoformat(),
        }
        for i, kind in enumerate(["view", "view", "view", "add_to_cart"])
    ]
    answers = _replay(lambda: http.post("/v1/events", json={"events": batch}), "events")
    assert {r.status_code for r in answers} == {200}
    bodies = [r.json() for r in answers]
    assert sum(b["accepted"] for b in bodies) == len(batch)
    assert sum(b["duplicates"] for b in bodies) == len(batch) * (REPLAYS - 1)
    assert not any(b["degraded"] for b in bodies)
    stored = _scalar(
        plain_app, "SELECT count(*) FROM interactions WHERE customer_id = :c", c=customer
    )
    assert stored == len(batch)
    features = http.get(f"/v1/features/customer/{customer}", headers=plain_app.admin).json()
    activity = features["views"]["customer_activity"]["features"]
    assert activity["customer_activity.views_10m"] == 3


def test_fraud_feedback_replayed_1000_times_is_one_label_counted_once(
    plain_app: Any, http: httpx.Client
) -> None:
    customer, card = f"cus-fb-{uuid.uuid4().hex[:8]}", f"fp-{uuid.uuid4().hex[:8]}"
    scored = http.post(
        "/v1/fraud/score",
        json={
            "transaction_id": f"tx-{uuid.uuid4().hex}",
            "customer_id": customer,
            "amount": 80,
            "currency": "EUR",
            "card": {"fingerprint": card, "country": "DE"},
        },
    )
    assert scored.status_code == 200, scored.text
    decision_id = scored.json()["decision_id"]
    answers = _replay(
        lambda: http.post(
            "/v1/fraud/feedback",
            json={"decision_id": decision_id, "label": "fraud", "note": "replayed webhook"},
        ),
        "feedback",
    )
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 1, 200: REPLAYS - 1}, statuses
    assert all(
        r.headers.get("Idempotent-Replayed") == "true" for r in answers if r.status_code == 200
    )
    assert len({r.json()["feedback_id"] for r in answers}) == 1
    assert not any(r.json()["features_degraded"] for r in answers)
    stored = _scalar(
        plain_app, "SELECT count(*) FROM fraud_feedback WHERE decision_id = :d", d=decision_id
    )
    assert stored == 1
    for entity, entity_id, view in (
        ("customer", customer, "customer_txn"),
        ("card", card, "card_txn"),
    ):
        found = http.get(f"/v1/features/{entity}/{entity_id}", headers=plain_app.admin).json()
        assert found["views"][view]["features"][f"{view}.frauds_known"] == 1, entity
    logged = http.get(f"/v1/fraud/decisions/{decision_id}", headers=plain_app.admin).json()
    assert [f["label"] for f in logged["feedback"]] == ["fraud"]
