"""Analytics over HTTP on Ray Serve: KPIs and the funnel of the seeded store are non-empty and
consistent; events and recommendations carry a channel; admin only; 422 naming the field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest

pytestmark = pytest.mark.e2e


def error(r: httpx.Response, status: int, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    if field is not None:
        assert body["field"] == field, body
    return body


def test_kpis_of_the_seeded_store_are_consistent(http: httpx.Client, admin: dict) -> None:
    r = http.get("/v1/analytics/kpis", headers=admin)
    assert r.status_code == 200, r.text
    k = r.json()
    assert k["channel"] is None and k["currency"] == "EUR"
    assert k["orders"] > 0 and k["revenue"] > 0 and k["visitors"] > 0
    assert 0 < k["buyers"] <= k["orders"]
    assert k["average_order_value"] == pytest.approx(k["revenue"] / k["orders"], abs=0.01)
    assert k["conversion_rate"] == pytest.approx(k["buyers"] / k["visitors"])
    assert len(k["series"]) in (30, 31)  # the last 30 days, the partial days included
    assert sum(d["orders"] for d in k["series"]) == k["orders"]
    assert sum(d["revenue"] for d in k["series"]) == pytest.approx(k["revenue"], abs=0.05)
    fraud = k["fraud"]
    assert set(fraud["outcomes"]) == {"allow", "review", "block", "challenge"}
    assert fraud["decisions"] == sum(fraud["outcomes"].values())
    assert 0.0 <= fraud["fraud_rate"] <= 1.0 and fraud["chargebacks"] >= 0
    for row in k["recommendations"]:
        assert row["clicks"] <= row["impressions"]


def test_kpis_per_channel_add_up(http: httpx.Client, admin: dict) -> None:
    period = {"from": "2020-01-01", "to": "2020-12-31"}
    empty = http.get("/v1/analytics/kpis", headers=admin, params=period).json()
    assert (empty["orders"], empty["visitors"], empty["conversion_rate"]) == (0, 0, 0.0)
    total = http.get("/v1/analytics/kpis", headers=admin).json()
    per_channel = [
        http.get(
            "/v1/analytics/kpis",
            headers=admin,
            params={"from": total["from"], "to": total["to"], "channel": c},
        ).json()
        for c in ("web-de", "web-fr", "web-nl", "web-es", "app")
    ]
    # the seeded orders all have a channel; orders other tests place may have none
    assert 0 < sum(p["orders"] for p in per_channel) <= total["orders"]
    assert sum(p["visitors"] for p in per_channel) > 0


def test_the_funnel_narrows(http: httpx.Client, admin: dict) -> None:
    r = http.get("/v1/analytics/funnel", headers=admin)
    assert r.status_code == 200, r.text
    steps = r.json()["steps"]
    assert [s["step"] for s in steps] == ["view", "add_to_cart", "purchase"]
    counts = [s["visitors"] for s in steps]
    assert counts[0] > 0 and counts[0] >= counts[1] >= counts[2] > 0
    assert steps[0]["rate_from_start"] == 1.0
    assert steps[2]["rate_from_start"] == pytest.approx(counts[2] / counts[0])


def test_events_and_recommendations_carry_a_channel(http: httpx.Client, admin: dict) -> None:
    sku = http.get("/v1/products", params={"limit": 1}).json()["items"][0]["sku"]
    session = f"an-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).isoformat()
    event = {"event_id": session, "type": "view", "session_id": session, "sku": sku}
    bad = {**event, "timestamp": now, "channel": "kiosk-none"}
    error(http.post("/v1/events", json=[bad], headers=admin), 422, "events[0].channel")
    before = http.get("/v1/analytics/kpis", headers=admin, params={"channel": "app"}).json()
    r = http.post("/v1/events", json=[{**event, "timestamp": now, "channel": "app"}])
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    after = http.get("/v1/analytics/kpis", headers=admin, params={"channel": "app"}).json()
    assert after["visitors"] == before["visitors"] + 1
    rec = http.get(f"/v1/recommendations/{session}", params={"channel": "app"})
    assert rec.status_code == 200, rec.text
    nope = {"channel": "nope"}
    error(http.get(f"/v1/recommendations/{session}", params=nope, headers=admin), 422, "channel")


def test_admin_only_and_bad_input_names_the_field(http: httpx.Client, admin: dict) -> None:
    for path in ("/v1/analytics/kpis", "/v1/analytics/funnel"):
        error(http.get(path), 401)
        error(http.get(path, headers=admin, params={"from": "yesterday"}), 422, "from")
        error(
            http.get(path, headers=admin, params={"from": "2026-03-02", "to": "2026-03-01"}),
            422,
            "from",
        )
        error(
            http.get(path, headers=admin, params={"from": "2024-01-01", "to": "2026-01-01"}),
            422,
            "from",
        )
        body = error(http.get(path, headers=admin, params={"channel": "nope"}), 422, "channel")
        assert body["code"] == "unknown_channel"
