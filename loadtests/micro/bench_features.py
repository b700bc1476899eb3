"""Online feature store on loopback Redis: one decision's read + record, batch ingestion,
memory per active customer.

    python -m loadtests.micro.bench_features [--redis redis://127.0.0.1:6379/11] [--calls 10000] \
        [--runs 3] [--transactions 0.25]

Uses its own Redis database (default 11) and clears the ``cw:`` keys in it first.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import redis

from features.backends import RedisBackend
from features.definitions import DAY, Entity, FeatureEvent, Source
from features.store import FeatureStore
from loadtests.micro.report import cpu_loop_ms, percentiles, write


class CountingConnection(redis.Connection):
    """Counts requests the client waited on: a send followed by a reply."""

    sent = 0
    waited = 0
    _pending = False

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        CountingConnection.sent += 1
        CountingConnection._pending = True
        return super().send_packed_command(command, check_health)

    def read_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if CountingConnection._pending:
            CountingConnection.waited += 1
            CountingConnection._pending = False
        return super().read_response(*args, **kwargs)


def transaction(rng: np.random.Generator, i: int, ts: float, customers: int) -> FeatureEvent:
    c = int(rng.zipf(1.3)) % customers
    return FeatureEvent(
        event_id=f"bench-tx-{i}",
        source=Source.TRANSACTION,
        type="payment",
        ts=ts,
        entities={
            Entity.CUSTOMER: f"c{c}",
            Entity.CARD: f"card{c}-{int(rng.integers(2))}",
            Entity.DEVICE: f"dev{c}",
            Entity.IP: f"10.{c % 250}.{c % 7}.1",
            Entity.EMAIL: f"c{c}@example.com",
            Entity.MERCHANT: f"m{int(rng.integers(200))}",
        },
        values={"amount": int(rng.lognormal(8, 1))},
        attrs={"shipping_country": "DE"},
    )


def interaction(rng: np.random.Generator, i: int, ts: float, customers: int) -> FeatureEvent:
    c, sku = int(rng.integers(customers)), int(rng.zipf(1.2)) % 50_000
    return FeatureEvent(
        event_id=f"bench-ev-{i}",
        source=Source.INTERACTION,
        type=str(rng.choice(["view", "view", "view", "add_to_cart", "search"])),
        ts=ts,
        entities={
            Entity.CUSTOMER: f"c{c}",
            Entity.SKU: f"S{sku}",
            Entity.CATEGORY: f"k{sku % 40}",
            Entity.SESSION: f"s{c}-{int(ts // 1800)}",
        },
        values={"qty": 1},
        attrs={"sku": f"S{sku}"},
    )


def history(
    rng: np.random.Generator, n: int, start: float, customers: int, transactions: float
) -> list[FeatureEvent]:
    """``n`` events over the 30 days from ``start``; every ``1 / transactions``-th one a
    six-entity transaction, the rest storefront events."""
    step = 30 * DAY / n
    every = round(1 / transactions) if transactions > 0 else 0  # 0.25: every 4th
    return [
        (transaction if every and i % every == 0 else interaction)(
            rng, i, start + i * step, customers
        )
        for i in range(n)
    ]


def ingest(store: FeatureStore, events: list[FeatureEvent]) -> dict[str, float]:
    t0 = time.perf_counter()
    result = store.record(events)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "events_per_s": len(events) / seconds, "accepted": result.accepted}


def measure(
    store: FeatureStore,
    rng: np.random.Generator,
    args: argparse.Namespace,
    start: float,
    rate: float,
) -> tuple[dict[str, float], float, float]:
    """``args.calls`` decisions, back to back (rate 0) or paced at ``rate`` per second, the way
    requests arrive at a service; returns latency percentiles, round trips and requests per
    decision."""
    for i in range(200):  # warm the function cache and connections
        store.decide(transaction(rng, 10_000_000 + i, start, args.customers))
    samples = np.empty(args.calls)
    CountingConnection.sent = CountingConnection.waited = 0
    next_at = time.perf_counter()
    for i in range(args.calls):
        ev = transaction(rng, int(start * 1000) + i, start + i * 0.01, args.customers)
        if rate:
            next_at += 1 / rate
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        t = time.perf_counter()
        store.decide(ev)
        samples[i] = time.perf_counter() - t
    return (
        percentiles(samples),
        CountingConnection.waited / args.calls,
        CountingConnection.sent / args.calls,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--history", type=int, default=200_000, help="events preloaded (ingestion)")
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument(
        "--transactions",
        type=float,
        default=0.25,
        help="share of six-entity transactions in the mixed history the decisions run against "
        "(the rest: storefront events); 0: the decisions run against the storefront history",
    )
    ap.add_argument("--rate", type=float, default=500, help="decisions/s of the paced run")
    ap.add_argument("--runs", type=int, default=3, help="storefront ingestion runs")
    args = ap.parse_args()
    rng = np.random.default_rng(7)

    pool = redis.ConnectionPool.from_url(
        args.redis, connection_class=CountingConnection, socket_timeout=5
    )
    client = redis.Redis(connection_pool=pool)
    backend = RedisBackend(client)
    store = FeatureStore(backend, batch_size=500)
    store.clear()
    print(f"CPU loop (loadtests.micro.report.cpu_loop_ms, this VM's speed): {cpu_loop_ms()} ms")

    # --- batch ingestion: 30 days of history --------------------------------------------------
    # batches of 500 events: their ids claimed, their writes merged per key and applied by the
    # batch function in calls of about backend.max_call_args arguments (features/pipeline.py).
    # The target belongs to what batch ingestion takes: storefront events (POST /v1/events),
    # measured --runs times on an emptied store.  The mixed history (a share of six-entity
    # transactions, as `cartwise features rebuild` replays them) is measured once after it and
    # stays in the store for the decisions below.
    now = time.time()
    start = now - 30 * DAY
    storefront = history(rng, args.history, start, args.customers, 0)
    runs = []
    for _ in range(args.runs):
        store.clear()
        runs.append(ingest(store, storefront))
    rates = sorted(r["events_per_s"] for r in runs)
    print(
        f"batch ingestion, storefront events: {args.history:,} events per run, {len(runs)} runs: "
        f"{rates[0]:,.0f} / {rates[len(rates) // 2]:,.0f} / {rates[-1]:,.0f} events/s "
        f"(min / median / max; target >= 20,000; batches of {store.batch_size}, writes merged "
        f"per key, calls of ~{backend.max_call_args} arguments)"
    )
    del storefront
    mixed: dict[str, float] | None = None
    if args.transactions > 0:
        events = history(rng, args.history, start, args.customers, args.transactions)
        store.clear()
        mixed = ingest(store, events)
        print(
            f"ingestion of a mixed history ({args.transactions:.0%} six-entity transactions): "
            f"{args.history:,} events, {mixed['events_per_s']:,.0f} events/s"
        )
        del events
    ingestion = {
        "events": args.history,
        "batch": store.batch_size,
        "max_call_args": backend.max_call_args,
        "storefront_runs": runs,
        "storefront_events_per_s": {
            "min": rates[0],
            "median": rates[len(rates) // 2],
            "max": rates[-1],
        },
        "mixed": mixed,
        "transactions_share": args.transactions,
    }

    # --- one decision: read every feature of 6 entities + record, one round trip -------------
    # a serving replica does not hold the preloaded history: drop it, and move what is left of
    # start-up out of the collector's way (what a replica does after warm-up)
    gc.collect()
    gc.freeze()
    decide, trips, sends = measure(store, rng, args, now, rate=0)
    paced, _, _ = measure(store, rng, args, now + args.calls, rate=args.rate)
    n_features = len(store.decide(transaction(rng, 1, now, args.customers)).values)
    for label, r in (("back to back", decide), (f"paced at {args.rate}/s", paced)):
        print(
            f"decision read+record, {label} ({n_features} features, 6 entities): "
            f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, p99.9 {r['p999_ms']:.3f} ms"
        )
    print(
        f"round trips waited per decision: {trips:.2f} (requests sent: {sends:.2f}: "
        "the writes follow the answered reads, unanswered)"
    )

    # --- memory per active customer ----------------------------------------------------------
    sizes = []
    for c in range(0, 200):
        keys = [f"cw:v:customer_txn:c{c}", f"cw:v:customer_activity:c{c}"]
        keys += [f"cw:z:customer_txn:{agg}:c{c}" for agg in ("cards", "devices", "ips")]
        total = sum(client.memory_usage(k) or 0 for k in keys)
        if client.exists(keys[0]):
            sizes.append(total)
    memory = {
        "customers_sampled": len(sizes),
        "mean_bytes": float(np.mean(sizes)),
        "p90_bytes": float(np.percentile(sizes, 90)),
        "max_bytes": float(np.max(sizes)),
        "used_memory_bytes": client.info("memory")["used_memory"],
    }
    print(
        "memory per active customer (its 2 view hashes + 3 distinct sets): "
        f"mean {memory['mean_bytes']:,.0f} B, p90 {memory['p90_bytes']:,.0f} B, "
        f"max {memory['max_bytes']:,.0f} B"
    )
    path = write(
        "features",
        {
            "redis": args.redis,
            "ingestion": ingestion,
            "decision": decide,
            "round_trips_per_decision": trips,
            "requests_sent_per_decision": sends,
            "features_per_decision": n_features,
            "memory_per_customer": memory,
        },
    )
    print(f"report: {path}")
    store.clear()


if __name__ == "__main__":
    main()
