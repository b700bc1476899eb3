"""Event ingestion and feature inspection over HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _sku(http: httpx.Client, admin: dict[str, str]) -> tuple[str, str]:
    sku, category = f"EV-{uuid.uuid4().hex[:8]}", f"cat-{uuid.uuid4().hex[:6]}"
    r = http.post(
        "/v1/products",
        headers=admin,
        json={"sku": sku, "title": "t", "category": category, "list_price": 3, "currency": "EUR"},
    )
    assert r.status_code == 201, r.text
    return sku, category


def _events(sku: str, customer: str, n: int, kind: str = "view") -> list[dict]:
    now = datetime.now(UTC)
    return [
        {
            "event_id": f"{customer}-{kind}-{i}",
            "type": kind,
            "customer_id": customer,
            "session_id": f"s-{customer}",
            "sku": sku,
            "timestamp": (now - timedelta(seconds=n - i)).isoformat(),
        }
        for i in range(n)
    ]


def test_ingest_counts_each_event_once_and_inspection_shows_it(
    http: httpx.Client, admin: dict[str, str]
) -> None:
    sku, category = _sku(http, admin)
    customer = f"cus-{uuid.uuid4().hex[:8]}"
    batch = _events(sku, customer, 5) + _events(sku, customer, 2, "add_to_cart")
    r = http.post("/v1/events", json={"events": batch})
    assert r.json() == {"accepted": 7, "duplicates": 0, "degraded": False}
    again = http.post("/v1/events", json=batch[:3] + batch[:1])  # the bare-list form
    assert again.json() == {"accepted": 0, "duplicates": 4, "degraded": False}

    body = http.get(f"/v1/features/sku/{sku}", headers=admin).json()
    assert body["degraded"] is False
    sku_view = body["views"]["sku_activity"]
    assert sku_view["features"]["sku_activity.views_1h"] == 5
    assert sku_view["features"]["sku_activity.carts_1d"] == 2
    assert sku_view["expired"] is False
    assert sku_view["updated_at"] > 0
    cust = http.get(f"/v1/features/customer/{customer}", headers=admin).json()
    assert cust["views"]["customer_activity"]["features"]["customer_activity.views_10m"] == 5
    assert cust["views"]["customer_activity"]["features"]["customer_activity.last_viewed"] == sku
    cat = http.get(f"/v1/features/category/{category}", headers=admin).json()
    assert cat["views"]["category_activity"]["features"]["category_activity.views_1h"] == 5


def test_orders_feed_sales_velocity(http: httpx.Client, admin: dict[str, str]) -> None:
    sku, _ = _sku(http, admin)
    wid = f"w-{uuid.uuid4().hex[:6]}"
    assert (
        http.post(
            "/v1/warehouses", headers=admin, json={"id": wid, "name": wid, "country": "DE"}
        ).status_code
        == 201
    )
    http.put(f"/v1/stock/{wid}/{sku}", headers=admin, json={"on_hand": 9})
    cid = http.post("/v1/customers", json={"email": "v@example.com"}).json()["id"]
    r = http.post(
        "/v1/orders",
        json={"customer_id": cid, "currency": "EUR", "lines": [{"sku": sku, "qty": 4}]},
    )
    assert r.status_code == 201
    features = http.get(f"/v1/features/sku/{sku}", headers=admin).json()["views"]
    assert features["sku_activity"]["features"]["sku_activity.units_sold_1d"] == 4


def test_inspection_needs_admin_and_a_known_entity(http: httpx.Client, admin: dict) -> None:
    assert http.get("/v1/features/customer/x").status_code == 401
    r = http.get("/v1/features/planet/x", headers=admin)
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "entity"
    unseen = http.get("/v1/features/customer/never-seen", headers=admin).json()
    assert unseen["views"]["customer_txn"]["expired"] is True
    assert unseen["views"]["customer_txn"]["features"]["customer_txn.txn_count_1d"] == 0


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"type": "teleport"}, "invalid_request", "events[0].type"),
        ({"customer_id": None, "session_id": None}, "invalid_event", "events[0].customer_id"),
        ({"sku": None}, "invalid_event", "events[0].sku"),
        ({"sku": "NO-SUCH-SKU"}, "unknown_sku", "events[0].sku"),
        ({"timestamp": "2026-01-01T00:00:00"}, "invalid_request", "events[0].timestamp"),
        ({"timestamp": "2999-01-01T00:00:00Z"}, "invalid_event", "events[0].timestamp"),
        ({"event_id": ""}, "invalid_request", "events[0].event_id"),
    ],
    ids=[
        "bad-type",
        "no-subject",
        "view-without-sku",
        "unknown-sku",
        "naive-time",
        "future",
        "empty-id",
    ],
)
def test_bad_events_are_refused_and_nothing_is_stored(
    http: httpx.Client, admin: dict, change: dict, code: str, field: str
) -> None:
    sku, _ = _sku(http, admin)
    good = _events(sku, f"bad-{uuid.uuid4().hex[:6]}", 2)
    bad = dict(good[0]) | change
    r = http.post("/v1/events", json={"events": [bad, good[1]]})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["field"] == field
    views = http.get(f"/v1/features/sku/{sku}", headers=admin).json()["views"]
    assert views["sku_activity"]["features"]["sku_activity.views_1h"] == 0
    assert http.post("/v1/events", json={"events": []}).status_code == 422


def test_the_catalogue_lists_what_inspection_serves(http: httpx.Client, admin: dict) -> None:
    assert http.get("/v1/features").status_code == 401
    body = http.get("/v1/features", headers=admin).json()
    assert body["definitions_version"]
    listed = {v["name"]: [f["name"] for f in v["features"]] for v in body["views"]}
    for entity in ("customer", "merchant", "session"):
        served = http.get(f"/v1/features/{entity}/never-seen", headers=admin).json()["views"]
        for view, values in served.items():
            # what a decision reads: the stored values and the means and ratios derived from them
            assert set(values["features"]) == set(listed[view]), view
    only = http.get("/v1/features", params={"source": "interaction"}, headers=admin).json()
    assert {v["source"] for v in only["views"]} == {"interaction"}
    assert "session_activity" in {v["name"] for v in only["views"]}
    bad = http.get("/v1/features", params={"source": "planet"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "source"
