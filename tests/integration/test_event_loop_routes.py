"""The event-loop routes never wait for a worker thread: while SQL writers hold every thread of
the pool (each waiting for SQLite's write lock), recommendations, similar items and quotes still
answer at once.  Their dependencies used to be plain functions, which FastAPI runs in that same
pool, and they queued behind the writers with the CPU idle."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest

from tests.servers import AppProcess, app_on_own_redis

pytestmark = pytest.mark.integration
WRITERS = 48  # more than the thread pool's 40


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    env = {"CARTWISE_CHANNEL_KEYS": "off"}
    with app_on_own_redis(tmp_path_factory.mktemp("loop-routes"), env) as server:
        yield server


def event(n: int) -> dict[str, object]:
    return {
        "event_id": f"{uuid.uuid4().hex}-{n}",
        "type": "search",
        "session_id": f"s-{n}",
        "query": "boots",
        "timestamp": datetime.now(UTC).isoformat(),
    }


def test_loop_routes_answer_while_writers_hold_every_thread(app: AppProcess) -> None:
    db = sqlite3.connect(app.workdir / "data" / "cartwise.db", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")  # the write lock: every writer of the app waits for it
    pool = ThreadPoolExecutor(WRITERS)
    try:
        with httpx.Client(base_url=app.url, timeout=60) as http:
            writes = [pool.submit(http.post, "/v1/events", json=[event(n)]) for n in range(WRITERS)]
            time.sleep(1.0)  # the writers are in the pool's threads, waiting
            assert not any(w.done() for w in writes)
            for method, path, body in (
                ("GET", "/v1/products/SKU-NONE/similar", None),
                ("GET", "/v1/recommendations/cus_000001?widget=home", None),
                ("POST", "/v1/prices/quote", {"skus": ["SKU-NONE"]}),
            ):
                started = time.perf_counter()
                answer = http.request(method, path, json=body, timeout=5)
                elapsed = time.perf_counter() - started
                assert answer.status_code < 500, (path, answer.text)
                assert elapsed < 1.0, (path, elapsed)
            db.execute("ROLLBACK")
            statuses = [w.result(timeout=60).status_code for w in writes]
        assert statuses == [200] * WRITERS  # the writers went through once the lock was free
    finally:
        db.close()
        pool.shutdown(wait=True)
