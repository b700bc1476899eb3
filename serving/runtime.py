"""Start and stop Ray Serve for cartwise: the CLI, ``make run`` and the e2e tests share this."""

from __future__ import annotations

import contextlib
import logging
import os
import time

import httpx

from serving import metrics
from serving.bootstrap import bootstrap
from serving.settings import Settings

log = logging.getLogger(__name__)
APP_NAME = "cartwise"


def start_ray(settings: Settings) -> None:
    """Start (or join) Ray.  The environment is set before ``ray.init`` because the raylet
    and every worker inherit it: Ray's worker processes are reniced to 15 by default, which on
    a shared machine gives a serving replica less CPU than anything else running; and the
    ingress mode and the replicas' drain period are read by Serve's controller when it
    starts."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_worker_niceness", "0")
    if settings.ingress == "haproxy":
        os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
        os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        # A stopping replica keeps serving this long so that a load balancer in front of the
        # replicas can deregister it: 30 s by default, for cloud load balancers.  Here the one in
        # front of them is Serve's own HAProxy, which drops a stopping replica within a second
        # and retries a refused connection on another (``option redispatch``), so 2 s is
        # enough — and stopping ``cartwise serve`` no longer takes 34 s.
        os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")
    import ray

    if ray.is_initialized():
        return
    if settings.ray_address == "local":
        ray.init(
            address="local",
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
            configure_logging=False,
        )
    else:
        ray.init(address=settings.ray_address, log_to_driver=False)


def prepare_schema(settings: Settings) -> None:
    """Migrate the database and insert the shipped defaults (widgets, pricing rules), once,
    before anything serves."""
    bootstrap(settings, migrate=True, load_models=False).close()


def serve_app(settings: Settings, *, wait_s: float = 120) -> str:
    """Migrate the database, deploy the app, wait until /healthz answers; return the base URL."""
    from ray import serve

    from serving.deployment import build, settings_args

    prepare_schema(settings)  # schema first, once, before replicas start
    if settings.ray_address == "local" and not os.environ.get(metrics.ENV):
        metrics.prepare(metrics.directory(settings.data_dir))  # this run's counts only
    start_ray(settings)
    serve.start(http_options={"host": settings.http_host, "port": settings.http_port})
    serve.run(build(settings_args(settings)), name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://{settings.http_host}:{settings.http_port}"
    wait_healthy(url, wait_s)
    return url


def wait_healthy(url: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"cartwise did not become healthy at {url} within {wait_s}s: {last}")


def shutdown(*, reap: bool = False) -> None:
    """Stop Serve and Ray.  ``reap``: then stop whatever this process still has running below
    it (Ray leaves its dashboard and runtime-env agents, and HAProxy, behind) — for the CLI,
    whose process owns the local cluster, not for a test session that shares its children."""
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    if reap:
        _reap_children()


def _reap_children(timeout_s: float = 10) -> None:
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=timeout_s)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    if alive:
        log.warning("killed %d processes that did not stop", len(alive))
