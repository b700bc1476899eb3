"""Admission control: beyond capacity, refuse quickly instead of answering everyone late.

A request that cannot be served in time is better refused at once — 503 with ``Retry-After``,
a few hundred microseconds of work — than queued behind others until every request is slow.
Two signals say a process is past its capacity:

- **event-loop lag**: a probe sleeps ``PROBE_S`` and measures how late it wakes.  Requests
  arrive as tasks in the loop's ready queue before any handler sees them, so a saturated process
  shows as lag long before it shows as requests in flight.  As in CoDel, what counts is the
  *smallest* lag seen over the last ``WINDOW_S`` (CoDel's interval; half a second let a 2x
  overload queue for seconds before refusing): one late wake-up (a garbage collection, a
  burst) passes, a queue that does not drain does not.  A single stall longer than the window
  (a schema built, a model loaded) is one probe: the requests that queued behind it are
  refused until the next probe, 5 ms later (judging by several probes instead let a 2x
  overload queue for seconds, measured).  While that minimum exceeds
  ``max_lag_ms``, new requests are refused; refusing is cheap, the queue drains, the probe sees
  a short lag again and requests are admitted.
- **requests in flight** above ``max_inflight`` (e.g. many slow calls waiting on I/O).

Checkout comes first: a payment being scored or an order being placed is money, a storefront
widget can show its fallback.  Checkout requests (``CHECKOUT``) are refused on lag only past
``checkout_lag_factor`` times the limit, so under overload the storefront's reads and events are
shed long before a checkout is.  Health checks are always admitted (an overloaded replica is
busy, not dead).  Refusals are counted per process (``shed``, and
``shed_checkout`` of them), shown by ``/healthz``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import orjson

from serving.metrics import REFUSED

Scope = dict[str, Any]
PROBE_S = 0.005
WINDOW_S = 0.1
ALWAYS = frozenset({"/healthz", "/metrics"})  # an overloaded replica still tells why
CHECKOUT = ("/v1/orders", "/v1/fraud/score", "/v1/fraud/feedback")  # POSTs under these
BODY = orjson.dumps(
    {
        "error": {
            "code": "overloaded",
            "message": "the service is over capacity; retry after the Retry-After delay",
        }
    }
)


class Gate:
    """The per-process state: limits, the last lag measured, requests in flight, refusals."""

    def __init__(
        self,
        *,
        max_inflight: int,
        max_lag_ms: float,
        checkout_lag_factor: float = 5.0,
        retry_after_s: int = 1,
    ) -> None:
        self.max_inflight = max_inflight
        self.max_lag = max_lag_ms / 1000
        self.checkout_lag = self.max_lag * checkout_lag_factor
        self.retry_after_s = retry_after_s
        self.inflight = 0
        self.lag = 0.0  # the smallest lag of the probes in the last WINDOW_S
        self.shed = 0
        self.shed_checkout = 0
        self._probe: asyncio.Task[None] | None = None
        self._recent: deque[tuple[float, float]] = deque()  # (probe time, its lag)

    def admit(self, checkout: bool = False) -> bool:
        if self.max_lag > 0 and (self._probe is None or self._probe.done()):
            self._start_probe()
        elif self._probe is not None and self._probe.get_loop() is not asyncio.get_running_loop():
            self._start_probe()  # a new event loop (a test client's): the old one's lag is stale
        limit = self.checkout_lag if checkout else self.max_lag
        if self.lag > limit or self.inflight >= self.max_inflight:
            REFUSED.labels("loop_lag" if self.lag > limit else "inflight").inc()
            self.shed += 1
            self.shed_checkout += checkout
            return False
        return True

    def status(self) -> dict[str, float]:
        return {
            "inflight": self.inflight,
            "lag_ms": round(self.lag * 1000, 3),
            "shed": self.shed,
            "shed_checkout": self.shed_checkout,
        }

    def _start_probe(self) -> None:
        self.lag = 0.0
        self._recent.clear()
        self._probe = asyncio.get_running_loop().create_task(self._measure())

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        recent = self._recent
        while True:
            before = loop.time()
            await asyncio.sleep(PROBE_S)
            now = loop.time()
            recent.append((now, now - before - PROBE_S))
            while recent[0][0] < now - WINDOW_S and len(recent) > 1:
                recent.popleft()
            self.lag = min(lag for _, lag in recent)


class Admission:
    """Pure ASGI middleware in front of the app: refused requests never reach routing."""

    def __init__(self, app: Any, *, gate: Gate) -> None:
        self.app = app
        self.gate = gate
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
            (b"retry-after", str(gate.retry_after_s).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS:
            await self.app(scope, receive, send)
            return
        gate = self.gate
        checkout = scope["method"] == "POST" and scope["path"].startswith(CHECKOUT)
        if not gate.admit(checkout):
            await send({"type": "http.response.start", "status": 503, "headers": self._headers})
            await send({"type": "http.response.body", "body": BODY})
            return
        gate.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            gate.inflight -= 1
