"""Prometheus metrics (prometheus-client), exposed at ``GET /metrics`` (admin token).

Every API process counts into the same metrics; which process answers a scrape must not
matter.  Serve replicas (and ``cartwise serve --plain --workers N``) therefore run in
prometheus-client's *multiprocess mode*: ``PROMETHEUS_MULTIPROC_DIR`` names a directory
(``{data_dir}/metrics``, set in each replica's environment by ``serving.deployment.build``
before Python starts), each process writes its counts into memory-mapped files there, and a
scrape adds up the files of every process, the live ones and those that have exited, so a
counter never goes backwards when a replica restarts.  A machine is one directory: on a Ray
cluster, scrape every node (docs/operations.md).  Without the variable (tests, a single
process) the process's own registry answers.

Labels are route templates, outcomes and versions, never ids, so the series stay few.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# seconds; the targets of docs/benchmarks.md (2 ms, 10 ms, 50 ms) are bucket bounds
BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

HTTP_REQUESTS = Counter(
    "cartwise_http_requests",
    "API requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "cartwise_http_request_duration_seconds",
    "Time from a request's first byte in to its last byte out, by method and route template.",
    ["method", "route"],
    buckets=BUCKETS,
)
REFUSED = Counter(
    "cartwise_requests_refused",
    "Requests refused by admission control (503 + Retry-After) before any work.",
    ["reason"],
)
FRAUD_DECISIONS = Counter(
    "cartwise_fraud_decisions",
    "Fraud decisions made (replayed answers not counted), by outcome, risk level, model "
    "version and whether the features were degraded (Redis unreachable).",
    ["outcome", "risk_level", "model_version", "features_degraded"],
)
FRAUD_REVIEWS = Counter(
    "cartwise_fraud_reviews_resolved",
    "Manual review verdicts stored, by resolution.",
    ["resolution"],
)
EVENTS = Counter(
    "cartwise_events",
    "Storefront events received by POST /v1/events: accepted, or duplicates of an event_id "
    "seen before.",
    ["result"],
)
RECOMMENDATIONS = Counter(
    "cartwise_recommendations",
    "Recommendation lists answered, by widget and whether they were degraded.",
    ["widget", "degraded"],
)

BACKLOG_PENDING = Gauge(
    "cartwise_feature_backlog_pending",
    "Online-store writes waiting in the backlog while Redis is unreachable (live processes "
    "added up; 0 when the store answers).",
    multiprocess_mode="livesum",
)
BACKLOG_REPLAYED = Counter(
    "cartwise_feature_backlog_replayed",
    "Online-store writes applied late, from the backlog, once Redis answered again.",
)
BACKLOG_DROPPED = Counter(
    "cartwise_feature_backlog_dropped",
    "Online-store writes lost because the backlog was full; `cartwise features rebuild` "
    "restores them from the commerce database.",
)

GC_PAUSE = Histogram(
    "cartwise_gc_pause_seconds",
    "Python garbage collections of generations 1 and 2 in API processes: how long each "
    "stopped the process (serving/heap.py).",
    ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

MODEL_SERVED = Gauge(
    "cartwise_model_served",
    "1 for each model version an API process serves, by kind (fraud, recs), role (champion, "
    "challenger) and version; 0 once it no longer does.  One series per process (pid).",
    ["kind", "role", "version"],
    multiprocess_mode="liveall",
)
MODEL_REFRESH_ERRORS = Counter(
    "cartwise_model_refresh_errors",
    "Registry polls that could not fetch or load the model versions they name (the current "
    "ones keep serving), by kind.",
    ["kind"],
)


class BacklogMetrics:
    """``features.backlog.BacklogObserver`` that counts into the metrics above."""

    def pending(self, n: int) -> None:
        BACKLOG_PENDING.set(n)

    def replayed(self, n: int) -> None:
        BACKLOG_REPLAYED.inc(n)

    def dropped(self, n: int) -> None:
        BACKLOG_DROPPED.inc(n)


def directory(data_dir: Path) -> Path:
    """Where this machine's API processes count: ``PROMETHEUS_MULTIPROC_DIR`` if set, else
    ``{data_dir}/metrics``."""
    return Path(os.environ.get(ENV) or data_dir / "metrics").resolve()


def prepare(directory: Path) -> str:
    """Empty the multiprocess directory of a deployment about to start (the counts of an
    earlier run would otherwise be added to its own) and return it as the variable's value."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    return str(directory.resolve())


def exposition() -> bytes:
    """The text a scrape gets: every process's counts added up in multiprocess mode, else
    this process's registry."""
    path = os.environ.get(ENV)
    if not path:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()  # the directory exists: made before the first request
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


def process_exited() -> None:
    """Forget this process's live gauges (its backlog goes with it); in multiprocess mode the
    other processes' gauges stay."""
    path = os.environ.get(ENV)
    if path:
        multiprocess.mark_process_dead(os.getpid(), path)


def flag(value: bool) -> str:
    return "true" if value else "false"
