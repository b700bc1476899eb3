"""Admission control over real HTTP: past its limit a process answers 503 with Retry-After at
once, health checks still pass, and admitted requests are unaffected; and the event-loop lag
signal on a real loop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from serving.api.admission import Gate
from tests.servers import AppProcess, app_on_own_redis

pytestmark = pytest.mark.integration
LIMIT = 3
ADMIN_TOKEN = "admission-admin"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    env = {"CARTWISE_MAX_INFLIGHT": str(LIMIT), "CARTWISE_ADMIN_TOKEN": ADMIN_TOKEN}
    with app_on_own_redis(tmp_path_factory.mktemp("admission"), env) as server:
        yield server


def _hold(url: str) -> socket.socket:
    """A request whose body has not arrived: in flight until the body is sent (its caller is
    known, so the route waits for the body rather than refusing it)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    body = b'[{"event_id": "held", "type": "view", "session_id": "s-held"}]'
    sock.sendall(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10]
    )
    sock.settimeout(10)
    return sock


def test_past_the_limit_requests_are_refused_at_once(app: AppProcess) -> None:
    with httpx.Client(base_url=app.url, timeout=10) as http:
        held = [_hold(app.url) for _ in range(LIMIT)]
        try:
            deadline = time.monotonic() + 10
            while http.get("/healthz").json()["admission"]["inflight"] < LIMIT:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            started = time.perf_counter()
            refused = http.post("/v1/prices/quote", json={"skus": ["X"]})
            elapsed = time.perf_counter() - started
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "overloaded"
            assert elapsed < 0.05  # refused without waiting for anyone
            health = http.get("/healthz")  # always admitted
            assert health.status_code == 200 and health.json()["admission"]["shed"] >= 1
            # and so is a Prometheus scrape, which says why requests were refused
            scrape = http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert scrape.status_code == 200
            assert 'cartwise_requests_refused_total{reason="inflight"} 1.0' in scrape.text
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 10
        while http.get("/healthz").json()["admission"]["inflight"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        admitted = http.post("/v1/prices/quote", json={"skus": ["X"]})
        assert admitted.status_code != 503, admitted.text


async def busy(seconds: float) -> None:
    """A saturated process: the loop never gets ahead of its work."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.03)
        await asyncio.sleep(0)


def test_a_loop_that_stays_late_refuses_until_it_catches_up() -> None:
    async def scenario() -> tuple[bool, ...]:
        gate = Gate(max_inflight=100, max_lag_ms=20)
        first = gate.admit()  # starts the probe
        await asyncio.sleep(0.2)
        time.sleep(0.06)  # one late wake-up (a collection, a burst) is not overload
        await asyncio.sleep(0.01)
        transient = gate.admit()
        await busy(0.4)  # late for longer than the window
        during = gate.admit()
        checkout = gate.admit(checkout=True)  # ~25 ms late: a checkout is still let in
        await asyncio.sleep(0.1)  # an idle loop: the probes are on time again
        after = gate.admit()
        return first, transient, during, checkout, after

    assert asyncio.run(scenario()) == (True, True, False, True, True)


def test_a_new_event_loop_starts_from_a_fresh_measure() -> None:
    """A test client runs each request in a loop of its own: the lag a closed loop last showed
    must not refuse requests forever."""
    gate = Gate(max_inflight=100, max_lag_ms=20)

    async def saturate() -> bool:
        gate.admit()
        await busy(0.9)
        return gate.admit()

    async def later() -> bool:
        return gate.admit()

    assert asyncio.run(saturate()) is False
    assert asyncio.run(later()) is True
