"""Redis fails under traffic, over real HTTP: the app (plain uvicorn, the same ASGI app Serve runs)
keeps answering fraud scores, recommendations and quotes, flagged degraded; storefront events,
orders and scored payments made meanwhile are replayed when Redis returns, so the online store
ends as a rebuild from the database (a run without the fault) leaves it.  A Redis that comes back
empty is made whole again by ``cartwise features rebuild``.

Every server is the test's own (its own ports): the shared Redis on 6379 is never touched.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import seeded_store_and_recommender
from tests.servers import AppProcess, RedisServer, metric_samples, metric_sum, redis_contents

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "outage-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
INTERACTION_VIEWS = (
    b"sku_activity",
    b"category_activity",
    b"customer_activity",
    b"session_activity",
)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, fraud_model_dir: Path
) -> Iterator[tuple[AppProcess, RedisServer, RedisServer]]:
    workdir = tmp_path_factory.mktemp("outage")
    (workdir / "data").mkdir()
    recs = seeded_store_and_recommender(workdir / "data")  # the app's own SQLite database
    with (
        RedisServer(workdir / "redis-live") as live,
        RedisServer(workdir / "redis-reference") as reference,
    ):
        app = AppProcess(
            workdir,
            {
                "CARTWISE_REDIS_URL": live.url,
                "CARTWISE_FRAUD_MODEL": str(fraud_model_dir),
                "CARTWISE_RECS_MODEL": str(recs),
                "CARTWISE_ADMIN_TOKEN": TOKEN,
                "CARTWISE_LOG_LEVEL": "WARNING",
            },
        )
        app.cli("features", "rebuild")  # the seeded history is in the store before traffic
        app.start()
        try:
            yield app, live, reference
        finally:
            app.stop()


def _interaction_keys(contents: dict[bytes, Any]) -> dict[bytes, Any]:
    """Keys of the storefront views and the stock mirror (the fraud views also hold scored
    transactions, which only the live store saw)."""
    return {
        k: v
        for k, v in contents.items()
        if k.startswith(b"cw:stock") or any(b":" + n + b":" in k for n in INTERACTION_VIEWS)
    }


class Traffic:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        products = http.get("/v1/products", params={"limit": 50}).json()["items"]
        self.skus = [p["sku"] for p in products]
        self.customer = http.post(
            "/v1/customers", json={"id": f"cus-{uuid.uuid4().hex[:8]}", "email": "o@example.com"}
        ).json()["id"]
        self.scored: list[str] = []
        self.n = 0

    def events(self) -> httpx.Response:
        now = datetime.now(UTC)
        batch = [
            {
                "event_id": f"out-{uuid.uuid4().hex}",
                "type": t,
                "customer_id": self.customer,
                "session_id": "sess-outage",
                "sku": sku,
                "timestamp": (now - timedelta(milliseconds=10 * i)).isoformat(),
            }
            for i, (t, sku) in enumerate(
                [("view", self.skus[0]), ("view", self.skus[1]), ("add_to_cart", self.skus[1])]
            )
        ]
        return self.http.post("/v1/events", json=batch)

    def score(self) -> httpx.Response:
        tx = f"tx-out-{uuid.uuid4().hex[:10]}"
        r = self.http.post(
            "/v1/fraud/score",
            json={
                "transaction_id": tx,
                "customer_id": self.customer,
                "amount": 30.0,
                "currency": "EUR",
                "merchant_id": "m-outage",
                "card": {"fingerprint": "fp-outage", "bin": "424242", "last4": "4242"},
            },
        )
        if r.status_code == 200:
            self.scored.append(tx)
        return r

    def order(self) -> httpx.Response | None:
        for sku in self.skus:
            stock = self.http.get(f"/v1/stock/{sku}").json()["warehouses"]
            if any(w["available"] > 0 for w in stock):
                return self.http.post(
                    "/v1/orders",
                    json={
                        "customer_id": self.customer,
                        "currency": "EUR",
                        "lines": [{"sku": sku, "qty": 1}],
                    },
                )
        return None

    def round(self) -> dict[str, httpx.Response]:
        out = {"events": self.events(), "score": self.score()}
        placed = self.order()
        if placed is not None:
            out["order"] = placed
        out["recs"] = self.http.get(f"/v1/recommendations/{self.customer}", params={"k": 5})
        out["similar"] = self.http.get(f"/v1/products/{self.skus[2]}/similar", params={"k": 5})
        out["quote"] = self.http.post(
            "/v1/prices/quote", json={"skus": self.skus[:3], "customer_id": self.customer}
        )
        return out


def _txn_count(http: httpx.Client, customer: str) -> float:
    views = http.get(f"/v1/features/customer/{customer}", headers=ADMIN).json()["views"]
    return float(views["customer_txn"]["features"]["customer_txn.txn_count_1d"])


def test_decisions_answer_degraded_and_the_store_catches_up(
    world: tuple[AppProcess, RedisServer, RedisServer],
) -> None:
    app, live, reference = world
    with httpx.Client(base_url=app.url, headers=ADMIN, timeout=10) as http:
        traffic = Traffic(http)
        for _ in range(3):
            for name, r in traffic.round().items():
                assert r.status_code < 300, (name, r.text)

        live.stop()
        rounds = []
        for _ in range(4):
            started = time.perf_counter()
            answers = traffic.round()
            elapsed = time.perf_counter() - started
            rounds.append(elapsed)
            for name, r in answers.items():
                assert r.status_code < 300, (name, r.text)
            assert answers["score"].json()["features_degraded"] is True
            assert answers["events"].json()["degraded"] is True
            assert answers["recs"].json()["degraded"] is True
            assert len(answers["recs"].json()["items"]) == 5  # popular items from memory
            assert answers["quote"].json()["quotes"]
            assert elapsed < 2.0, answers  # six calls, none waits on the dead store
        health = http.get("/healthz").json()
        assert health["status"] == "degraded" and health["redis"] is False
        assert health["feature_backlog"]["pending"] > 0
        metrics = metric_samples(http, ADMIN)  # what an alert on the backlog reads
        pending = metric_sum(metrics, "cartwise_feature_backlog_pending")
        assert pending == health["feature_backlog"]["pending"]
        replayed_before = metric_sum(metrics, "cartwise_feature_backlog_replayed_total")

        live.start()  # the same append-only file: what Redis held before is back
        back = time.monotonic()
        deadline = back + 30
        while http.get("/healthz").json()["feature_backlog"]["pending"]:
            assert time.monotonic() < deadline, "the backlog was not replayed"
            time.sleep(0.02)
        health = http.get("/healthz").json()
        print(
            f"Redis down: rounds of {len(answers)} calls in "
            + ", ".join(f"{r * 1000:.0f}" for r in rounds)
            + f" ms; {health['feature_backlog']['replayed']} writes replayed within "
            f"{time.monotonic() - back:.2f} s of its return"
        )
        assert health["status"] == "ok" and health["feature_backlog"]["dropped"] == 0
        metrics = metric_samples(http, ADMIN)
        assert metric_sum(metrics, "cartwise_feature_backlog_pending") == 0
        replayed = metric_sum(metrics, "cartwise_feature_backlog_replayed_total")
        assert replayed - replayed_before >= pending
        assert metric_sum(metrics, "cartwise_feature_backlog_dropped_total") == 0

        # every payment scored, during the outage too, counted once
        assert _txn_count(http, traffic.customer) == len(traffic.scored) == 7
        app.cli(
            "features", "rebuild", CARTWISE_REDIS_URL=reference.url
        )  # no fault: from the database
        got = _interaction_keys(redis_contents(live.client()))
        want = _interaction_keys(redis_contents(reference.client()))
        assert len(want) > 50
        assert got == want

        # Redis comes back empty (no persistence, a new node): the rebuild makes it whole
        live.restart(wipe=True)
        traffic.round()
        assert _interaction_keys(redis_contents(live.client())) != want
        app.cli("features", "rebuild")
        app.cli("features", "rebuild", CARTWISE_REDIS_URL=reference.url)
        assert _interaction_keys(redis_contents(live.client())) == _interaction_keys(
            redis_contents(reference.client())
        )
