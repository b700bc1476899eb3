"""The Ray Serve application: one ingress deployment holding the engine objects in-process.

``build`` is the application builder named in ``serving/config.yaml`` (``serve run`` /
``serve deploy``); the CLI calls it too.  Everything is constructed in the replica, after Ray
forked it, never at import time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve import Application

from engine.fraud.decision import Policy
from engine.pricing.schedule import RepriceSchedule
from serving import heap, metrics
from serving.api.app import create_app
from serving.bootstrap import bootstrap
from serving.settings import Settings

log = logging.getLogger(__name__)


@serve.deployment(
    name="api",
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=64,
    health_check_period_s=5,
    # a log line per request costs a replica more than some of its requests do
    logging_config={"enable_access_log": False},
)
@serve.ingress()
class CartwiseApi:
    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        config = Settings(**(settings or {}))
        if os.environ.get(metrics.ENV):  # this node's replicas count into one directory
            Path(os.environ[metrics.ENV]).mkdir(parents=True, exist_ok=True)
        self.container = bootstrap(config, migrate=False)
        self.schedule: RepriceSchedule | None = None
        if config.reprice_every_s:
            self.schedule = RepriceSchedule(self.container.pricing, config.reprice_every_s)
            self.schedule.start()

    def __serve_build_asgi_app__(self):  # called by Serve after __init__
        app = create_app(self.container)
        heap.ready()  # the replica's startup objects leave the collector's walks
        return app

    def reconfigure(self, config: dict[str, Any] | None) -> None:
        """``user_config`` of serving/config.yaml, applied without restarting the replica:
        ``fraud: {model, elevated_at, highest_at, elevated_outcome, highest_outcome, reasons}``
        and ``recs: {model}``."""
        config = config or {}
        fraud = dict(config.get("fraud") or {})
        fraud_spec = fraud.pop("model", None)
        recs_spec = (config.get("recs") or {}).get("model")
        policy = Policy.from_config(fraud)  # a bad config changes nothing
        self.container.fraud.use_policy(policy)
        lifecycle = self.container.lifecycle
        assert lifecycle is not None
        # the same spec again costs one registry call: a moved alias is followed at once
        if recs_spec:
            lifecycle.follow("recs", str(recs_spec))
        if fraud_spec:
            lifecycle.follow("fraud", str(fraud_spec))
        log.info("reconfigured: fraud policy %s, models %s / %s", policy, fraud_spec, recs_spec)

    def check_health(self) -> None:
        if not self.container.db.ping():
            raise RuntimeError("database unreachable")

    def __del__(self) -> None:
        schedule = getattr(self, "schedule", None)
        if schedule is not None:
            schedule.stop()
        container = getattr(self, "container", None)
        if container is not None:
            container.close()


def settings_args(settings: Settings) -> dict[str, Any]:
    """Settings as plain values to hand to replicas (secrets included, as replicas need them)."""
    values = settings.model_dump(mode="json", exclude_defaults=True)
    values["admin_token"] = settings.admin_token.get_secret_value()
    values["database_url"] = settings.resolved_database_url()
    values["data_dir"] = str(settings.data_dir.resolve())
    return values


def build(args: dict[str, Any] | None = None) -> Application:
    """Application builder: ``args`` are Settings fields (env CARTWISE_* fills the rest)."""
    settings = Settings(**(args or {}))
    # set before the replica's Python starts: prometheus-client picks its mode at import
    return CartwiseApi.options(  # type: ignore[attr-defined]
        num_replicas=settings.replicas,
        ray_actor_options={
            "num_cpus": settings.replica_cpus,
            "runtime_env": {"env_vars": {metrics.ENV: str(metrics.directory(settings.data_dir))}},
        },
    ).bind(settings_args(settings))
