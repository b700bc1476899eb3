"""Batch ingestion through the public interface: ``POST /v1/events`` against a running cartwise.

    python -m loadtests.bench_events_http --url http://127.0.0.1:8000 --events 100000 \
        --batch 500 --connections 2 --key cw_pk_… --secret-key cw_sk_…

Storefront events (views, add-to-carts, searches, removals, purchases) of the demo store's
customers over its active SKUs (read from ``/v1/products`` with the channel's secret key), sent
with its publishable key as a storefront does; each with a new ``event_id``, sent
in batches over ``--connections`` keep-alive connections at once, as fast as the server answers.
A request counts as ingested only when it answers 200 with every event accepted.  Then it sends
the first batch again and checks that every event comes back as a duplicate.  Prints events/s,
the per-request latency, and writes ``reports/events_http.json``.  What a request does on the
server: validation, one SQL transaction (SKU check, insert ignoring known ids), the feature
store's batch write on Redis.  Talks HTTP only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx

from loadtests.catalogue import active_skus
from loadtests.micro.report import cpu_loop_ms, percentiles, write

TYPES = ["view"] * 6 + ["add_to_cart", "add_to_cart", "search", "remove_from_cart", "purchase"]


def batches(n: int, size: int, skus: list[str], customers: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    now = datetime.now(UTC) - timedelta(minutes=5)
    out: list[bytes] = []
    for start in range(0, n, size):
        events = []
        for i in range(start, min(n, start + size)):
            c = rng.randrange(1, customers + 1)
            kind = rng.choice(TYPES)
            ev: dict[str, object] = {
                "event_id": uuid.uuid4().hex,
                "type": kind,
                "customer_id": f"cus_{c:06d}",
                "session_id": f"bench-{c}-{i // 5000}",
                "timestamp": (now + timedelta(milliseconds=i)).isoformat(),
            }
            if kind == "search":
                ev["query"] = rng.choice(["shoes", "lamp", "gift", "blue shirt"])
            else:
                ev["sku"] = rng.choice(skus)
            events.append(ev)
        out.append(json.dumps(events).encode())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--key", default=os.environ.get("CARTWISE_PUBLISHABLE_KEY", ""))
    ap.add_argument("--secret-key", default=os.environ.get("CARTWISE_SECRET_KEY", ""))
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--customers", type=int, default=2_000)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    if not (args.key and args.secret_key):
        raise SystemExit("--key and --secret-key: a channel's publishable and secret keys")

    skus = active_skus(args.url, {"Authorization": f"Bearer {args.secret_key}"})
    bodies = batches(args.events, args.batch, skus, args.customers, seed=int(time.time()))
    parts = urlsplit(args.url)
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    latencies: list[float] = []
    failures: list[str] = []
    accepted = [0]
    lock = threading.Lock()
    todo = iter(range(len(bodies)))

    def sender() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while True:
            with lock:
                j = next(todo, None)
            if j is None:
                break
            t = time.perf_counter()
            conn.request("POST", "/v1/events", body=bodies[j], headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                if resp.status == 200:
                    accepted[0] += json.loads(body)["accepted"]
                else:
                    failures.append(f"{resp.status} {body[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(args.connections)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0

    again = httpx.post(f"{args.url}/v1/events", content=bodies[0], headers=headers, timeout=30)
    again_body = again.json()
    first = json.loads(bodies[0])
    replay_ok = again.status_code == 200 and again_body.get("duplicates") == len(first)

    lat = percentiles(latencies)
    rate = accepted[0] / seconds
    print(
        f"POST /v1/events: {accepted[0]:,} of {args.events:,} events accepted in {seconds:.2f} s = "
        f"{rate:,.0f} events/s (batches of {args.batch}, {args.connections} connections; "
        f"{len(failures)} failed requests)"
    )
    print(
        f"per request: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
        f"max {lat['max_ms']:.1f} ms; the first batch sent again: "
        f"{again_body.get('duplicates')} duplicates, {again_body.get('accepted')} accepted"
    )
    for f in failures[:5]:
        print("  failed:", f)
    path = write(
        "events_http" + (f"-{args.label}" if args.label else ""),
        {
            "url": args.url,
            "events": args.events,
            "accepted": accepted[0],
            "batch": args.batch,
            "connections": args.connections,
            "seconds": seconds,
            "events_per_s": rate,
            "request_latency_ms": lat,
            "failed_requests": len(failures),
            "replay_all_duplicates": replay_ok,
            "cpu_loop_ms_after": cpu_loop_ms(),
        },
    )
    print(f"report: {path}")
    if failures or not replay_ok or accepted[0] != args.events:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
