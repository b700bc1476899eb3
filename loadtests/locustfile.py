"""Mixed traffic against a running cartwise, over HTTP only (locust, ``FastHttpUser``).

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --headless \\
        --users 100 --spawn-rate 50 --run-time 60s          # or: make loadtest

Three kinds of visitor over the demo store (`cartwise seed`: customers ``cus_000001``…,
``CARTWISE_LOADTEST_CUSTOMERS`` of them; the active SKUs are read from ``/v1/products`` when
the test starts); their requests are ``loadtests/traffic.py``'s visits, which the open-loop
generator (``loadtests/bench_mixed.py``) sends too:

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
Each user starts at a random point of its first period: locust starts them all at once, and
users with the same period would otherwise keep firing together, a burst of every user's
request at the top of each period instead of the load spread over it.
``CARTWISE_LOADTEST_RATE`` is the requests per second each user aims for (default 1 task/s).
"""

from __future__ import annotations

import os
import random
from typing import Any

import gevent
from locust import FastHttpUser, constant_throughput, events, task

from loadtests.catalogue import active_skus
from loadtests.traffic import (
    PACE,
    USERS,
    Catalogue,
    Reply,
    Visit,
    admin_look,
    bearer,
    checkout,
    customer,
    shopper_page,
)

RATE = float(os.environ.get("CARTWISE_LOADTEST_RATE", "1"))


KEYS = {
    "publishable": bearer(os.environ.get("CARTWISE_LOADTEST_PUBLISHABLE_KEY", "")),
    "secret": bearer(os.environ.get("CARTWISE_LOADTEST_SECRET_KEY", "")),
    "admin": {"Authorization": f"Bearer {os.environ.get('CARTWISE_ADMIN_TOKEN', '')}"},
}
CATALOGUE = Catalogue()  # active products, read once when the test starts


@events.test_start.add_listener
def _catalogue(environment: object, **_: object) -> None:
    """The SKUs a storefront would show: active ones (an inactive SKU's quote is a 422)."""
    host = getattr(environment, "host", None) or "http://127.0.0.1:8000"
    CATALOGUE.skus.extend(active_skus(host, KEYS["secret"]))


def stagger(rate: float) -> None:
    """Wait a random part of one period before the first task (see the module's text)."""
    gevent.sleep(random.uniform(0, 1 / rate))


def drive(client: Any, visit: Visit) -> None:
    """Send a visit's requests in turn, each answer to the visit (loadtests/traffic.py)."""
    try:
        call = next(visit)
        while True:
            with client.request(
                call.method,
                call.path,
                name=call.name,
                params=call.params,
                json=call.json,
                headers={**KEYS[call.key], **call.headers},
                catch_response=True,
            ) as response:
                if response.status_code in call.expected:
                    response.success()
                ok = response.status_code < 400
                body = response.json() if ok and response.content else None
            call = visit.send(Reply(response.status_code, body))
    except StopIteration:
        pass


class Shopper(FastHttpUser):
    """Storefront widgets: four requests per page view."""

    weight = USERS["shopper"]
    wait_time = constant_throughput(RATE * PACE["shopper"])

    def on_start(self) -> None:
        self.customer = customer()
        self.session = os.urandom(6).hex()
        stagger(RATE * PACE["shopper"])

    @task
    def page(self) -> None:
        drive(self.client, shopper_page(CATALOGUE, self.customer, self.session))


class Checkout(FastHttpUser):
    """A payment scored before the card is charged, then the order."""

    weight = USERS["checkout"]
    wait_time = constant_throughput(RATE * PACE["checkout"])

    def on_start(self) -> None:
        stagger(RATE * PACE["checkout"])

    @task
    def checkout(self) -> None:
        drive(self.client, checkout(CATALOGUE))


class Admin(FastHttpUser):
    """Rare: what a merchandiser looks at."""

    weight = USERS["admin"]
    wait_time = constant_throughput(RATE * PACE["admin"])

    def on_start(self) -> None:
        stagger(RATE * PACE["admin"])

    @task
    def look(self) -> None:
        drive(self.client, admin_look(CATALOGUE))
