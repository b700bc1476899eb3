"""Live latency: an ASGI middleware timing every API request per route, and (admin) the
percentiles of the last minutes merged over every replica (features/telemetry.py)."""

from __future__ import annotations

from time import perf_counter
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.types import ASGIApp, Receive, Scope, Send

from features.telemetry import LatencyRecorder
from serving.api.deps import Admin, Box

router = APIRouter(prefix="/v1")


class LatencyMiddleware:
    """Times each request from its first byte in to its last byte out, labelled by method and
    route template (``GET /v1/recommendations/{customer_id}``), so ids never become labels.
    Requests no route matched (404s, static files) are not counted."""

    def __init__(self, app: ASGIApp, recorder: LatencyRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None)
            if path is not None and path.startswith("/v1/"):
                self.recorder.observe(f"{scope['method']} {path}", perf_counter() - start)


@router.get("/analytics/latency", dependencies=[Admin], tags=["analytics"])
def latency(
    box: Box, minutes: Annotated[int, Query(ge=1, le=60, description="How far back.")] = 5
) -> dict[str, Any]:
    """Requests and p50 / p95 / p99 latency (ms) per route and per minute over the last
    ``minutes``, every replica merged (each replica reports once a second)."""
    return box.latency.summary(minutes)
