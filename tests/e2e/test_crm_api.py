"""Customer segments over HTTP on Ray Serve: compute over the seeded store, a customer's
segment on GET /v1/customers/{id}, the summary, the high-value list, and bad input (401 without
the admin token, 422 naming the field)."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.e2e

SEGMENTS = {
    "champions",
    "loyal",
    "potential_loyalist",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cannot_lose",
    "hibernating",
    "lost",
}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error(r: httpx.Response, status: int, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    if field is not None:
        assert body["field"] == field, body
    return body


def a_paid_order(http: httpx.Client, admin: dict, price: float) -> str:
    """A new customer with one paid order of ``price`` EUR; returns the customer id."""
    warehouse, sku, customer = uid("wh"), uid("CRM"), uid("cus")
    for path, body in [
        ("/v1/warehouses", {"id": warehouse, "name": "CRM", "country": "DE"}),
        (
            "/v1/products",
            {"sku": sku, "title": "Lamp", "category": "crm", "list_price": price,
             "cost": round(price / 2, 2), "currency": "EUR"},
        ),
        ("/v1/customers", {"id": customer, "email": f"{customer}@example.com", "name": "Crm"}),
    ]:  # fmt: skip
        r = http.post(path, headers=admin, json=body)
        assert r.status_code == 201, r.text
    r = http.put(f"/v1/stock/{warehouse}/{sku}", headers=admin, json={"on_hand": 5})
    assert r.status_code == 200, r.text
    r = http.post(
        "/v1/orders",
        json={"customer_id": customer, "currency": "EUR", "lines": [{"sku": sku, "qty": 1}]},
    )
    assert r.status_code == 201, r.text
    r = http.post(f"/v1/orders/{r.json()['id']}/pay")
    assert r.status_code == 200, r.text
    return customer


def test_compute_then_read_segments(http: httpx.Client, admin: dict) -> None:
    buyer = a_paid_order(http, admin, 123.45)
    never = uid("cus")
    r = http.post("/v1/customers", json={"id": never, "email": f"{never}@example.com"})
    assert r.status_code == 201, r.text

    r = http.post("/v1/crm/segments/compute", headers=admin)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["customers"] > 10
    assert set(result["segments"]) == SEGMENTS
    assert sum(result["segments"].values()) == result["customers"]
    assert result["lookback_days"] == 365

    me = http.get(f"/v1/customers/{buyer}").json()
    seg = me["segment"]
    assert seg is not None and seg["segment"] in SEGMENTS
    assert (seg["frequency"], seg["recency_days"], seg["monetary"]) == (1, 0, 123.45)
    assert seg["r"] >= 4 and 1 <= seg["f"] <= 5 and 1 <= seg["m"] <= 5
    assert me["attributes"]["rfm_segment"] == seg["segment"]
    assert http.get(f"/v1/customers/{never}").json()["segment"] is None

    summary = http.get("/v1/crm/segments", headers=admin).json()
    assert summary["computed_at"] is not None
    assert [row["segment"] for row in summary["segments"]] == [
        "champions", "loyal", "potential_loyalist", "new", "promising", "need_attention",
        "about_to_sleep", "at_risk", "cannot_lose", "hibernating", "lost",
    ]  # fmt: skip
    assert sum(row["customers"] for row in summary["segments"]) == result["customers"]
    assert sum(row["share"] for row in summary["segments"]) == pytest.approx(1.0, abs=1e-3)


def test_high_value_customers(http: httpx.Client, admin: dict) -> None:
    big = a_paid_order(http, admin, 99_999.0)  # the most valuable customer of the store
    assert http.post("/v1/crm/segments/compute", headers=admin, json={}).status_code == 200
    r = http.get("/v1/crm/high-value", params={"limit": 5}, headers=admin)
    assert r.status_code == 200, r.text
    customers = r.json()["customers"]
    assert len(customers) == 5
    assert customers[0]["customer_id"] == big
    assert customers[0]["email"] == f"{big}@example.com"
    assert set(customers[0]) == {
        "customer_id", "email", "name", "segment", "r", "f", "m", "monetary", "frequency",
        "recency_days",
    }  # fmt: skip
    values = [c["monetary"] for c in customers]
    assert values == sorted(values, reverse=True)
    segment = customers[0]["segment"]
    r = http.get("/v1/crm/high-value", params={"segment": segment, "limit": 500}, headers=admin)
    assert r.status_code == 200
    assert {c["segment"] for c in r.json()["customers"]} == {segment}


def test_admin_token_required(http: httpx.Client) -> None:
    error(http.post("/v1/crm/segments/compute"), 401)
    error(http.get("/v1/crm/segments"), 401)
    error(http.get("/v1/crm/high-value", headers={"Authorization": "Bearer wrong"}), 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lookback_days": 0}, "lookback_days"),
        ({"lookback_days": "many"}, "lookback_days"),
        ({"as_of": "yesterday"}, "as_of"),
        ({"as_of": "2026-01-01T00:00:00"}, "as_of"),  # no time zone
        ({"as_of": "2999-01-01"}, "as_of"),  # the future
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_compute_requests_name_the_field(
    http: httpx.Client, admin: dict, body: dict, field: str
) -> None:
    error(http.post("/v1/crm/segments/compute", headers=admin, json=body), 422, field)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"segment": "vip"}, "segment"), ({"limit": 0}, "limit"), ({"limit": 501}, "limit")],
)
def test_bad_high_value_requests_name_the_field(
    http: httpx.Client, admin: dict, params: dict, field: str
) -> None:
    error(http.get("/v1/crm/high-value", params=params, headers=admin), 422, field)
