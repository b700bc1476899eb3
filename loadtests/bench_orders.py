"""Order placement over HTTP against a running cartwise: throughput, latency, and no oversell.

    python -m loadtests.bench_orders --url http://127.0.0.1:8000 --token $CARTWISE_ADMIN_TOKEN \
        [--key cw_sk_…] [--workers 16] [--seconds 20] [--skus 20] [--stock 400]

Creates its own warehouses, products, stock and customers through the API, then places
one-unit orders from `--workers` threads for `--seconds`.  Prints throughput, latency
percentiles and outcome counts, checks that allocated units equal the orders that succeeded
and never exceed on-hand, and writes reports/orders.json.  Orders go with a channel's secret
key (``--key``, default ``CARTWISE_SECRET_KEY``; without one, the admin token).  Talks HTTP
only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import numpy as np


def setup(client: httpx.Client, token: str, skus: int, stock: int) -> tuple[list[str], list[str]]:
    admin = {"Authorization": f"Bearer {token}"}
    tag = uuid.uuid4().hex[:6]
    warehouses = [(f"bench-{tag}-de", "DE"), (f"bench-{tag}-fr", "FR")]
    for wid, country in warehouses:
        client.post(
            "/v1/warehouses", headers=admin, json={"id": wid, "name": wid, "country": country}
        ).raise_for_status()
    names = [f"BENCH-{tag}-{i:03d}" for i in range(skus)]
    for sku in names:
        client.post(
            "/v1/products",
            headers=admin,
            json={
                "sku": sku,
                "title": sku,
                "category": "bench",
                "list_price": 9.99,
                "currency": "EUR",
            },
        ).raise_for_status()
        for wid, _ in warehouses:
            client.put(
                f"/v1/stock/{wid}/{sku}", headers=admin, json={"on_hand": stock // 2}
            ).raise_for_status()
    customers = [
        client.post("/v1/customers", json={"email": f"b{i}@example.com"}).json()["id"]
        for i in range(50)
    ]
    return names, customers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--token", default=os.environ.get("CARTWISE_ADMIN_TOKEN", ""))
    ap.add_argument("--key", default=os.environ.get("CARTWISE_SECRET_KEY", ""))
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--skus", type=int, default=20)
    ap.add_argument("--stock", type=int, default=400, help="units per SKU over two warehouses")
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    key = {"Authorization": f"Bearer {args.key or args.token}"}
    with httpx.Client(base_url=args.url, timeout=30, headers=key) as client:
        skus, customers = setup(client, args.token, args.skus, args.stock)
    lock = threading.Lock()
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    placed: Counter[str] = Counter()
    deadline = time.monotonic() + args.seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=args.url, timeout=30, headers=key) as client:
            while time.monotonic() < deadline:
                sku = rng.choice(skus)
                body = {
                    "customer_id": rng.choice(customers),
                    "currency": "EUR",
                    "shipping_country": rng.choice(["DE", "FR"]),
                    "lines": [{"sku": sku, "qty": 1}],
                }
                started = time.perf_counter()
                r = client.post(
                    "/v1/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
                )
                elapsed = time.perf_counter() - started
                code = r.json().get("error", {}).get("code", "") if r.status_code >= 400 else ""
                with lock:
                    latencies.append(elapsed)
                    outcomes[f"{r.status_code} {code}".strip()] += 1
                    if r.status_code == 201:
                        placed[sku] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0

    oversold = []
    with httpx.Client(base_url=args.url, timeout=30, headers=key) as client:
        for sku in skus:
            levels = client.get(f"/v1/stock/{sku}").json()["warehouses"]
            allocated = sum(w["allocated"] for w in levels)
            if allocated != placed[sku] or any(w["allocated"] > w["on_hand"] for w in levels):
                oversold.append({"sku": sku, "allocated": allocated, "orders": placed[sku]})
    lat = np.array(latencies) * 1e3
    report = {
        "label": args.label,
        "url": args.url,
        "workers": args.workers,
        "seconds": wall,
        "requests": int(lat.size),
        "rps": lat.size / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "outcomes": dict(outcomes),
        "stock_mismatches": oversold,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    out = Path(os.environ.get("CARTWISE_REPORTS", "reports"))
    out.mkdir(parents=True, exist_ok=True)
    name = f"orders{'-' + args.label if args.label else ''}.json"
    (out / name).write_text(json.dumps(report, indent=2))
    if oversold:
        raise SystemExit("stock mismatch: see the report")


if __name__ == "__main__":
    main()
