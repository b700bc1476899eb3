"""The mixed traffic of the load tests, once, for both load generators.

A visit is a generator of ``Call``s: it yields a request, receives the ``Reply``, and decides
the next request from it (a storefront page quotes what the recommendations showed; an order
follows a fraud score that allowed it).  ``loadtests/locustfile.py`` drives the visits with
locust's users, ``loadtests/bench_mixed.py`` with an open-loop asyncio client; both send the
same requests in the same proportions:

- a storefront page view: recommendations for a widget, similar items, a
  quote for what is on the page, the page's events (a view, sometimes an add-to-cart of a
  recommended item);
- a checkout: a fraud score, then the order with an ``Idempotency-Key``
  (unless the score said block or challenge; out of stock, 409, is an answer, not a failure);
- an admin look: price history, suggestions, a widget's stats.

Customers are the demo store's (``cus_000001``…, ``CARTWISE_LOADTEST_CUSTOMERS`` of them);
SKUs the active ones the generator read from ``/v1/products`` before it started.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CUSTOMERS = int(os.environ.get("CARTWISE_LOADTEST_CUSTOMERS", "2000"))
PRODUCTS = int(os.environ.get("CARTWISE_LOADTEST_PRODUCTS", "500"))
WIDGETS = ("home", "product_page", "cart")
# locust users of each kind (relative), each paced at this share of the per-user rate; and
# the requests a visit of each kind sends (a checkout's order assumed to follow its score)
USERS = {"shopper": 12, "checkout": 3, "admin": 1}
PACE = {"shopper": 1.0, "checkout": 1.0, "admin": 0.2}
REQUESTS_PER_VISIT = {"shopper": 4, "checkout": 2, "admin": 3}
VISITS = {kind: USERS[kind] * PACE[kind] for kind in USERS}  # visits of each kind, relative


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    name: str  # the route template the figures are grouped by
    key: str  # whose credentials: "publishable", "secret" or "admin"
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    expected: frozenset[int] = frozenset()  # statuses >= 400 that are answers, not failures


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # the parsed JSON, or None

    @property
    def ok(self) -> bool:
        return self.status < 400


Visit = Generator[Call, Reply, None]


@dataclass
class Catalogue:
    skus: list[str] = field(default_factory=list)  # the active ones

    def sku(self) -> str:
        if self.skus:
            return random.choice(self.skus)
        return f"SKU-{random.randint(1, PRODUCTS):05d}"


def bearer(token: str) -> dict[str, str]:
    """The ``Authorization`` header of a key or token; none without one."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def customer() -> str:
    return f"cus_{random.randint(1, CUSTOMERS):06d}"


def now() -> str:
    return datetime.now(UTC).isoformat()


def shopper_page(catalogue: Catalogue, who: str, session: str) -> Visit:
    page_sku = catalogue.sku()
    rec = yield Call(
        "GET",
        f"/v1/recommendations/{who}",
        "/v1/recommendations/[customer]",
        "publishable",
        params={"widget": random.choice(WIDGETS), "k": 8, "session_id": session,
                "context_sku": page_sku},
    )  # fmt: skip
    shown = [i["sku"] for i in rec.body.get("items", [])] if rec.ok and rec.body else []
    yield Call(
        "GET",
        f"/v1/products/{page_sku}/similar",
        "/v1/products/[sku]/similar",
        "publishable",
        params={"k": 6},
    )
    yield Call(
        "POST",
        "/v1/prices/quote",
        "/v1/prices/quote",
        "publishable",
        json={"skus": [page_sku, *shown[:3]], "customer_id": who},
    )
    events = [{"event_id": uuid.uuid4().hex, "type": "view", "customer_id": who,
               "session_id": session, "sku": page_sku, "timestamp": now()}]  # fmt: skip
    if shown and random.random() < 0.3:
        events.append({"event_id": uuid.uuid4().hex, "type": "add_to_cart", "customer_id": who,
                       "session_id": session, "sku": shown[0], "timestamp": now(),
                       "recommendation_id": rec.body["recommendation_id"]})  # fmt: skip
    yield Call("POST", "/v1/events", "/v1/events", "publishable", json=events)


def checkout(catalogue: Catalogue) -> Visit:
    who, item = customer(), catalogue.sku()
    qty = random.randint(1, 2)
    tx = uuid.uuid4().hex
    score = yield Call(
        "POST",
        "/v1/fraud/score",
        "/v1/fraud/score",
        "secret",
        json={
            "transaction_id": tx,
            "customer_id": who,
            "amount": round(random.uniform(5, 400), 2),
            "currency": "EUR",
            "timestamp": now(),
            "payment_method": "card",
            "card": {"fingerprint": f"fp-{who}", "bin": "424242", "country": "DE"},
            "device_id": f"dev-{who}",
            "ip": f"10.0.{random.randint(0, 255)}.{random.randint(1, 254)}",
            "email": f"{who}@example.com",
            "shipping_country": "DE",
            "items": [{"sku": item, "qty": qty, "unit_price": 20.0}],
        },
    )
    if score.ok and score.body and score.body.get("outcome") in ("allow", "review"):
        yield Call(
            "POST",
            "/v1/orders",
            "/v1/orders",
            "secret",
            json={"customer_id": who, "currency": "EUR", "shipping_country": "DE",
                  "lines": [{"sku": item, "qty": qty}]},
            headers={"Idempotency-Key": tx},
            expected=frozenset({409}),  # out of stock
        )  # fmt: skip


def admin_look(catalogue: Catalogue) -> Visit:
    sku = catalogue.sku()
    yield Call("GET", "/v1/pricing/history", "/v1/pricing/history", "admin", params={"sku": sku})
    yield Call("GET", "/v1/pricing/suggestions", "/v1/pricing/suggestions", "admin")
    widget = random.choice(WIDGETS)
    yield Call("GET", f"/v1/widgets/{widget}/stats", "/v1/widgets/[name]/stats", "admin")


def random_visit(catalogue: Catalogue) -> Visit:
    """One visit of the mix, drawn by the weights (a storefront page of a new session)."""
    kind = random.choices(list(VISITS), list(VISITS.values()))[0]
    if kind == "shopper":
        return shopper_page(catalogue, customer(), uuid.uuid4().hex[:12])
    if kind == "checkout":
        return checkout(catalogue)
    return admin_look(catalogue)


def requests_per_visit() -> float:
    """The mean number of requests a visit of the mix sends."""
    return sum(VISITS[k] * REQUESTS_PER_VISIT[k] for k in VISITS) / sum(VISITS.values())


def offered_rps(users: int, rate: float) -> float:
    """The requests a second ``users`` locust users at ``rate`` visits a second offer."""
    visits_per_user = sum(VISITS.values()) / sum(USERS.values())
    return users * rate * visits_per_user * requests_per_visit()
