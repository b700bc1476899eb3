"""Mixed traffic against a running cartwise, over HTTP only (locust, ``FastHttpUser``).

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --headless \\
        --users 100 --spawn-rate 50 --run-time 60s          # or: make loadtest

Three kinds of visitor over the demo store (`cartwise seed`: customers ``cus_000001``…,
``CARTWISE_LOADTEST_CUSTOMERS`` of them; the active SKUs are read from ``/v1/products`` when
the test starts):

- a shopper on the storefront (most traffic): recommendations for a widget, similar items, a
  price quote for what is on the page, and the page's events sent back;
- a checkout: a fraud score for the payment, then the order (``Idempotency-Key``);
- an admin, rarely: price history, suggestions, a widget's stats (needs
  ``CARTWISE_ADMIN_TOKEN``).

Shoppers send a channel's publishable key (``CARTWISE_LOADTEST_PUBLISHABLE_KEY``), checkouts
its secret key (``CARTWISE_LOADTEST_SECRET_KEY``), as a shop's pages and servers would;
``loadtests/run.py`` makes both for the run and revokes them after. Without them (an API with
``CARTWISE_CHANNEL_KEYS=off``) no key is sent.

Each user paces itself (``constant_throughput``): users x rate is the offered load, whether or
not the server keeps up, so a slow server shows as latency and failures, not as a gentler test.
``CARTWISE_LOADTEST_RATE`` is the requests per second each user aims for (default 1 task/s).
"""

from __future__ import annotations

import os
import random
import uuid
from datetime import UTC, datetime

from locust import FastHttpUser, constant_throughput, events, task

from loadtests.catalogue import active_skus

CUSTOMERS = int(os.environ.get("CARTWISE_LOADTEST_CUSTOMERS", "2000"))
PRODUCTS = int(os.environ.get("CARTWISE_LOADTEST_PRODUCTS", "500"))
RATE = float(os.environ.get("CARTWISE_LOADTEST_RATE", "1"))
ADMIN = {"Authorization": f"Bearer {os.environ.get('CARTWISE_ADMIN_TOKEN', '')}"}


def _key(name: str) -> dict[str, str]:
    key = os.environ.get(name, "")
    return {"Authorization": f"Bearer {key}"} if key else {}


PUBLISHABLE = _key("CARTWISE_LOADTEST_PUBLISHABLE_KEY")
SECRET = _key("CARTWISE_LOADTEST_SECRET_KEY")
WIDGETS = ("home", "product_page", "cart")


ON_SALE: list[str] = []  # active products, read once when the test starts


@events.test_start.add_listener
def _catalogue(environment: object, **_: object) -> None:
    """The SKUs a storefront would show: active ones (an inactive SKU's quote is a 422)."""
    host = getattr(environment, "host", None) or "http://127.0.0.1:8000"
    ON_SALE.extend(active_skus(host, SECRET))


def customer() -> str:
    return f"cus_{random.randint(1, CUSTOMERS):06d}"


def sku() -> str:
    if ON_SALE:
        return random.choice(ON_SALE)
    return f"SKU-{random.randint(1, PRODUCTS):05d}"


def now() -> str:
    return datetime.now(UTC).isoformat()


class Shopper(FastHttpUser):
    """Storefront widgets: four requests per page view."""

    weight = 12
    wait_time = constant_throughput(RATE)
    default_headers = PUBLISHABLE

    def on_start(self) -> None:
        self.customer = customer()
        self.session = uuid.uuid4().hex[:12]

    @task
    def page(self) -> None:
        page_sku = sku()
        rec = self.client.get(
            f"/v1/recommendations/{self.customer}",
            params={"widget": random.choice(WIDGETS), "k": 8, "session_id": self.session,
                    "context_sku": page_sku},
            name="/v1/recommendations/[customer]",
        )  # fmt: skip
        shown = [i["sku"] for i in rec.json().get("items", [])] if rec.ok else []
        self.client.get(f"/v1/products/{page_sku}/similar", params={"k": 6},
                        name="/v1/products/[sku]/similar")  # fmt: skip
        self.client.post(
            "/v1/prices/quote",
            json={"skus": [page_sku, *shown[:3]], "customer_id": self.customer},
        )
        events = [{"event_id": uuid.uuid4().hex, "type": "view", "customer_id": self.customer,
                   "session_id": self.session, "sku": page_sku, "timestamp": now()}]  # fmt: skip
        if shown and random.random() < 0.3:
            events.append({"event_id": uuid.uuid4().hex, "type": "add_to_cart",
                           "customer_id": self.customer, "session_id": self.session,
                           "sku": shown[0], "timestamp": now(),
                           "recommendation_id": rec.json()["recommendation_id"]})  # fmt: skip
        self.client.post("/v1/events", json=events)


class Checkout(FastHttpUser):
    """A payment scored before the card is charged, then the order."""

    weight = 3
    wait_time = constant_throughput(RATE)
    default_headers = SECRET

    @task
    def checkout(self) -> None:
        who, item = customer(), sku()
        qty = random.randint(1, 2)
        tx = uuid.uuid4().hex
        payment = {
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
        }
        score = self.client.post("/v1/fraud/score", json=payment)
        if score.ok and score.json().get("outcome") in ("allow", "review"):
            with self.client.post(
                "/v1/orders",
                json={"customer_id": who, "currency": "EUR", "shipping_country": "DE",
                      "lines": [{"sku": item, "qty": qty}]},
                headers={"Idempotency-Key": tx},
                catch_response=True,
            ) as order:  # fmt: skip
                if order.status_code == 409:  # out of stock is an answer, not a failure
                    order.success()


class Admin(FastHttpUser):
    """Rare: what a merchandiser looks at."""

    weight = 1
    wait_time = constant_throughput(RATE / 5)

    @task
    def look(self) -> None:
        self.client.get("/v1/pricing/history", params={"sku": sku()}, headers=ADMIN,
                        name="/v1/pricing/history")  # fmt: skip
        self.client.get("/v1/pricing/suggestions", headers=ADMIN)
        self.client.get(f"/v1/widgets/{random.choice(WIDGETS)}/stats", headers=ADMIN,
                        name="/v1/widgets/[name]/stats")  # fmt: skip
