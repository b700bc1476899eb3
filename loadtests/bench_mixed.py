"""Mixed traffic at a fixed arrival rate (open loop), the load test's visits without locust.

    python -m loadtests.bench_mixed --url http://127.0.0.1:8000 --rps 600 --seconds 40 \\
        --publishable-key cw_pk_… --secret-key cw_sk_… [--admin-token …] [--label name]

The same visits as ``loadtests/locustfile.py`` (``loadtests/traffic.py``: storefront pages,
checkouts, a rare admin), started at exponentially spaced times so that ``--rps`` requests a
second are offered on average, whether or not earlier visits have been answered: a slow server
shows as latency and failures, never as a gentler test.  Within a visit the requests go one
after the other, as a page's would.  Each request's latency counts from when it was sent; how
late the generator itself started visits is reported too (``schedule_lag_ms``): a generator
that falls behind would understate the load, and the report says so.

Why a second generator: locust's own client added 20-50 ms to every request on this project's
2-core machine with 100 users, against 1-3 ms for the same requests from a plain asyncio or
gevent client at the same time (docs/benchmarks.md).  This one runs on asyncio and aiohttp
(keep-alive connections) and measures what the server does.

Prints, per route and in all: requests, failures (and 503 refusals apart), p50/p90/p99/max,
the achieved rate and the generator's CPU; writes reports/mixed[-label].json with the
per-second p50/p99 and rate.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import time
from collections import Counter, defaultdict
from typing import Any

import aiohttp
import numpy as np
import orjson

from loadtests.catalogue import active_skus
from loadtests.micro.report import write
from loadtests.traffic import (
    Call,
    Catalogue,
    Reply,
    Visit,
    bearer,
    random_visit,
    requests_per_visit,
)


class Recorder:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter[int]] = defaultdict(Counter)
        self.failures: dict[str, int] = Counter()
        self.per_second: dict[int, list[float]] = defaultdict(list)
        self.schedule_lag: list[float] = []
        self.errors: Counter[str] = Counter()

    def add(self, call: Call, status: int, ms: float, second: int) -> None:
        self.latency[call.name].append(ms)
        self.statuses[call.name][status] += 1
        if status == 0 or (status >= 400 and status not in call.expected):
            self.failures[call.name] += 1
        self.per_second[second].append(ms)


async def send(
    session: aiohttp.ClientSession, base: str, keys: dict[str, dict[str, str]], call: Call
) -> Reply:
    async with session.request(
        call.method,
        base + call.path,
        params=call.params,
        data=orjson.dumps(call.json) if call.json is not None else None,
        headers={**keys[call.key], **call.headers}
        | ({"Content-Type": "application/json"} if call.json is not None else {}),
    ) as response:
        raw = await response.read()
        body = orjson.loads(raw) if response.status < 400 and raw else None
        return Reply(response.status, body)


async def run_visit(
    session: aiohttp.ClientSession,
    base: str,
    keys: dict[str, dict[str, str]],
    visit: Visit,
    rec: Recorder,
    start: float,
) -> None:
    try:
        call = next(visit)
        while True:
            sent = time.perf_counter()
            try:
                reply = await send(session, base, keys, call)
            except (TimeoutError, aiohttp.ClientError) as exc:
                rec.errors[type(exc).__name__] += 1
                reply = Reply(0, None)
            ms = (time.perf_counter() - sent) * 1e3
            rec.add(call, reply.status, ms, int(sent - start))
            if reply.status == 0:
                return
            call = visit.send(reply)
    except StopIteration:
        pass


async def drive(args: argparse.Namespace, catalogue: Catalogue) -> tuple[Recorder, float]:
    keys = {
        "publishable": bearer(args.publishable_key),
        "secret": bearer(args.secret_key),
        "admin": bearer(args.admin_token),
    }
    rec = Recorder()
    visits_per_s = args.rps / requests_per_visit()
    rng = random.Random(args.seed)
    random.seed(args.seed)
    connector = aiohttp.TCPConnector(limit=args.connections, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        due = start
        end = start + args.seconds
        while due < end:
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            rec.schedule_lag.append((time.perf_counter() - due) * 1e3)
            task = asyncio.create_task(
                run_visit(session, args.url, keys, random_visit(catalogue), rec, start)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            due += rng.expovariate(visits_per_s)
        if tasks:
            await asyncio.wait(tasks, timeout=args.timeout)
        elapsed = time.perf_counter() - start
    return rec, elapsed


def summarise(rec: Recorder, elapsed: float, seconds: int) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        a = np.asarray(values)
        return {
            "p50_ms": float(np.percentile(a, 50)),
            "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max()),
        }

    routes = {}
    for name, values in sorted(rec.latency.items()):
        routes[name] = {
            "requests": len(values),
            "failures": rec.failures[name],
            "statuses": {str(k): v for k, v in sorted(rec.statuses[name].items())},
            **stats(values),
        }
    everything = [v for values in rec.latency.values() for v in values]
    total = len(everything)
    refused = sum(c[503] for c in rec.statuses.values())
    unanswered = sum(c[0] for c in rec.statuses.values())  # connection errors, timeouts
    return {
        "requests": total,
        "failures": sum(rec.failures.values()),
        "refused_503": refused,
        "rps": total / elapsed,
        "answered_rps": (total - refused - unanswered) / elapsed,  # refusals are not service
        **(stats(everything) if everything else {}),
        "routes": routes,
        "errors": dict(rec.errors),
        "schedule_lag_ms": stats(rec.schedule_lag) if rec.schedule_lag else {},
        "per_second": [
            {
                "second": s,
                "requests": len(v),
                "p50_ms": float(np.percentile(v, 50)),
                "p99_ms": float(np.percentile(v, 99)),
            }
            for s, v in sorted(rec.per_second.items())
            if s < seconds
        ],
    }


def report(result: dict[str, Any]) -> None:
    print(f"{'route':34} {'requests':>8} {'fail':>6} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for name, r in result["routes"].items():
        print(
            f"{name:34} {r['requests']:>8} {r['failures']:>6} {r['p50_ms']:>7.1f}ms "
            f"{r['p90_ms']:>7.1f}ms {r['p99_ms']:>7.1f}ms {r['max_ms']:>7.0f}ms"
        )
    lag = result["schedule_lag_ms"]
    print(
        f"all: {result['rps']:.0f} RPS achieved ({result['answered_rps']:.0f} answered, not "
        f"refused), {result['requests']} requests, "
        f"{result['failures']} failures ({result['refused_503']} refused with 503), "
        f"p50 {result.get('p50_ms', 0):.1f} ms, p90 {result.get('p90_ms', 0):.1f} ms, "
        f"p99 {result.get('p99_ms', 0):.1f} ms; generator CPU {result['generator_cores']:.2f} "
        f"cores, visits started late by p99 {lag.get('p99_ms', 0):.1f} ms"
    )
    if result["errors"]:
        print(f"connection errors: {result['errors']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--rps", type=float, default=600, help="requests a second offered")
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--publishable-key", default="")
    ap.add_argument("--secret-key", default="")
    ap.add_argument("--admin-token", default="")
    ap.add_argument("--connections", type=int, default=256, help="keep-alive connections, at most")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds a request may take")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    catalogue = Catalogue(active_skus(args.url, bearer(args.secret_key or args.admin_token)))
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    rec, elapsed = asyncio.run(drive(args, catalogue))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result = summarise(rec, elapsed, args.seconds)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    result["generator_cores"] = cpu / elapsed
    result["offered"] = {"rps": args.rps, "seconds": args.seconds, "url": args.url}
    report(result)
    path = write(f"mixed-{args.label}" if args.label else "mixed", result)
    print(f"report: {path}")


if __name__ == "__main__":
    main()
