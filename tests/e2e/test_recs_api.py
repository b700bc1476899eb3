"""Recommendations over HTTP: widgets, real-time fold-in, cold start, item-to-item, filters,
bad input, widget admin and click-through."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

pytestmark = pytest.mark.e2e
SEEDED = re.compile(r"^SKU-\d{5}$")  # the demo catalogue's SKUs


def _catalogue(http: httpx.Client) -> dict[str, str]:
    """SKU -> category of the seeded demo catalogue (the one the model was trained on; other
    tests add products of their own)."""
    skus: dict[str, str] = {}
    cursor = None
    while True:
        params = {"limit": 200} | ({"cursor": cursor} if cursor else {})
        page = http.get("/v1/products", params=params).json()
        skus |= {p["sku"]: p["category"] for p in page["items"] if SEEDED.match(p["sku"])}
        cursor = page.get("next_cursor")
        if not cursor:
            return skus


def _views(customer: str, session: str, skus: list[str], rec_id: str | None = None) -> list[dict]:
    now = datetime.now(UTC)
    return [
        {
            "event_id": f"{session}-{i}-{uuid.uuid4().hex[:6]}",
            "type": "view",
            "customer_id": customer,
            "session_id": session,
            "sku": sku,
            "timestamp": (now - timedelta(seconds=len(skus) - i)).isoformat(),
        }
        | ({"recommendation_id": rec_id} if rec_id else {})
        for i, sku in enumerate(skus)
    ]


def test_cold_start_then_personalized_after_a_few_views(http: httpx.Client) -> None:
    catalogue = _catalogue(http)
    by_cat = Counter(catalogue.values())
    category = by_cat.most_common(1)[0][0]
    customer, session = f"new-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    cold = http.get(f"/v1/recommendations/{customer}", params={"k": 5, "category": category})
    assert cold.status_code == 200, cold.text
    body = cold.json()
    assert body["items"] and {i["reason"] for i in body["items"]} == {"trending"}
    assert body["model_version"] and body["recommendation_id"].startswith("rec_")

    viewed = [s for s, c in catalogue.items() if c == category][:3]
    r = http.post("/v1/events", json=_views(customer, session, viewed))
    assert r.json()["accepted"] == 3
    warm = http.get(
        f"/v1/recommendations/{customer}",
        params={"k": 6, "session_id": session, "widget": "home"},
    ).json()
    reasons = [i["reason"] for i in warm["items"]]
    assert reasons[0] == "personalized", warm
    shown = [catalogue[i["sku"]] for i in warm["items"] if i["reason"] == "personalized"]
    # the three views pull the shopper's vector into that category (the home widget caps a
    # category at 3 items, so it cannot be more than half of 6)
    assert shown.count(category) >= 2


def test_anonymous_shopper_by_session_alone(http: httpx.Client) -> None:
    catalogue = _catalogue(http)
    category = Counter(catalogue.values()).most_common(1)[0][0]
    session = f"s-anon-{uuid.uuid4().hex[:8]}"
    cold = http.get("/v1/recommendations", params={"session_id": session, "k": 4})
    assert cold.status_code == 200, cold.text
    assert {i["reason"] for i in cold.json()["items"]} == {"trending"}
    viewed = [s for s, c in catalogue.items() if c == category][:3]
    events = [
        {k: v for k, v in e.items() if k != "customer_id"} for e in _views("", session, viewed)
    ]
    assert http.post("/v1/events", json=events).json()["accepted"] == 3
    warm = http.get("/v1/recommendations", params={"session_id": session, "k": 6}).json()
    assert warm["items"][0]["reason"] == "personalized", warm
    missing = http.get("/v1/recommendations", params={"k": 4})
    assert missing.status_code == 422
    assert missing.json()["error"]["field"] == "session_id"


def test_item_to_item_and_filters(http: httpx.Client, admin: dict[str, str]) -> None:
    catalogue = _catalogue(http)
    sku = next(iter(catalogue))
    similar = http.get(f"/v1/products/{sku}/similar", params={"k": 5}).json()
    assert similar["items"] and sku not in {i["sku"] for i in similar["items"]}
    assert {i["reason"] for i in similar["items"]} == {"similar"}
    together = http.get(f"/v1/products/{sku}/bought-together", params={"k": 5})
    assert together.status_code == 200
    # out of stock everywhere: never recommended
    gone = similar["items"][0]["sku"]
    stock = http.get(f"/v1/stock/{gone}").json()["warehouses"]
    for w in stock:
        r = http.put(
            f"/v1/stock/{w['warehouse_id']}/{gone}", headers=admin, json={"on_hand": w["allocated"]}
        )
        assert r.status_code == 200, r.text
    # replicas re-read the out-of-stock set at most once a second
    deadline = time.monotonic() + 5
    while True:
        again = http.get(f"/v1/products/{sku}/similar", params={"k": 5}).json()
        shown = {i["sku"] for i in again["items"]}
        if gone not in shown or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert gone not in shown and len(shown) == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"k": 0}, "k"),
        ({"k": 101}, "k"),
        ({"widget": "nope"}, "widget"),
        ({"context_sku": "NOPE-SKU"}, "context_sku"),
    ],
)
def test_bad_input_is_422(http: httpx.Client, params: dict, field: str) -> None:
    r = http.get("/v1/recommendations/someone", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


def test_widget_admin_and_click_through(http: httpx.Client, admin: dict[str, str]) -> None:
    name = f"w{uuid.uuid4().hex[:6]}"
    assert http.put(f"/v1/widgets/{name}", json={"k": 4}).status_code == 401
    bad = http.put(f"/v1/widgets/{name}", headers=admin, json={"k": 4, "strategy": "magic"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "strategy"
    r = http.put(
        f"/v1/widgets/{name}",
        headers=admin,
        json={"strategy": "trending", "k": 4, "exclude_purchased": False, "fallback": ["trending"]},
    )
    assert r.status_code == 200, r.text
    assert name in http.get("/v1/widgets", headers=admin).json()
    customer = f"ctr-{uuid.uuid4().hex[:8]}"
    rec = http.get(f"/v1/recommendations/{customer}", params={"widget": name}).json()
    assert len(rec["items"]) == 4, rec
    clicked = [rec["items"][0]["sku"]]
    http.post("/v1/events", json=_views(customer, "s-ctr", clicked, rec["recommendation_id"]))
    stats = http.get(f"/v1/widgets/{name}/stats", headers=admin).json()
    assert stats["impressions"] == 1 and stats["clicks"] == 1
    assert stats["click_through_rate"] == 1.0
    assert http.delete(f"/v1/widgets/{name}", headers=admin).status_code == 204
    gone = http.get(f"/v1/recommendations/{customer}", params={"widget": name})
    assert gone.status_code == 422
