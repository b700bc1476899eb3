"""The model lifecycle through the CLI and HTTP, on PostgreSQL, Redis and a local MLflow registry.

A store is seeded and every model trained twice with ``cartwise train all`` (the second versions
become challengers).  The app (``cartwise serve --plain``, polling the registry every 0.3 s)
then serves fraud scores from several threads while ``cartwise models promote`` and
``rollback`` move the champion: no request fails, and the versions the responses name switch
over.  A challenger in shadow is logged beside the champion and read back by ``cartwise models
compare``; under canary it answers a sticky share of customers, for fraud scores and
recommendations alike.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.servers import AppProcess

pytestmark = pytest.mark.integration
REDIS_URL = os.environ.get("CARTWISE_TEST_LIFECYCLE_REDIS_URL", "redis://127.0.0.1:6379/1")
ADMIN = {"Authorization": "Bearer lifecycle-admin"}


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, make_pg_schema_session: Callable[[], str]
) -> Iterator[AppProcess]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    work = tmp_path_factory.mktemp("lifecycle")
    proc = AppProcess(
        work,
        {
            "CARTWISE_DATABASE_URL": make_pg_schema_session(),
            "CARTWISE_REDIS_URL": REDIS_URL,
            "CARTWISE_ADMIN_TOKEN": "lifecycle-admin",
            "CARTWISE_MODEL_POLL_S": "0.3",
            "CARTWISE_MAX_LOOP_LAG_MS": "0",
            "CARTWISE_LOG_LEVEL": "WARNING",
        },
    )
    proc.cli("seed", "--customers", "600", "--products", "150", "--days", "60")
    for _ in range(2):
        proc.cli("train", "all")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _models(app: AppProcess) -> dict[str, Any]:
    return dict(httpx.get(f"{app.url}/healthz", timeout=5).json()["models"])


def _wait(app: AppProcess, kind: str, until: Callable[[dict[str, Any]], bool]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if until(_models(app)[kind]):
            return
        time.sleep(0.1)
    raise AssertionError(f"{kind} did not switch: {_models(app)[kind]}\n{app.log_tail()}")


def _shadow_v2(app: AppProcess, kind: str) -> None:
    """Version 2 becomes ``kind``'s challenger, in shadow, and serving follows."""
    app.cli("models", "challenge", kind, "2")
    app.cli("models", "rollout", kind, "shadow")
    _wait(app, kind, lambda m: m["rollout"] == "shadow" and m["challenger"] == "2")


def _rollout_off(app: AppProcess, kind: str) -> None:
    app.cli("models", "rollout", kind, "off")
    _wait(app, kind, lambda m: m["rollout"] == "off")


class Checkout:
    """Fraud scores from ``threads`` threads until stopped: every status and version seen."""

    def __init__(self, app: AppProcess, threads: int = 4) -> None:
        self.app = app
        self.seen: list[tuple[int, int, str | None]] = []  # (thread, status, version)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i: int) -> None:
        with httpx.Client(base_url=self.app.url, headers=ADMIN, timeout=10) as http:
            while not self._stop.is_set():
                r = http.post(
                    "/v1/fraud/score",
                    json={
                        "transaction_id": f"tx-{uuid.uuid4().hex[:12]}",
                        "customer_id": f"lc-{i}",
                        "amount": 42.5,
                        "currency": "EUR",
                    },
                )
                version = r.json().get("model_version") if r.status_code == 200 else r.text
                self.seen.append((i, r.status_code, version))

    def __enter__(self) -> Checkout:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def test_promote_and_rollback_switch_serving_with_no_failed_request(app: AppProcess) -> None:
    assert _models(app)["fraud"]["champion"] == "1"
    with Checkout(app) as traffic:
        time.sleep(1)
        app.cli("models", "promote", "fraud", "2")
        _wait(app, "fraud", lambda m: m["champion"] == "2")
        time.sleep(1)
        app.cli("models", "rollback", "fraud")
        _wait(app, "fraud", lambda m: m["champion"] == "1")
        time.sleep(1)
    failed = [s for s in traffic.seen if s[1] != 200]
    assert not failed, failed[:5]
    for thread in range(4):  # each thread's requests, one after another: 1, then 2, then 1
        versions = [v for i, _, v in traffic.seen if i == thread]
        runs = [v for n, v in enumerate(versions) if n == 0 or v != versions[n - 1]]
        assert runs == ["1", "2", "1"], (thread, runs)
    shown = json.loads(app.cli("models", "show", "fraud", "2"))
    assert shown["tags"]["rolled_back"] == "true"
    assert shown["params"]["features.definitions_version"]
    assert int(shown["params"]["data.rows"]) > 0 and len(shown["params"]["data.sha256"]) == 64


def test_shadow_logs_the_challenger_and_compare_reads_it(app: AppProcess) -> None:
    _shadow_v2(app, "fraud")
    with httpx.Client(base_url=app.url, headers=ADMIN, timeout=10) as http:
        for i in range(30):
            r = http.post(
                "/v1/fraud/score",
                json={
                    "transaction_id": f"sh-{uuid.uuid4().hex[:12]}",
                    "customer_id": f"sh-{i}",
                    "amount": 120.0,
                    "currency": "EUR",
                },
            )
            assert r.status_code == 200 and r.json()["model_version"] == "1"  # never returned
    report = json.loads(app.cli("models", "compare", "fraud"))
    assert report["champion"] == "1" and report["challenger"] == "2"
    assert report["shadow"]["requests"] >= 30
    assert report["shadow"]["versions"] == ["1/2"]
    assert 0.0 <= report["shadow"]["outcome_agreement"] <= 1.0
    offline = report["offline"]["models"]
    assert set(offline) == {"champion v1", "challenger v2"}
    assert all(0.0 <= m["roc_auc"] <= 1.0 for m in offline.values())
    _rollout_off(app, "fraud")


def test_recommendations_in_shadow_are_logged_beside_the_champions(app: AppProcess) -> None:
    _shadow_v2(app, "recs")
    with httpx.Client(base_url=app.url, headers=ADMIN, timeout=10) as http:
        for i in range(20):
            r = http.get(f"/v1/recommendations/shadow-{i}", params={"k": 5})
            assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
        # shoppers both versions know come back after their training data: the offline window
        customers = [f"cus_{n:06d}" for n in range(1, 41)]  # the seed's ids
        skus = [p["sku"] for p in http.get("/v1/products", params={"limit": 30}).json()["items"]]
        now = datetime.now(UTC).isoformat()
        events = [
            {
                "event_id": f"back-{c}-{s}",
                "type": "view",
                "customer_id": c,
                "sku": s,
                "timestamp": now,
            }
            for c in customers
            for s in skus[::3]
        ]
        assert http.post("/v1/events", json=events).status_code < 300
    report = json.loads(app.cli("models", "compare", "recs"))
    offline = report["offline"]
    assert offline["window"]["shoppers"] >= 1, offline
    for m in offline["models"].values():
        assert 0.0 <= m["recall_at_10"] <= m["hit_rate_at_10"] <= 1.0
    shadow = report["shadow"]
    assert shadow["requests"] >= 20 and shadow["versions"] == ["1/2"]
    # both versions were trained on the same rows with the same seed: the same lists
    assert shadow["mean_list_overlap"] == 1.0
    _rollout_off(app, "recs")


def test_canary_answers_a_sticky_share_of_customers(app: AppProcess) -> None:
    app.cli("models", "challenge", "fraud", "2")
    app.cli("models", "rollout", "fraud", "canary", "--share", "0.5")
    app.cli("models", "rollout", "recs", "canary", "--share", "0.5")
    _wait(app, "fraud", lambda m: m["rollout"] == "canary" and m["share"] == 0.5)
    _wait(app, "recs", lambda m: m["rollout"] == "canary" and m["challenger"] == "2")
    fraud: dict[str, set[str]] = {}
    recs: dict[str, set[str]] = {}
    with httpx.Client(base_url=app.url, headers=ADMIN, timeout=10) as http:
        for round_ in range(2):
            for i in range(40):
                customer = f"canary-{i}"
                r = http.post(
                    "/v1/fraud/score",
                    json={
                        "transaction_id": f"ca-{round_}-{i}-{uuid.uuid4().hex[:6]}",
                        "customer_id": customer,
                        "amount": 55.0,
                        "currency": "EUR",
                    },
                )
                assert r.status_code == 200, r.text
                fraud.setdefault(customer, set()).add(r.json()["model_version"])
                rec = http.get(f"/v1/recommendations/{customer}", params={"k": 5})
                assert rec.status_code == 200, rec.text
                recs.setdefault(customer, set()).add(rec.json()["model_version"])
    for seen in (fraud, recs):
        assert all(len(v) == 1 for v in seen.values()), seen  # sticky
        split = Counter(next(iter(v)) for v in seen.values())
        assert set(split) == {"1", "2"} and min(split.values()) >= 8, split
    report = json.loads(app.cli("models", "compare", "fraud"))
    canary = report["canary"]
    assert canary["2"]["decisions"] >= 16 and canary["1"]["decisions"] >= 16
    for kind in ("fraud", "recs"):
        _rollout_off(app, kind)


def test_reports_are_logged_with_every_run(app: AppProcess) -> None:
    for kind in ("fraud", "recs"):
        html = Path(app.cli("models", "report", kind, "2").strip()).read_text()
        assert "<html" in html.lower() and "data:image/png;base64," in html, kind
    # the demo store sells at list price: the fit has no estimate to plot, and says why
    shown = json.loads(app.cli("models", "show", "pricing", "2"))
    html = Path(app.cli("models", "report", "pricing", "2").strip()).read_text()
    assert shown["tags"]["fit_id"] in html and "log-price std" in html


def test_bad_lifecycle_commands_are_refused_and_change_nothing(app: AppProcess) -> None:
    before = _models(app)
    for args in (
        ("models", "promote", "fraud", "99"),
        ("models", "promote", "nosuchmodel", "1"),
        ("models", "rollout", "fraud", "sideways"),
        ("models", "rollout", "fraud", "canary", "--share", "1.5"),
        ("models", "rollout", "pricing", "shadow"),
    ):
        with pytest.raises(RuntimeError) as err:
            app.cli(*args)
        assert "Traceback" not in str(err.value), args
    time.sleep(1)
    after = _models(app)
    assert {k: (v["champion"], v["rollout"]) for k, v in after.items()} == {
        k: (v["champion"], v["rollout"]) for k, v in before.items()
    }
