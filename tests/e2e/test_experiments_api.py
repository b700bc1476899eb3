"""Experiments over HTTP: a widget A/B test from creation to results, shoppers split between
the variants and sticky on repeat, and the errors (401, 404, 409, 422)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e
SHOPPERS = 60


def _widget(http: httpx.Client, admin: dict[str, str], name: str, k: int) -> None:
    r = http.put(
        f"/v1/widgets/{name}",
        headers=admin,
        json={"strategy": "trending", "k": k, "exclude_purchased": False, "fallback": ["trending"]},
    )
    assert r.status_code == 200, r.text


def _experiment(key: str, widget: str, small: str) -> dict[str, Any]:
    return {
        "key": key,
        "name": "Fewer items",
        "description": "does a shorter list convert better?",
        "target": {"kind": "widget", "name": widget},
        "variants": [
            {"name": "control", "weight": 50, "config": {}},
            {"name": "short", "weight": 50, "config": {"widget": small}},
        ],
    }


def _until(check: Any, timeout: float = 10.0) -> Any:
    """Other replicas see a start within their polling interval: ask again until they do."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_a_widget_experiment_end_to_end(http: httpx.Client, admin: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:6]
    widget, small, key = f"exp-{tag}", f"exp-{tag}-short", f"ab-{tag}"
    _widget(http, admin, widget, 6)
    _widget(http, admin, small, 2)
    created = http.post("/v1/experiments", headers=admin, json=_experiment(key, widget, small))
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "draft" and created.json()["control"] == "control"
    started = http.post(f"/v1/experiments/{key}/start", headers=admin)
    assert started.status_code == 200 and started.json()["status"] == "running"

    def rec(customer: str) -> dict[str, Any]:
        r = http.get(f"/v1/recommendations/{customer}", params={"widget": widget})
        assert r.status_code == 200, r.text
        return r.json()

    shoppers = [f"ab-{tag}-{i}" for i in range(SHOPPERS)]
    assert _until(lambda: all(rec(shoppers[0])["experiment"] for _ in range(4)))
    time.sleep(1.5)  # every replica has polled since the start
    variants: Counter[str] = Counter()
    for customer in shoppers:
        want = http.get(
            f"/v1/experiments/{key}/assignment", params={"customer_id": customer}
        ).json()
        assert want["status"] == "running"
        for _ in range(2):  # sticky on repeat, whichever replica answers
            body = rec(customer)
            assert body["experiment"] == {"key": key, "variant": want["variant"]}
            assert body["widget"] == widget
            assert len(body["items"]) == (2 if want["variant"] == "short" else 6)
        variants[want["variant"]] += 1
    assert set(variants) == {"control", "short"} and min(variants.values()) >= 15

    def results() -> dict[str, Any] | None:
        body = http.get(f"/v1/experiments/{key}/results", headers=admin).json()
        seen = sum(v["visitors"] for v in body["variants"])
        return body if seen == SHOPPERS else None

    body = _until(results)
    assert body is not None, "exposures were not all recorded"
    assert {k: body[k] for k in ("key", "status", "target")} == {
        "key": key,
        "status": "running",
        "target": {"kind": "widget", "name": widget},
    }
    by_name = {v["name"]: v for v in body["variants"]}
    assert {n: v["visitors"] for n, v in by_name.items()} == dict(variants)
    for v in body["variants"]:
        assert set(v) == {
            "name",
            "weight",
            "visitors",
            "converters",
            "conversion_rate",
            "conversion_ci",
            "revenue",
            "revenue_per_visitor",
            "rpv_ci",
            "vs_control",
        }
        assert v["converters"] == 0 and abs(v["conversion_ci"][0]) < 1e-9
    assert by_name["control"]["vs_control"] is None
    assert set(by_name["short"]["vs_control"]) == {
        "conversion_lift",
        "conversion_lift_ci",
        "conversion_p_value",
        "rpv_lift",
        "rpv_lift_ci",
        "rpv_p_value",
    }
    listed = http.get("/v1/experiments", headers=admin, params={"status": "running"}).json()
    assert key in {e["key"] for e in listed["experiments"]}
    stopped = http.post(f"/v1/experiments/{key}/stop", headers=admin)
    assert stopped.status_code == 200 and stopped.json()["stopped_at"]
    assert _until(lambda: all(rec(shoppers[0])["experiment"] is None for _ in range(4)))


def test_experiment_errors(http: httpx.Client, admin: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:6]
    widget, small, key = f"exp-{tag}", f"exp-{tag}-short", f"err-{tag}"
    _widget(http, admin, widget, 4)
    _widget(http, admin, small, 2)
    body = _experiment(key, widget, small)
    assert http.post("/v1/experiments", json=body).status_code == 401
    assert http.get("/v1/experiments", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert http.get("/v1/experiments/nope", headers=admin).status_code == 404
    assert http.post("/v1/experiments/nope/start", headers=admin).status_code == 404
    assert http.get("/v1/experiments/nope/results", headers=admin).status_code == 404
    unknown = http.get("/v1/experiments/nope/assignment", params={"customer_id": "c"})
    assert unknown.status_code == 404

    def refused(change: dict[str, Any], field: str) -> None:
        r = http.post("/v1/experiments", headers=admin, json=body | change)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == field

    refused({"variants": [{"name": "control", "weight": 100}]}, "variants")
    refused({"variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 40}]}, "variants")
    refused(
        {"variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]},
        "variants[1].name",
    )
    refused(
        {
            "variants": [
                {"name": "a", "weight": 50},
                {"name": "b", "weight": 50, "config": {"k": 1}},
            ]
        },
        "variants[1].config.k",
    )
    refused({"target": {"kind": "banner", "name": widget}}, "target.kind")
    refused({"target": {"kind": "widget", "name": "no-such-widget"}}, "target")
    refused({"target": {"kind": "price_rule", "name": "demand"}}, "target")

    assert http.post("/v1/experiments", headers=admin, json=body).status_code == 201
    assert http.post("/v1/experiments", headers=admin, json=body).status_code == 409
    assert http.post(f"/v1/experiments/{key}/stop", headers=admin).status_code == 409
    assert http.post(f"/v1/experiments/{key}/start", headers=admin).status_code == 200
    assert http.post(f"/v1/experiments/{key}/start", headers=admin).status_code == 409
    edit = http.patch(
        f"/v1/experiments/{key}",
        headers=admin,
        json={"variants": [{"name": "control", "weight": 90}, {"name": "short", "weight": 10}]},
    )
    assert edit.status_code == 409 and edit.json()["error"]["field"] == "variants"
    rival = http.post("/v1/experiments", headers=admin, json=body | {"key": f"{key}-2"})
    assert rival.status_code == 201
    second = http.post(f"/v1/experiments/{key}-2/start", headers=admin)
    assert second.status_code == 409 and second.json()["error"]["field"] == "target"
    assert http.post(f"/v1/experiments/{key}/stop", headers=admin).status_code == 200
    assert http.post(f"/v1/experiments/{key}/start", headers=admin).status_code == 409
    assert http.post(f"/v1/experiments/{key}-2/start", headers=admin).status_code == 200
    assert http.post(f"/v1/experiments/{key}-2/stop", headers=admin).status_code == 200
