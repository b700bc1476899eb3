"""A rolling update under traffic, and how long stopping takes: fraud scoring at a fixed rate
while the app is deployed again with a changed setting, so Serve replaces every replica.

    python -m loadtests.bench_rolling --rps 100 --seconds 45 --replicas 2 [--key cw_sk_…]

Deploys the app itself on a local Ray (``serving.runtime.serve_app``, the ``CARTWISE_*``
environment: after ``make run`` the demo store in ``var/``), sends payments open loop
(``loadtests.bench_fraud_http.run``), redeploys ``--redeploy-after`` seconds in, then stops
everything and times the stop.  Prints and writes reports/rolling.json: statuses (every request
should answer 200), latency percentiles, the redeploy's duration and the stop's.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

from loadtests.bench_fraud_http import run
from loadtests.micro.report import write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rps", type=float, default=100)
    p.add_argument("--seconds", type=float, default=45)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--redeploy-after", type=float, default=8)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--key", default=os.environ.get("CARTWISE_SECRET_KEY", ""))
    args = p.parse_args()

    from serving.cli_common import settings_from_env
    from serving.runtime import serve_app, shutdown

    settings = settings_from_env().model_copy(update={"replicas": args.replicas})
    started = time.monotonic()
    url = serve_app(settings)
    ready_s = time.monotonic() - started
    result: dict[str, Any] = {}
    traffic = threading.Thread(
        target=lambda: result.update(run(url, args.rps, args.seconds, args.concurrency, args.key))
    )
    traffic.start()
    time.sleep(args.redeploy_after)
    started = time.monotonic()
    # a changed setting is a new version of the deployment: Serve replaces the replicas one
    # by one, each drained before it stops (serving/runtime.py: 2 s)
    serve_app(settings.model_copy(update={"max_inflight": settings.max_inflight + 1}))
    redeploy_s = time.monotonic() - started
    traffic.join()
    started = time.monotonic()
    shutdown(reap=True)
    stop_s = time.monotonic() - started
    summary = {
        "replicas": args.replicas,
        "ready_s": round(ready_s, 1),
        "redeploy_s": round(redeploy_s, 1),
        "stop_s": round(stop_s, 1),
        "drain_s": os.environ.get("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"),
        **{k: v for k, v in result.items() if k != "timeline"},
    }
    print(json.dumps(summary, indent=2))
    write("rolling", summary)


if __name__ == "__main__":
    main()
