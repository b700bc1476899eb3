"""Fraud scoring over HTTP at a fixed arrival rate (open loop) against a running cartwise.

    python -m loadtests.bench_fraud_http --url http://127.0.0.1:8000 --rps 300 --seconds 30 \
        [--key cw_sk_…]

Request i is due at ``start + i / rps`` whether or not earlier ones have answered, and its
latency counts from that due time (no coordinated omission: a stalled server shows up as
latency, not as a lower request rate).  Payments come from a pool of customers, cards and
merchants, so the feature store sees repeat entities.  Prints achieved rate, latency
percentiles (all requests, and answered 200 / refused 503 apart: past capacity the server sheds
load), outcomes and errors, and writes reports/fraud_http[-label].json.  Requests carry a
channel's secret key (``--key``, default ``CARTWISE_SECRET_KEY``).  Talks HTTP only.

Overload (the admitted requests' p99 at twice the sustainable rate):

    python -m loadtests.bench_fraud_http --rps 300 --seconds 30 --label nominal
    python -m loadtests.bench_fraud_http --rps 600 --seconds 30 --label overload
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np


def payment(rng: random.Random, tag: str, i: int) -> dict[str, object]:
    c = rng.randrange(5_000)
    return {
        "transaction_id": f"bench-{tag}-{i}",
        "customer_id": f"bench-c{c}",
        "amount": round(rng.lognormvariate(3.5, 1.0), 2),
        "currency": "EUR",
        "timestamp": datetime.now(UTC).isoformat(),
        "payment_method": "card",
        "card": {"fingerprint": f"bench-k{c}", "bin": "424242", "country": "DE", "last4": "4242"},
        "device_id": f"bench-d{c}",
        "ip": f"10.{c % 256}.{c // 256}.7",
        "email": f"bench{c}@example.com",
        "shipping_country": "DE" if rng.random() > 0.1 else "FR",
        "merchant_id": f"bench-m{rng.randrange(200)}",
    }


def run(url: str, rps: float, seconds: float, concurrency: int, key: str) -> dict[str, object]:
    """A dispatcher releases request i at ``start + i / rps``; ``concurrency`` threads with
    keep-alive ``http.client`` connections (far lighter on the CPU than an async client, which
    matters when the load generator shares the server's two cores) send them."""
    parsed = urlsplit(url)
    rng = random.Random(11)
    tag = uuid.uuid4().hex[:8]
    total = int(rps * seconds)
    bodies = [json.dumps(payment(rng, tag, i)).encode() for i in range(total)]
    due: queue.Queue[tuple[int, float] | None] = queue.Queue()
    latencies: list[float] = []
    service: list[float] = []
    due_at: list[float] = []
    status_of: list[str] = []
    statuses: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    versions: Counter[str] = Counter()  # the model versions that answered
    lock = threading.Lock()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def worker() -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        while (job := due.get()) is not None:
            i, at = job
            sent = time.perf_counter()
            try:
                conn.request("POST", "/v1/fraud/score", bodies[i], headers)
                r = conn.getresponse()
                data = r.read()
                status, outcome, version = str(r.status), None, None
                if r.status == 200:
                    body = json.loads(data)
                    outcome, version = body.get("outcome"), body.get("model_version")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                conn.close()
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
                status, outcome, version = type(exc).__name__, None, None
            done = time.perf_counter()
            with lock:
                statuses[status] += 1
                if outcome:
                    outcomes[outcome] += 1
                if version:
                    versions[version] += 1
                latencies.append(done - at)
                service.append(done - sent)
                due_at.append(at)
                status_of.append(status)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    warm = [json.dumps(payment(rng, tag + "w", i)).encode() for i in range(50)]
    for body in warm:  # warm the replica (model, connections) outside the measurement
        c = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        c.request("POST", "/v1/fraud/score", body, headers)
        c.getresponse().read()
        c.close()
    start = time.perf_counter()
    for i in range(total):
        at = start + i / rps
        delay = at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        due.put((i, at))
    for _ in threads:
        due.put(None)
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1e3
    svc = np.array(service) * 1e3
    codes = np.array(status_of)
    by_status = {
        code: {p: float(np.percentile(lat[codes == code], q)) for p, q in _PCTS}
        for code in ("200", "503")
        if (codes == code).any()
    }
    return {
        "target_rps": rps,
        "achieved_rps": total / wall,
        "requests": total,
        "seconds": wall,
        "concurrency": concurrency,
        "latency_ms": {p: float(np.percentile(lat, q)) for p, q in _PCTS},
        "service_ms": {p: float(np.percentile(svc, q)) for p, q in _PCTS},
        "statuses": dict(statuses),
        "shed_share": float((codes == "503").mean()) if len(codes) else 0.0,
        "latency_ms_by_status": by_status,
        "outcomes": dict(outcomes),
        "model_versions": dict(versions),
        "timeline": _timeline(np.array(due_at) - start, lat),
    }


def _timeline(second: np.ndarray, lat: np.ndarray) -> list[dict[str, float]]:
    """Per second of the run (by due time): requests, p50, p99 and max latency — a stall
    shows as a run of seconds, a lone slow request as one."""
    out = []
    for s in range(int(second.max()) + 1 if len(second) else 0):
        x = lat[(second >= s) & (second < s + 1)]
        if len(x):
            out.append({"second": s, "requests": len(x), "p50": float(np.percentile(x, 50)),
                        "p99": float(np.percentile(x, 99)), "max": float(x.max())})  # fmt: skip
    return out


_PCTS = (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--rps", type=float, default=300)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--concurrency", type=int, default=32, help="client threads (connections)")
    ap.add_argument("--label", default="")
    ap.add_argument("--key", default=os.environ.get("CARTWISE_SECRET_KEY", ""))
    args = ap.parse_args()
    report = run(args.url, args.rps, args.seconds, args.concurrency, args.key)
    report |= {"label": args.label, "url": args.url, "cpus": os.cpu_count()}
    print(json.dumps({k: v for k, v in report.items() if k != "timeline"}, indent=2))
    out = Path(os.environ.get("CARTWISE_REPORTS", "reports"))
    out.mkdir(parents=True, exist_ok=True)
    name = f"fraud_http{'-' + args.label if args.label else ''}.json"
    (out / name).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
