"""Live latency on the real Redis: replicas' histograms merge, percentiles land in the right
bucket, the middleware labels routes by template, and a missing Redis costs nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import pairwise

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis import Redis

from features.connection import connect
from features.telemetry import BOUNDS_MS, LatencyReader, LatencyRecorder, bucket_of, percentile
from serving.api.telemetry import LatencyMiddleware

pytestmark = pytest.mark.integration
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_TELEMETRY", "redis://127.0.0.1:6379/5")
NOW = 1_790_000_000.0  # a fixed clock: minute 29_833_333


@pytest.fixture
def client() -> Iterator[Redis]:
    c = connect(URL, timeout_ms=2000)
    c.flushdb()
    yield c
    c.flushdb()
    c.close()


def test_buckets_are_log_spaced_and_cover_the_range() -> None:
    assert BOUNDS_MS[0] == pytest.approx(0.05)
    assert BOUNDS_MS[-1] >= 30_000
    assert all(b / a == pytest.approx(1.15) for a, b in pairwise(BOUNDS_MS))
    assert bucket_of(0.0) == 0
    assert BOUNDS_MS[bucket_of(3.0) - 1] < 3.0 <= BOUNDS_MS[bucket_of(3.0)]
    assert bucket_of(10**9) == len(BOUNDS_MS) - 1


def test_percentile_is_the_upper_bound_of_its_bucket() -> None:
    counts = [0] * len(BOUNDS_MS)
    counts[bucket_of(1.0)] = 98
    counts[bucket_of(40.0)] = 2
    assert percentile(counts, 0.5) == round(BOUNDS_MS[bucket_of(1.0)], 3)
    assert percentile(counts, 0.98) == round(BOUNDS_MS[bucket_of(1.0)], 3)
    assert percentile(counts, 0.99) == round(BOUNDS_MS[bucket_of(40.0)], 3)
    assert percentile([0] * len(BOUNDS_MS), 0.5) is None


def test_two_replicas_merge_per_route_and_minute(client: Redis) -> None:
    a = LatencyRecorder(client, clock=lambda: NOW)
    b = LatencyRecorder(client, clock=lambda: NOW - 60)  # a minute earlier
    for _ in range(98):
        a.observe("GET /v1/x", 0.002)
    a.observe("GET /v1/x", 0.5)
    a.observe("GET /v1/x", 0.5)
    for _ in range(10):
        b.observe("GET /v1/x", 0.004)
        b.observe("POST /v1/y", 0.001)
    assert a.flush() == 100
    assert b.flush() == 20
    assert a.flush() == 0  # nothing counted twice

    summary = LatencyReader(client, clock=lambda: NOW).summary(minutes=5)
    routes = {r["route"]: r for r in summary["routes"]}
    assert routes["GET /v1/x"]["count"] == 110
    assert routes["POST /v1/y"]["count"] == 10
    assert routes["GET /v1/x"]["p50_ms"] == round(BOUNDS_MS[bucket_of(2.0)], 3)
    assert routes["GET /v1/x"]["p95_ms"] == round(BOUNDS_MS[bucket_of(4.0)], 3)
    assert routes["GET /v1/x"]["p99_ms"] == round(BOUNDS_MS[bucket_of(500.0)], 3)
    assert [r["route"] for r in summary["routes"]] == ["GET /v1/x", "POST /v1/y"]
    series = summary["series"]
    assert [s["count"] for s in series] == [0, 0, 0, 20, 100]
    assert series[-1]["minute"] == int(NOW // 60) * 60
    assert series[-1]["p99_ms"] == round(BOUNDS_MS[bucket_of(500.0)], 3)
    # only the last minute asked for
    assert LatencyReader(client, clock=lambda: NOW).summary(1)["routes"][0]["count"] == 100
    ttl = client.ttl(f"cw:lat:{int(NOW // 60)}")
    assert 3500 < ttl <= 3600


def test_an_unreachable_redis_drops_the_counts_and_never_raises() -> None:
    dead = connect("redis://127.0.0.1:1/0", timeout_ms=20)
    rec = LatencyRecorder(dead, flush_s=3600)
    rec.observe("GET /v1/x", 0.001)
    assert rec.flush() == 0
    assert rec.flush() == 0  # dropped, not piling up
    rec.close()


def test_the_middleware_labels_requests_by_route_template(client: Redis) -> None:
    recorder = LatencyRecorder(client, flush_s=3600)
    app = FastAPI()

    @app.get("/v1/items/{item_id}")
    def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/healthz")
    def health() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(LatencyMiddleware, recorder=recorder)
    with TestClient(app) as http:
        for i in range(3):
            assert http.get(f"/v1/items/{i}").status_code == 200
        assert http.get("/v1/nowhere").status_code == 404
        assert http.get("/healthz").status_code == 200
    assert recorder.flush() == 3
    routes = LatencyReader(client).summary(2)["routes"]
    assert [(r["route"], r["count"]) for r in routes] == [("GET /v1/items/{item_id}", 3)]
    recorder.close()
