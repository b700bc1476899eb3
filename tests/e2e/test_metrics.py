"""Prometheus metrics over HTTP (``GET /metrics``) from the Serve replica's multiprocess
directory: requests by route and status, latency, fraud decisions, storefront events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from serving.settings import Settings
from tests.e2e.test_fraud_api import _payment
from tests.servers import metric_samples as _samples
from tests.servers import metric_sum as _sum

pytestmark = pytest.mark.e2e
SCORE = {"method": "POST", "route": "/v1/fraud/score"}


def test_metrics_need_the_admin_token(http: httpx.Client) -> None:
    assert http.get("/metrics").status_code == 401  # a channel's secret key is not enough


def test_decisions_requests_and_events_are_counted(
    http: httpx.Client, admin: dict, serve_settings: Settings
) -> None:
    before = _samples(http, admin)
    outcomes = []
    for _ in range(3):
        r = http.post("/v1/fraud/score", json=_payment())
        assert r.status_code == 200, r.text
        outcomes.append(r.json()["outcome"])
    replay = _payment()
    assert http.post("/v1/fraud/score", json=replay).status_code == 200
    assert http.post("/v1/fraud/score", json=replay).headers["Idempotent-Replayed"] == "true"
    assert http.post("/v1/fraud/score", json=_payment(amount=-1)).status_code == 422
    customer = f"met-{uuid.uuid4().hex[:8]}"
    event = {
        "event_id": f"{customer}-1",
        "type": "search",
        "customer_id": customer,
        "query": "shoes",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    assert http.post("/v1/events", json=[event]).json()["accepted"] == 1
    assert http.post("/v1/events", json=[event]).json()["duplicates"] == 1
    after = _samples(http, admin)

    def grew(name: str, **labels: str) -> float:
        return _sum(after, name, **labels) - _sum(before, name, **labels)

    # a replayed answer is not a second decision
    assert grew("cartwise_fraud_decisions_total") == 4
    assert grew("cartwise_fraud_decisions_total", model_version="test-1") == 4
    assert grew("cartwise_fraud_decisions_total", outcome=outcomes[0]) >= 1
    assert grew("cartwise_http_requests_total", **SCORE, status="200") == 5
    assert grew("cartwise_http_requests_total", **SCORE, status="422") == 1
    assert grew("cartwise_http_request_duration_seconds_count", **SCORE) == 6
    assert grew("cartwise_http_request_duration_seconds_sum", **SCORE) > 0
    assert grew("cartwise_events_total", result="accepted") == 1
    assert grew("cartwise_events_total", result="duplicate") == 1
    routes = {dict(labels).get("route") for (n, labels) in after if n.startswith("cartwise_http")}
    assert not any(r and "met-" in r for r in routes)  # route templates, never ids
    # the replica counted into the machine's directory, which every replica's scrape adds up
    assert list((serve_settings.data_dir / "metrics").glob("counter_*.db"))
