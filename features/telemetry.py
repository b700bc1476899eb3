"""Live request latency, shared by every replica through Redis (the dashboard's percentiles).

Each process counts its requests' durations in memory, per route, in fixed log-spaced buckets
(``BOUNDS_MS``: 0.05 ms to 30 s, each bound 15 % above the last). A daemon thread adds those
counts to Redis once a second: one pipeline of ``HINCRBY cw:lat:{minute} {route}|{bucket} n``
plus an ``EXPIRE`` of ``RETENTION_S``, so a replica costs one round trip per second whatever
its traffic.  A reader merges the buckets of the last minutes over every replica; a percentile
is the upper bound of the bucket it falls in (at most 15 % above the true value).

If Redis is away the counts are dropped (this is telemetry: requests never wait for it).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

KEY = "cw:lat:{minute}"
RETENTION_S = 3600
_RATIO = 1.15
BOUNDS_MS: tuple[float, ...] = tuple(
    0.05 * _RATIO**i for i in range(int(math.log(30_000 / 0.05, _RATIO)) + 2)
)
QUANTILES = (0.5, 0.95, 0.99)


def minute_key(minute: int) -> str:
    return KEY.format(minute=minute)


def bucket_of(ms: float) -> int:
    """Index of the first bound at or above ``ms`` (the last bucket takes everything above)."""
    return min(bisect_left(BOUNDS_MS, ms), len(BOUNDS_MS) - 1)


class LatencyRecorder:
    """Counts request durations per route; flushes them to Redis every ``flush_s`` seconds."""

    def __init__(
        self,
        client: Redis,
        *,
        flush_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.flush_s = flush_s
        self.clock = clock
        self._pending: dict[tuple[int, str, int], int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def observe(self, route: str, seconds: float) -> None:
        key = (int(self.clock() // 60), route, bucket_of(seconds * 1000.0))
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + 1
            if self._thread is None:
                self._start()

    def flush(self) -> int:
        """Write what was counted since the last flush; the number of counts written."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        pipe = self.client.pipeline(transaction=False)
        minutes = set()
        for (minute, route, bucket), n in pending.items():
            pipe.hincrby(minute_key(minute), f"{route}|{bucket}", n)
            minutes.add(minute)
        for minute in minutes:
            pipe.expire(minute_key(minute), RETENTION_S)
        try:
            pipe.execute()
        except RedisError as exc:  # dropped: telemetry never holds a request or grows unbounded
            log.debug("latency flush failed: %s", exc)
            return 0
        return sum(pending.values())

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="latency-flush", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.flush()


def percentile(counts: list[int], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding quantile ``q`` of ``counts``."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return round(BOUNDS_MS[i], 3)
    return round(BOUNDS_MS[-1], 3)


class LatencyReader:
    def __init__(self, client: Redis, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock

    def summary(self, minutes: int = 5) -> dict[str, Any]:
        """Per route and per minute over the last ``minutes`` (the current one included):
        request counts and p50 / p95 / p99 in milliseconds, merged over every replica."""
        now_minute = int(self.clock() // 60)
        span = list(range(now_minute - minutes + 1, now_minute + 1))
        pipe = self.client.pipeline(transaction=False)
        for minute in span:
            pipe.hgetall(minute_key(minute))
        per_minute = pipe.execute()
        routes: dict[str, list[int]] = {}
        series = []
        for minute, raw in zip(span, per_minute, strict=True):
            overall = [0] * len(BOUNDS_MS)
            for route, bucket, n in _parse(raw):
                routes.setdefault(route, [0] * len(BOUNDS_MS))[bucket] += n
                overall[bucket] += n
            series.append({"minute": minute * 60, **_stats(overall)})
        rows = [{"route": r, **_stats(c)} for r, c in routes.items()]
        rows.sort(key=lambda r: -r["count"])
        return {"minutes": minutes, "routes": rows, "series": series}


def _stats(counts: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"count": sum(counts)}
    for q in QUANTILES:
        out[f"p{round(q * 100)}_ms"] = percentile(counts, q)
    return out


def _parse(raw: dict[Any, Any]) -> Iterable[tuple[str, int, int]]:
    for field, value in raw.items():
        text = field.decode() if isinstance(field, bytes) else str(field)
        route, _, bucket = text.rpartition("|")
        if route and bucket.isdigit() and int(bucket) < len(BOUNDS_MS):
            yield route, int(bucket), int(value)
