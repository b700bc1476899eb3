"""Live latency: an ASGI middleware timing every API request per route, for the dashboard's
percentiles of the last minutes merged over every replica (features/telemetry.py, and (admin)
``GET /v1/analytics/latency``) and for Prometheus (serving/metrics.py, ``GET /metrics``)."""

from __future__ import annotations

from time import perf_counter
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from features.telemetry import LatencyRecorder
from serving.api.deps import Admin, Box
from serving.metrics import HTTP_DURATION, HTTP_REQUESTS

router = APIRouter(prefix="/v1")


class LatencyMiddleware:
    """Times each request from its first byte in to its last byte out, labelled by method and
    route template (``GET /v1/recommendations/{customer_id}``), so ids never become labels,
    and counts it by status code.  Requests no route matched (404s, static files), the health
    check and ``/metrics`` itself are not counted."""

    def __init__(self, app: ASGIApp, recorder: LatencyRecorder) -> None:
        self.app = app
        self.recorder = recorder
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # labels() cached

    def _count(self, method: str, path: str, status: int, took: float) -> None:
        series = self._series.get((method, path, status))
        if series is None:
            series = (
                HTTP_REQUESTS.labels(method, path, str(status)),
                HTTP_DURATION.labels(method, path),
            )
            self._series[(method, path, status)] = series
        series[0].inc()
        series[1].observe(took)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None)
            if path is not None and path.startswith("/v1/"):
                took = perf_counter() - start
                method = scope["method"]
                self.recorder.observe(f"{method} {path}", took)
                self._count(method, path, status, took)


@router.get("/analytics/latency", dependencies=[Admin], tags=["analytics"])
def latency(
    box: Box, minutes: Annotated[int, Query(ge=1, le=60, description="How far back.")] = 5
) -> dict[str, Any]:
    """Requests and p50 / p95 / p99 latency (ms) per route and per minute over the last
    ``minutes``, every replica merged (each replica reports once a second)."""
    return box.latency.summary(minutes)
