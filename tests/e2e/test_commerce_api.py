"""The commerce API over HTTP, on Ray Serve, against real SQLite and Redis."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import error, uid

pytestmark = pytest.mark.e2e


@pytest.fixture
def shop(http: httpx.Client, admin: dict[str, str]) -> Callable[..., dict]:
    """Make a customer, two warehouses (DE store with click-and-collect, FR) and a product."""

    def make(on_hand: tuple[int, int] = (5, 3), price: float = 19.99) -> dict:
        cid = http.post("/v1/customers", json={"email": "shopper@example.com", "country": "DE"})
        assert cid.status_code == 201, cid.text
        wde, wfr, sku = uid("wde"), uid("wfr"), uid("SKU")
        for wid, country, cc in ((wde, "DE", True), (wfr, "FR", False)):
            r = http.post(
                "/v1/warehouses",
                headers=admin,
                json={"id": wid, "name": wid, "country": country, "click_and_collect": cc},
            )
            assert r.status_code == 201, r.text
        r = http.post(
            "/v1/products",
            headers=admin,
            json={
                "sku": sku,
                "title": "Trail shoe",
                "category": "shoes/trail",
                "brand": "Acme",
                "list_price": price,
                "cost": 8.5,
                "currency": "EUR",
            },
        )
        assert r.status_code == 201, r.text
        for wid, n in zip((wde, wfr), on_hand, strict=True):
            r = http.put(f"/v1/stock/{wid}/{sku}", headers=admin, json={"on_hand": n})
            assert r.status_code == 200, r.text
        return {"customer": cid.json()["id"], "de": wde, "fr": wfr, "sku": sku}

    return make


def order_body(s: dict, qty: int = 1, **extra: object) -> dict:
    return {
        "customer_id": s["customer"],
        "currency": "EUR",
        "lines": [{"sku": s["sku"], "qty": qty}],
        **extra,
    }


def available(http: httpx.Client, sku: str) -> dict[str, int]:
    body = http.get(f"/v1/stock/{sku}").json()
    return {w["warehouse_id"]: w["available"] for w in body["warehouses"]}


def test_health_and_openapi(http: httpx.Client) -> None:
    health = http.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["database"] is True and health["redis"] is True
    assert health["versions"]["cartwise"]
    spec = http.get("/openapi.json").json()
    for path in (
        "/v1/orders",
        "/v1/products/{sku}",
        "/v1/stock/{warehouse_id}/{sku}",
        "/v1/orders/{order_id}/chargeback",
        "/v1/orders/{order_id}/cancel",
    ):
        assert path in spec["paths"], path


def test_customer_roundtrip_and_unknown(http: httpx.Client) -> None:
    r = http.post(
        "/v1/customers",
        json={"id": uid("cus"), "email": "a@example.com", "country": "NL", "name": "Ada"},
    )
    assert r.status_code == 201
    got = http.get(f"/v1/customers/{r.json()['id']}").json()
    assert got["email"] == "a@example.com" and got["country"] == "NL"
    error(http.get("/v1/customers/nobody"), 404, "customer_not_found")
    error(
        http.post("/v1/customers", json={"email": "x@example.com", "country": "XX"}),
        422,
        "unknown_country",
        "country",
    )
    error(http.post("/v1/customers", json={"country": "DE"}), 422, "invalid_request", "email")


def test_admin_writes_need_the_token(http: httpx.Client) -> None:
    body = {"sku": uid("SKU"), "title": "t", "category": "c", "list_price": 1, "currency": "EUR"}
    error(http.post("/v1/products", json=body), 401, "unauthorized")
    error(
        http.post("/v1/products", json=body, headers={"Authorization": "Bearer wrong"}),
        401,
        "unauthorized",
    )
    assert http.get(f"/v1/products/{body['sku']}").status_code == 404


def test_products_listing_paginates_by_category(http: httpx.Client, admin: dict) -> None:
    category = uid("cat")
    skus = sorted(uid("P") for _ in range(7))
    for sku in skus:
        r = http.post(
            "/v1/products",
            headers=admin,
            json={
                "sku": sku,
                "title": sku,
                "category": category,
                "list_price": "4.50",
                "currency": "EUR",
            },
        )
        assert r.status_code == 201, r.text
    http.post(
        "/v1/products",
        headers=admin,
        json={
            "sku": uid("HID"),
            "title": "h",
            "category": category,
            "list_price": 1,
            "currency": "EUR",
            "hidden": True,
        },
    )
    seen, cursor = [], None
    while True:
        params = {"category": category, "limit": 3} | ({"cursor": cursor} if cursor else {})
        page = http.get("/v1/products", params=params).json()
        seen += [p["sku"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == skus
    error(http.get("/v1/products", params={"cursor": "!!!"}), 422, "invalid_request", "cursor")
    error(http.get("/v1/products", params={"limit": 0}), 422, "invalid_request", "limit")
    error(
        http.post(
            "/v1/products",
            headers=admin,
            json={
                "sku": uid("N"),
                "title": "n",
                "category": "c",
                "list_price": -1,
                "currency": "EUR",
            },
        ),
        422,
        "invalid_amount",
        "list_price",
    )
    error(
        http.post(
            "/v1/products",
            headers=admin,
            json={
                "sku": uid("N"),
                "title": "n",
                "category": "c",
                "list_price": 1,
                "currency": "ZZZ",
            },
        ),
        422,
        "unknown_currency",
        "currency",
    )


def test_stock_levels(http: httpx.Client, admin: dict, shop: Callable[..., dict]) -> None:
    s = shop(on_hand=(5, 3))
    body = http.get(f"/v1/stock/{s['sku']}").json()
    assert body["available"] == 8
    error(
        http.put(f"/v1/stock/nowhere/{s['sku']}", headers=admin, json={"on_hand": 1}),
        404,
        "warehouse_not_found",
        "warehouse_id",
    )
    error(
        http.put(f"/v1/stock/{s['de']}/{s['sku']}", headers=admin, json={"on_hand": -1}),
        422,
        "invalid_quantity",
        "on_hand",
    )
    error(http.get("/v1/stock/NO-SUCH-SKU"), 404, "product_not_found")


def test_order_allocates_prefers_shipping_country_and_splits(
    http: httpx.Client, shop: Callable[..., dict]
) -> None:
    s = shop(on_hand=(5, 3))
    r = http.post("/v1/orders", json=order_body(s, 2, shipping_country="FR"))
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "placed"
    assert order["total"] == pytest.approx(39.98)
    assert [(a["warehouse_id"], a["qty"]) for a in order["allocations"]] == [(s["fr"], 2)]
    r = http.post("/v1/orders", json=order_body(s, 4, shipping_country="FR"))
    assert sorted((a["warehouse_id"], a["qty"]) for a in r.json()["allocations"]) == sorted(
        [(s["fr"], 1), (s["de"], 3)]
    )
    assert available(http, s["sku"]) == {s["de"]: 2, s["fr"]: 0}
    assert http.get(f"/v1/orders/{order['id']}").json() == order


def test_pickup_order_uses_only_the_store(http: httpx.Client, shop: Callable[..., dict]) -> None:
    s = shop(on_hand=(1, 9))
    body = error(
        http.post("/v1/orders", json=order_body(s, 2, pickup_warehouse_id=s["de"])),
        409,
        "insufficient_stock",
        "lines[0].qty",
    )
    assert body["items"] == [
        {"field": "lines[0].qty", "sku": s["sku"], "requested": 2, "available": 1}
    ]
    r = http.post("/v1/orders", json=order_body(s, 1, pickup_warehouse_id=s["de"]))
    assert [(a["warehouse_id"], a["qty"]) for a in r.json()["allocations"]] == [(s["de"], 1)]


def test_idempotency_key_replays_and_refuses_other_body(
    http: httpx.Client, shop: Callable[..., dict]
) -> None:
    s = shop(on_hand=(5, 0))
    key = {"Idempotency-Key": uid("key")}
    first = http.post("/v1/orders", json=order_body(s, 2), headers=key)
    assert first.status_code == 201
    for _ in range(3):
        again = http.post("/v1/orders", json=order_body(s, 2), headers=key)
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
    assert available(http, s["sku"])[s["de"]] == 3
    error(
        http.post("/v1/orders", json=order_body(s, 1), headers=key),
        409,
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    assert available(http, s["sku"])[s["de"]] == 3


@pytest.mark.parametrize(
    ("mutate", "status", "code", "field"),
    [
        (lambda b: b["lines"][0].update(qty=0), 422, "invalid_quantity", "lines[0].qty"),
        (lambda b: b["lines"][0].update(qty=-3), 422, "invalid_quantity", "lines[0].qty"),
        (lambda b: b["lines"][0].update(sku="NO-SUCH"), 422, "unknown_sku", "lines[0].sku"),
        (lambda b: b["lines"][0].update(qty="two"), 422, "invalid_request", "lines[0].qty"),
        (lambda b: b.pop("customer_id"), 422, "invalid_request", "customer_id"),
        (lambda b: b.update(customer_id="nobody"), 422, "unknown_reference", "customer_id"),
        (lambda b: b.update(currency="USD"), 422, "currency_mismatch", "currency"),
        (lambda b: b.update(currency="XYZ"), 422, "unknown_currency", "currency"),
        (lambda b: b.update(lines=[]), 422, "invalid_request", "lines"),
        (lambda b: b.update(shipping_country="ZZ"), 422, "unknown_country", "shipping_country"),
        (lambda b: b.update(colour="red"), 422, "invalid_request", "colour"),
        (lambda b: b["lines"][0].update(qty=999), 409, "insufficient_stock", "lines[0].qty"),
    ],
    ids=[
        "qty-zero",
        "qty-negative",
        "unknown-sku",
        "qty-not-int",
        "missing-customer",
        "unknown-customer",
        "currency-mismatch",
        "unknown-currency",
        "no-lines",
        "bad-country",
        "extra-field",
        "short",
    ],
)
def test_bad_orders_are_refused_and_write_nothing(
    http: httpx.Client, shop: Callable[..., dict], mutate, status, code, field
) -> None:
    s = shop(on_hand=(5, 3))
    body = order_body(s, 1)
    mutate(body)
    error(http.post("/v1/orders", json=body), status, code, field)
    assert available(http, s["sku"]) == {s["de"]: 5, s["fr"]: 3}


def test_malformed_body_and_unknown_order(http: httpx.Client) -> None:
    r = http.post(
        "/v1/orders", content=b'{"customer_id": ', headers={"Content-Type": "application/json"}
    )
    error(r, 400, "malformed_json", "body")
    error(http.get("/v1/orders/ord_missing"), 404, "order_not_found", "order_id")
    error(http.post("/v1/orders/ord_missing/cancel"), 404, "order_not_found", "order_id")


def test_lifecycle_payments_chargeback_and_audit(
    http: httpx.Client, shop: Callable[..., dict]
) -> None:
    s = shop(on_hand=(4, 0), price=10)
    oid = http.post("/v1/orders", json=order_body(s, 3)).json()["id"]
    error(http.post(f"/v1/orders/{oid}/ship"), 409, "invalid_transition", "status")
    declined = http.post(
        f"/v1/orders/{oid}/payments",
        json={
            "method": "card",
            "status": "declined",
            "amount": 30,
            "card": {"fingerprint": "fp_abc", "bin": "411111", "last4": "1111", "country": "DE"},
            "transaction_id": f"{oid}-attempt-1",
        },
    )
    assert declined.status_code == 201 and declined.json()["status"] == "declined"
    assert declined.json()["transaction_id"] == f"{oid}-attempt-1"
    error(http.post(f"/v1/orders/{oid}/pay", json={"amount": 29}), 422, "invalid_amount", "amount")
    error(
        http.post(f"/v1/orders/{oid}/pay", json={"card": {"fingerprint": "4111 1111 1111 1111"}}),
        422,
        "card_number_refused",
        "card.fingerprint",
    )
    paid = http.post(f"/v1/orders/{oid}/pay", json={"card": {"fingerprint": "fp_abc"}})
    assert paid.json()["status"] == "paid"
    assert available(http, s["sku"])[s["de"]] == 1
    assert http.post(f"/v1/orders/{oid}/fulfil").json()["status"] == "fulfilled"
    stock = http.get(f"/v1/stock/{s['sku']}").json()["warehouses"]
    assert [(w["on_hand"], w["allocated"]) for w in stock if w["warehouse_id"] == s["de"]] == [
        (1, 0)
    ]
    for action, status in (("ship", "shipped"), ("deliver", "delivered")):
        assert http.post(f"/v1/orders/{oid}/{action}").json()["status"] == status
    cb = http.post(f"/v1/orders/{oid}/chargeback", json={"reason": "fraudulent"})
    assert cb.status_code == 201 and cb.json()["amount"] == 30
    error(http.post(f"/v1/orders/{oid}/chargeback"), 409, "already_exists")
    assert http.post(f"/v1/orders/{oid}/refund").json()["status"] == "refunded"
    error(http.post(f"/v1/orders/{oid}/cancel"), 409, "invalid_transition")
    history = [e["type"] for e in http.get(f"/v1/orders/{oid}/events").json()]
    assert history == [
        "placed",
        "payment_attempted",
        "payment_attempted",
        "pay",
        "fulfil",
        "ship",
        "deliver",
        "chargeback",
        "refund",
    ]
    assert len(http.get(f"/v1/orders/{oid}/payments").json()) == 2


def test_cancel_releases_stock(http: httpx.Client, shop: Callable[..., dict]) -> None:
    s = shop(on_hand=(2, 0))
    oid = http.post("/v1/orders", json=order_body(s, 2)).json()["id"]
    assert available(http, s["sku"])[s["de"]] == 0
    error(http.post(f"/v1/orders/{oid}/chargeback"), 409, "not_paid")
    cancelled = http.post(f"/v1/orders/{oid}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert {a["state"] for a in cancelled["allocations"]} == {"released"}
    assert available(http, s["sku"])[s["de"]] == 2
