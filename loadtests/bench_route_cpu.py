"""Server CPU per request, route by route, for the mixed traffic's requests.

    cartwise serve --plain --workers 3          # on the load-test store (see loadtests/run.py)
    python -m loadtests.bench_route_cpu --url http://127.0.0.1:8200 \
        --publishable-key cw_pk_… --secret-key cw_sk_… --admin-token … [--calls 1500]

First it sends visits of the mix (``loadtests/traffic.py``) to collect real requests of every
route (a quote of what the recommendations showed, an order after a score that allowed it).
Then, route by route, it sends ``--calls`` of them again (events with new ids, scores with new
transaction ids, orders with new idempotency keys) four at a time, and divides the CPU the
server's processes spent meanwhile (``cartwise serve`` and its children, found by their command
line: plain uvicorn, not Ray Serve's workers) by the requests.  Redis's CPU is printed beside
it.  At four in flight the figures are the work a request costs, without the queueing and
lock waits of a saturated run: the budget view of ``docs/benchmarks.md``.  Writes
``reports/route_cpu.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from loadtests import traffic
from loadtests.catalogue import active_skus
from loadtests.micro.report import machine

REPORTS = Path(os.environ.get("CARTWISE_REPORTS", "reports"))
IN_FLIGHT = 4


def server_processes() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if "cartwise" in line and " serve" in line:
            found += [p, *p.children(recursive=True)]
    return found


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def redis_cpu_seconds() -> float:
    for p in psutil.process_iter(["name"]):
        if (p.info["name"] or "").startswith(("redis-server", "valkey-server")):
            t = p.cpu_times()
            return float(t.user + t.system)
    return 0.0


def fresh(call: traffic.Call) -> traffic.Call:
    """The same request again, as a new one: new event ids, transaction id, idempotency key."""
    body, headers = copy.deepcopy(call.json), dict(call.headers)
    if call.name == "/v1/events":
        for event in body:
            event["event_id"] = uuid.uuid4().hex
    elif call.name == "/v1/fraud/score":
        body["transaction_id"] = uuid.uuid4().hex
    elif call.name == "/v1/orders":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return traffic.Call(call.method, call.path, call.name, call.key, call.params, body, headers,
                        call.expected)  # fmt: skip


async def main(args: argparse.Namespace) -> dict[str, Any]:
    keys = {"publishable": args.publishable_key, "secret": args.secret_key,
            "admin": args.admin_token}  # fmt: skip
    catalogue = traffic.Catalogue(active_skus(args.url, traffic.bearer(args.admin_token)))
    calls: dict[str, list[traffic.Call]] = {}
    async with aiohttp.ClientSession(args.url) as http:

        async def send(call: traffic.Call) -> traffic.Reply:
            headers = {**traffic.bearer(keys[call.key]), **call.headers}
            async with http.request(
                call.method, call.path, params=call.params, json=call.json, headers=headers
            ) as r:
                body = await r.json(content_type=None) if r.status != 204 else None
                return traffic.Reply(r.status, body)

        async def visit(make: Callable[[], traffic.Visit]) -> None:
            steps = make()
            try:
                call = next(steps)
                while True:
                    reply = await send(call)
                    if reply.ok or reply.status in call.expected:
                        calls.setdefault(call.name, []).append(call)
                    call = steps.send(reply)
            except StopIteration:
                pass

        makers: list[Callable[[], traffic.Visit]] = [
            lambda: traffic.shopper_page(catalogue, traffic.customer(), uuid.uuid4().hex[:12]),
            lambda: traffic.checkout(catalogue),
            lambda: traffic.admin_look(catalogue),
        ]
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def paced(coro: Any) -> Any:
            async with gate:
                return await coro

        for make in makers:
            await asyncio.gather(*(paced(visit(make)) for _ in range(args.visits)))
        processes = server_processes()
        if not processes:
            raise SystemExit("no `cartwise serve` process found on this machine")
        routes: dict[str, Any] = {}
        for name in sorted(calls):
            batch = [fresh(c) for c in (calls[name] * args.calls)[: args.calls]]
            cpu, redis, started = cpu_seconds(processes), redis_cpu_seconds(), time.perf_counter()
            replies = await asyncio.gather(*(paced(send(c)) for c in batch))
            seconds = time.perf_counter() - started
            n = len(batch)
            routes[name] = {
                "requests": n,
                "server_cpu_ms": (cpu_seconds(processes) - cpu) * 1e3 / n,
                "redis_cpu_ms": (redis_cpu_seconds() - redis) * 1e3 / n,
                "rps": n / seconds,
                "statuses": sorted({r.status for r in replies}),
            }
    return {"machine": machine(), "url": args.url, "in_flight": IN_FLIGHT, "routes": routes}


def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8200")
    ap.add_argument("--publishable-key", default="")
    ap.add_argument("--secret-key", default="")
    ap.add_argument("--admin-token", default="")
    ap.add_argument("--visits", type=int, default=200, help="visits of each kind, to collect")
    ap.add_argument("--calls", type=int, default=1500, help="requests per route, measured")
    args = ap.parse_args()
    report = asyncio.run(main(args))
    print(f"{'route':34s} {'requests':>8s} {'server CPU':>12s} {'Redis CPU':>11s}  statuses")
    for name, r in report["routes"].items():
        cpu, redis = r["server_cpu_ms"], r["redis_cpu_ms"]
        print(f"{name:34s} {r['requests']:8d} {cpu:9.2f} ms {redis:8.3f} ms  {r['statuses']}")
    REPORTS.mkdir(exist_ok=True)
    out = REPORTS / "route_cpu.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"report: {out}")


if __name__ == "__main__":
    run()
