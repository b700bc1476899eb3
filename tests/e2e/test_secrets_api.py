"""Card numbers and credentials over HTTP, on Ray Serve: a full card number (a Luhn-valid
16 digits) is refused with a 422 naming the field in every body that takes free-form strings
and in URLs, and never reaches the database or a log; tokens and keys (wrong ones, revoked
ones, the admin token, a key in the answer that made it) appear in no log line either."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.commerce.domain import luhn_valid
from serving.settings import Settings
from tests.e2e.conftest import ADMIN_TOKEN, CHANNEL, ChannelKeys, bearer, uid

pytestmark = pytest.mark.e2e


def a_card_number() -> str:
    """A Visa-like 16-digit number passing Luhn, new each time (so a find is not a leftover)."""
    stem = "4" + "".join(random.choices("0123456789", k=14))
    return next(stem + d for d in "0123456789" if luhn_valid(stem + d))


def spaced(pan: str) -> str:
    return " ".join(pan[i : i + 4] for i in range(0, 16, 4))


@pytest.fixture(scope="module")
def order_of(http: httpx.Client, admin: dict[str, str]) -> dict[str, Any]:
    wid, sku, customer = uid("wsec"), uid("SEC"), uid("cus")
    for path, body in [
        ("/v1/warehouses", {"id": wid, "name": wid, "country": "DE"}),
        ("/v1/products", {"sku": sku, "title": "Safe", "category": "sec", "list_price": 9,
                          "currency": "EUR"}),
        ("/v1/customers", {"id": customer, "email": f"{customer}@example.com"}),
    ]:  # fmt: skip
        assert http.post(path, headers=admin, json=body).status_code == 201
    http.put(f"/v1/stock/{wid}/{sku}", headers=admin, json={"on_hand": 50})

    def order(paid: bool = False) -> str:
        body = {"customer_id": customer, "currency": "EUR", "lines": [{"sku": sku, "qty": 1}]}
        oid = str(http.post("/v1/orders", json=body).json()["id"])
        if paid:
            for action in ("pay", "fulfil", "ship", "deliver"):
                assert http.post(f"/v1/orders/{oid}/{action}").is_success
        return oid

    return {"order": order, "sku": sku, "customer": customer}


Build = Any  # (pan) -> (method, path, body)


def _bodies(shop: dict[str, Any]) -> list[tuple[str, Build]]:
    """(field at fault, request of a card number): a card number in a free-form string of
    every storefront and checkout body, whole, spaced or written inside a note, and in URLs."""
    now = datetime.now(UTC).isoformat()
    event = {"event_id": uid("ev"), "type": "search", "session_id": uid("s"), "timestamp": now}
    score = {"transaction_id": uid("tx"), "customer_id": shop["customer"], "amount": 9,
             "currency": "EUR"}  # fmt: skip
    order = {"customer_id": shop["customer"], "currency": "EUR",
             "lines": [{"sku": shop["sku"], "qty": 1}]}  # fmt: skip
    placed, paid = shop["order"](), shop["order"](paid=True)
    return [
        ("device_id", lambda pan: ("POST", "/v1/fraud/score", {**score, "device_id": pan})),
        ("email", lambda pan: ("POST", "/v1/fraud/score", {**score, "email": spaced(pan)})),
        ("card.fingerprint", lambda pan: (
            "POST", "/v1/fraud/score", {**score, "card": {"fingerprint": f"fp_{pan}"}})),
        ("events[0].query", lambda pan: (
            "POST", "/v1/events", [{**event, "query": f"my card {spaced(pan)} please"}])),
        ("events[0].session_id", lambda pan: (
            "POST", "/v1/events", [{**event, "session_id": pan}])),
        ("merchant_id", lambda pan: ("POST", "/v1/orders", {**order, "merchant_id": pan})),
        ("name", lambda pan: (
            "POST", "/v1/customers", {"email": "c@example.com", "name": f"Ana {pan}"})),
        ("attributes", lambda pan: (
            "POST", "/v1/customers",
            {"email": "c@example.com", "attributes": {"notes": [f"card {pan} on file"]}})),
        ("device_id", lambda pan: (
            "POST", f"/v1/orders/{placed}/payments", {"device_id": pan})),
        ("card.fingerprint", lambda pan: (
            "POST", f"/v1/orders/{placed}/pay", {"card": {"fingerprint": spaced(pan)}})),
        ("note", lambda pan: (
            "POST", f"/v1/orders/{paid}/chargeback", {"note": f"cardholder: {pan} stolen"})),
        ("note", lambda pan: (
            "POST", "/v1/fraud/feedback",
            {"transaction_id": uid("tx"), "label": "fraud", "note": f"pan {pan}"})),
        ("customer_id", lambda pan: (
            "POST", "/v1/prices/quote", {"skus": [shop["sku"]], "customer_id": pan})),
        ("path", lambda pan: ("GET", f"/v1/customers/{pan}", None)),
        ("session_id", lambda pan: ("GET", f"/v1/recommendations?session_id={pan}", None)),
    ]  # fmt: skip


def _files(*roots: Path) -> list[Path]:
    """Every file under ``roots``: the app's data dir (its database, its logs) and the Ray
    session's logs (every replica's and worker's output since the session started)."""
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def _found(needles: list[str], files: list[Path]) -> dict[str, list[str]]:
    hits: dict[str, list[str]] = {}
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            if needle.encode() in data:
                hits.setdefault(needle, []).append(str(path))
    return hits


def _ray_logs() -> Path:
    from ray._private.worker import global_worker

    return Path(global_worker.node.get_logs_dir_path())


def test_card_numbers_are_refused_everywhere_and_kept_nowhere(
    http: httpx.Client, order_of: dict[str, Any], serve_settings: Settings
) -> None:
    pans = []
    for field, build in _bodies(order_of):
        pan = a_card_number()  # each request its own, to tell which one leaked
        pans.append(pan)
        method, path, body = build(pan)
        r = http.request(method, path, json=body)
        assert r.status_code == 422, (path, field, r.text)
        error = r.json()["error"]
        assert (error["code"], error["field"]) == ("card_number_refused", field), (path, error)
        assert pan[-8:] not in r.text  # the answer does not repeat it
    time.sleep(1.5)  # the decision and recommendation logs are written behind their requests
    files = _files(serve_settings.data_dir, _ray_logs())
    assert any(p.name == "cartwise.db" for p in files)
    variants = [v for pan in pans for v in (pan, spaced(pan))]
    assert _found(variants, files) == {}


def test_tokens_and_keys_appear_in_no_log(
    http: httpx.Client,
    admin: dict[str, str],
    channel_keys: ChannelKeys,
    serve_settings: Settings,
    order_of: dict[str, Any],
) -> None:
    wrong_token, wrong_key = "wrong-" + uuid.uuid4().hex, "cw_sk_" + uuid.uuid4().hex
    assert http.get("/v1/fraud/rules", headers=bearer(wrong_token)).status_code == 401
    assert http.get("/v1/fraud/rules", headers=bearer(channel_keys.secret)).status_code == 401
    quote = {"skus": [order_of["sku"]]}
    assert http.post("/v1/prices/quote", json=quote, headers=bearer(wrong_key)).status_code == 401
    base = f"/v1/channels/{CHANNEL}/keys"
    made = http.post(base, json={"kind": "secret"}, headers=admin).json()
    assert http.post("/v1/prices/quote", json=quote, headers=bearer(made["key"])).is_success
    http.post(f"{base}/{made['id']}/revoke", headers=admin)
    assert http.post("/v1/prices/quote", json=quote, headers=bearer(made["key"])).status_code == 401
    time.sleep(1.5)
    files = _files(serve_settings.data_dir, _ray_logs())
    logs = [p for p in files if not p.name.startswith("cartwise.db")]
    # the replica's own output was read: Ray writes its stdout and stderr to worker-*.out/.err
    assert _found(["ServeReplica:cartwise:api"], logs), logs
    secrets = [wrong_token, wrong_key, made["key"], channel_keys.secret, ADMIN_TOKEN]
    secrets += list(channel_keys.publishable.values())
    assert _found(secrets, logs) == {}
