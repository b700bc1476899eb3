"""Fraud scoring over HTTP at a fixed arrival rate (open loop) against a running cartwise.

    python -m loadtests.bench_fraud_http --url http://127.0.0.1:8000 --rps 300 --seconds 30

Request i is due at ``start + i / rps`` whether or not earlier ones have answered, and its
latency counts from that due time (no coordinated omission: a stalled server shows up as
latency, not as a lower request rate).  Payments come from a pool of customers, cards and
merchants, so the feature store sees repeat entities.  Prints achieved rate, latency
percentiles, outcomes and errors, and writes reports/fraud_http[-label].json.  Talks HTTP only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
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


async def run(url: str, rps: float, seconds: float, concurrency: int) -> dict[str, object]:
    rng = random.Random(11)
    tag = uuid.uuid4().hex[:8]
    total = int(rps * seconds)
    latencies: list[float] = []
    service: list[float] = []
    statuses: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        for i in range(50):  # warm connections and the replica
            await client.post("/v1/fraud/score", json=payment(rng, tag + "w", i))
        start = time.perf_counter()

        async def one(i: int) -> None:
            due = start + i / rps
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            try:
                r = await client.post("/v1/fraud/score", json=payment(rng, tag, i))
                statuses[str(r.status_code)] += 1
                if r.status_code == 200:
                    outcomes[r.json()["outcome"]] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            done = time.perf_counter()
            latencies.append(done - due)
            service.append(done - sent)

        await asyncio.gather(*(one(i) for i in range(total)))
        wall = time.perf_counter() - start
    lat = np.array(latencies) * 1e3
    svc = np.array(service) * 1e3
    return {
        "target_rps": rps,
        "achieved_rps": total / wall,
        "requests": total,
        "seconds": wall,
        "latency_ms": {p: float(np.percentile(lat, q)) for p, q in _PCTS},
        "service_ms": {p: float(np.percentile(svc, q)) for p, q in _PCTS},
        "statuses": dict(statuses),
        "outcomes": dict(outcomes),
    }


_PCTS = (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--rps", type=float, default=300)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--concurrency", type=int, default=64, help="open connections at most")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    report = asyncio.run(run(args.url, args.rps, args.seconds, args.concurrency))
    report |= {"label": args.label, "url": args.url, "cpus": os.cpu_count()}
    print(json.dumps(report, indent=2))
    out = Path(os.environ.get("CARTWISE_REPORTS", "reports"))
    out.mkdir(parents=True, exist_ok=True)
    name = f"fraud_http{'-' + args.label if args.label else ''}.json"
    (out / name).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
