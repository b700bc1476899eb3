"""What the model lifecycle costs serving: fraud scoring at a fixed rate while the challenger
is off, in shadow, on canary, and while the champion is promoted and rolled back.

    python -m loadtests.bench_lifecycle --url http://127.0.0.1:8000 --rps 150 --seconds 20 \
        [--key cw_sk_…] [--cartwise .venv/bin/cartwise]

The server must have a fraud champion and a challenger (``cartwise train fraud`` twice).  The
registry is changed with the ``cartwise`` command (run with this process's environment, so
``CARTWISE_DATA_DIR`` / ``CARTWISE_DATABASE_URL`` / ``CARTWISE_MLFLOW_TRACKING_URI`` must name
the server's); each phase starts once ``/healthz`` shows every replica reporting it.  Per
phase: achieved rate, latency percentiles (open loop, from the due time), statuses and the model
versions that answered.  Writes reports/lifecycle.json.  Talks HTTP (and runs the CLI) only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess  # nosec B404
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from loadtests.bench_fraud_http import run


def served(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/healthz", timeout=10) as r:  # nosec B310
        return dict(json.load(r)["models"]["fraud"])


def cli(cartwise: str, *args: str) -> str:
    done = subprocess.run(  # nosec B603
        [cartwise, *args], capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout.strip()


def wait_for(url: str, want: dict[str, Any], timeout: float = 60) -> None:
    """Until /healthz (of whichever replica answers) shows ``want`` several times running."""
    deadline, agreed = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        now = served(url)
        agreed = agreed + 1 if all(now.get(k) == v for k, v in want.items()) else 0
        if agreed >= 5:
            return
        time.sleep(0.2)
    raise SystemExit(f"serving did not reach {want}: {served(url)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--rps", type=float, default=150)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--key", default=os.environ.get("CARTWISE_SECRET_KEY", ""))
    ap.add_argument("--cartwise", default="cartwise")
    args = ap.parse_args()
    start = served(args.url)
    champion = start["champion"]
    try:
        shown = json.loads(cli(args.cartwise, "models", "show", "fraud", "challenger"))
    except subprocess.CalledProcessError:
        shown = {}
    challenger = shown.get("version")
    if not champion or not challenger:
        raise SystemExit("the fraud model needs a champion and a challenger: train it twice")

    def phase(name: str, during: Any = None) -> dict[str, Any]:
        worker = threading.Thread(target=during) if during else None
        if worker:
            worker.start()
        result = run(args.url, args.rps, args.seconds, args.concurrency, args.key)
        if worker:
            worker.join()
        print(
            f"{name:<24} {result['achieved_rps']:7.1f} rps  p50 {result['latency_ms']['p50']:6.2f}"
            f"  p99 {result['latency_ms']['p99']:7.2f}  max {result['latency_ms']['max']:7.1f} ms"
            f"  {result['statuses']}  versions {result['model_versions']}"
        )
        return {k: v for k, v in result.items() if k != "timeline"}

    def swap() -> None:  # promote a third into the phase, roll back at two thirds
        time.sleep(args.seconds / 3)
        cli(args.cartwise, "models", "promote", "fraud", challenger)
        time.sleep(args.seconds / 3)
        cli(args.cartwise, "models", "rollback", "fraud")

    report: dict[str, Any] = {"rps": args.rps, "seconds": args.seconds, "cpus": os.cpu_count()}
    cli(args.cartwise, "models", "rollout", "fraud", "off")
    wait_for(args.url, {"rollout": "off", "champion": champion})
    report["off"] = phase("champion only")
    cli(args.cartwise, "models", "challenge", "fraud", challenger)
    cli(args.cartwise, "models", "rollout", "fraud", "shadow")
    wait_for(args.url, {"rollout": "shadow", "challenger": challenger})
    report["shadow"] = phase("challenger in shadow")
    cli(args.cartwise, "models", "rollout", "fraud", "canary", "--share", "0.5")
    wait_for(args.url, {"rollout": "canary"})
    report["canary"] = phase("challenger on canary 50%")
    cli(args.cartwise, "models", "rollout", "fraud", "off")
    wait_for(args.url, {"rollout": "off"})
    report["swap"] = phase("promote, then roll back", swap)
    cli(args.cartwise, "models", "challenge", "fraud", challenger)
    out = Path(os.environ.get("CARTWISE_REPORTS", "reports"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "lifecycle.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
