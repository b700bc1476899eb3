"""The FastAPI application: the same object runs under Ray Serve and under plain uvicorn."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware

from serving.api import (
    admission,
    analytics,
    carddata,
    commerce,
    crm,
    errors,
    experiments,
    fastpath,
    features,
    fraud,
    keys,
    pricing,
    recommend,
    telemetry,
)
from serving.api.deps import Admin, Box
from serving.api.schemas import HealthOut
from serving.bootstrap import Container
from serving.metrics import CONTENT_TYPE, exposition
from serving.web import routes as web


def create_app(container: Container) -> FastAPI:
    app = FastAPI(
        title="cartwise",
        version=container.versions.get("cartwise", "0"),
        description="Real-time decisions for online stores, on a thin commerce core.",
    )
    app.state.container = container
    errors.install(app)
    app.include_router(commerce.router)
    app.include_router(keys.router)
    app.include_router(features.router)
    app.include_router(fraud.router)
    app.include_router(recommend.router)
    app.include_router(pricing.router)
    app.include_router(experiments.router)
    app.include_router(crm.router)
    app.include_router(analytics.router)
    app.include_router(telemetry.router)
    app.add_middleware(telemetry.LatencyMiddleware, recorder=container.telemetry)
    app.add_middleware(carddata.RefuseCardNumbersInUrls)
    app.state.gate = admission.Gate(
        max_inflight=container.settings.max_inflight,
        max_lag_ms=container.settings.max_loop_lag_ms,
    )
    # outside the others: a refused request costs as little as possible
    app.add_middleware(admission.Admission, gate=app.state.gate)
    web.install(app)
    fastpath.add_body_schemas(app)
    if container.settings.cors_origins:  # the widget embedded on the shop's own domain
        app.add_middleware(
            CORSMiddleware,
            allow_origins=container.settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization"],  # the widget's publishable key
            max_age=3600,
        )

    @app.get("/healthz", response_model=HealthOut, tags=["ops"])
    def healthz(box: Box, request: Request):
        db_ok = box.db.ping()
        redis_ok = box.features.ping()
        backlog = box.features.backlog_status()
        return {
            "status": "ok" if db_ok and redis_ok and not backlog.pending else "degraded",
            "database": db_ok,
            "redis": redis_ok,
            "feature_backlog": asdict(backlog),
            "admission": request.app.state.gate.status(),
            "models": box.lifecycle.status() if box.lifecycle is not None else {},
            "versions": box.versions,
        }

    @app.get("/metrics", dependencies=[Admin], tags=["ops"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics of every API process on this machine (serving/metrics.py):
        requests by route and status, latency histograms, fraud decisions by outcome, review
        verdicts, storefront events, recommendations, requests refused by admission control."""
        return Response(exposition(), media_type=CONTENT_TYPE)

    return app
