"""What the HTTP layer costs a fraud decision, in-process: the FastAPI app (every middleware,
routing, body parsing, the answer's serialisation) driven through ASGI with no network, against
the engine call alone on the same store, alternating request by request.

    python -m loadtests.micro.bench_http_overhead --data-dir var [--calls 3000]

``--data-dir`` is a cartwise data directory with a trained fraud model (after ``make run``:
``var``); its database and ``CARTWISE_REDIS_URL`` (default db 0) are used as they are. Each
call scores a new transaction over 5,000 customers and 200 merchants, with a secret key of the
store's first channel (made for the run, revoked after), so the HTTP layer includes checking
it. Prints p50 / p99 of both and the median per-request difference; writes
reports/http_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from loadtests.micro.report import percentiles, write
from serving.api.app import create_app
from serving.api.fraud import ScoreIn
from serving.bootstrap import bootstrap
from serving.settings import Settings

PATH = "/v1/fraud/score"


def payment(rng: random.Random, tag: str, i: int) -> bytes:
    c = rng.randrange(5_000)
    return orjson.dumps(
        {
            "transaction_id": f"asgi-{tag}-{i}",
            "customer_id": f"asgi-c{c}",
            "amount": round(rng.lognormvariate(3.5, 1.0), 2),
            "currency": "EUR",
            "payment_method": "card",
            "card": {"fingerprint": f"asgi-k{c}", "bin": "424242", "country": "DE"},
            "device_id": f"asgi-d{c}",
            "ip": f"10.{c % 256}.{c // 256}.9",
            "email": f"asgi{c}@example.com",
            "shipping_country": "DE",
            "merchant_id": f"asgi-m{rng.randrange(200)}",
        }
    )


async def post(app: Any, body: bytes, key: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {key}".encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client never disconnects mid-request
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def measure(
    app: Any, container: Any, calls: int, key: str
) -> tuple[list[float], list[float]]:
    rng, tag = random.Random(7), str(time.time_ns())
    bodies = [payment(rng, tag, i) for i in range(2 * calls + 300)]
    for body in bodies[:300]:  # warm: model, connections, caches
        assert await post(app, body, key) == 200
    http, engine = [], []
    for i in range(calls):
        t0 = time.perf_counter()
        status = await post(app, bodies[300 + 2 * i], key)
        http.append(time.perf_counter() - t0)
        assert status == 200, status
        t0 = time.perf_counter()
        container.fraud.score(ScoreIn.model_validate_json(bodies[301 + 2 * i]).to_request())
        engine.append(time.perf_counter() - t0)
    return http, engine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args()
    container = bootstrap(Settings(data_dir=args.data_dir), migrate=False)
    channel = container.catalog.list_channels()[0].id
    made = container.keys.create(channel, "secret")
    try:
        app = create_app(container)
        http, engine = asyncio.run(measure(app, container, args.calls, made.key))
    finally:
        container.keys.revoke(channel, made.info.id)
        container.close()
    overhead = float(np.median(np.array(http) - np.array(engine)) * 1e3)
    body = {"calls": args.calls, "http": percentiles(http), "engine": percentiles(engine)}
    body["overhead_median_ms"] = overhead
    for name in ("http", "engine"):
        p = body[name]
        print(f"{name:>6}: p50 {p['p50_ms']:.3f} ms  p99 {p['p99_ms']:.3f} ms")
    print(f"HTTP layer, median per request: {overhead:.3f} ms")
    print(f"report: {write('http_overhead', body)}")


if __name__ == "__main__":
    main()
