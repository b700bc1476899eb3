"""One fraud decision server-side: features (one Redis round trip) + model + rules + reasons +
queueing the decision for the log — everything ``POST /v1/fraud/score`` does but HTTP.

    cartwise fraud backtest … --model-out var/models/fraud-handbook
    python -m loadtests.micro.bench_fraud_decision --model var/models/fraud-handbook

Runs on the Redis at ``--redis`` (database 11 by default, flushed) and a fresh SQLite decision
log.  The store is warmed with ``--history`` earlier transactions of the same customers, cards
and merchants; 20 rules are active (the 10 default list rules + 10 over features and request
attributes) and the block lists hold 9,000 items.  The policy is set so that roughly one
decision in five is non-allow, which pays for reasons.  Decisions run back to back, then again
paced at 500/s.  Prints p50/p99 per stage and writes reports/fraud_decision.json.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

from engine.commerce.db import Database
from engine.fraud.config import FraudConfig
from engine.fraud.decision import Card, Policy, ScoreRequest
from engine.fraud.log import DecisionLog
from engine.fraud.model import FraudModel
from engine.fraud.service import FraudService
from features.backends import RedisBackend
from features.connection import connect
from features.fraud import TransactionFeatures, scored_transaction
from features.store import FeatureStore
from loadtests.micro.report import percentiles, write

RULES = [
    ("velocity", ":customer_txn.txn_count_10m: > 5", "review"),
    ("card-many-customers", ":card_txn.customers_7d: > 3", "block"),
    ("ip-many-cards", ":ip_txn.cards_1h: >= 4", "review"),
    ("amount-spike", ":amount_vs_customer_30d: > 8 and :amount: > 300", "review"),
    ("new-device-big", ":device_txn.txn_count_1h: = 0 and :amount: > 900", "challenge"),
    ("night-big", ":is_night: = 1 and :amount: > 700", "review"),
    ("country-mismatch", ":card_country: != :shipping_country: and :amount: > 200", "review"),
    ("merchant-fraud", ":merchant_txn.fraud_7d_delay7d_ratio: > 0.2", "review"),
    ("risky-bin", ":card_bin: in ('400000', '511111')", "block"),
    ("high-score", ":risk_score: >= 90", "block"),
]


def requests(n: int, start: datetime, rng: np.random.Generator, prefix: str) -> list[ScoreRequest]:
    customers = rng.integers(0, 5_000, n)
    out = []
    for i in range(n):
        c = int(customers[i])
        out.append(
            ScoreRequest(
                transaction_id=f"{prefix}{i}",
                customer_id=f"c{c}",
                amount=Decimal(f"{rng.lognormal(3.5, 1.0):.2f}"),
                currency="EUR",
                ts=start + timedelta(seconds=i * 2),
                payment_method="card",
                card=Card(
                    fingerprint=f"k{c if rng.random() > 0.05 else int(rng.integers(0, 9_000))}",
                    bin="424242",
                    country="DE",
                    last4="4242",
                ),
                device_id=f"d{c}",
                ip=f"10.{c % 256}.{c // 256}.1",
                email=f"c{c}@example.com",
                shipping_country="DE" if rng.random() > 0.1 else "FR",
                merchant_id=f"m{int(rng.integers(0, 200))}",
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--history", type=int, default=50_000)
    args = ap.parse_args()

    client = connect(args.redis, timeout_ms=2_000)
    client.flushdb()
    store = FeatureStore(RedisBackend(client))
    db = Database(f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}")
    db.migrate()
    config = FraudConfig(db)
    for name, expr, action in RULES:
        config.create_rule({"name": name, "expression": expr, "action": action})
    config.add_items("block_card_fingerprints", [(f"stolen-{i}", None) for i in range(1_000)])
    for chunk in range(9):
        config.add_items("block_ips", [(f"192.168.{chunk}.{i}", None) for i in range(1, 255)])
        config.add_items("block_emails", [(f"bad{chunk}-{i}@x.io", None) for i in range(800)])
    log = DecisionLog(db)
    model = FraudModel.load(args.model)
    service = FraudService(TransactionFeatures(store), config, log, model=model)

    rng = np.random.default_rng(5)
    start = datetime.now(UTC) - timedelta(days=2)
    history = requests(args.history, start - timedelta(days=5), rng, "h")
    events = [scored_transaction(r) for r in history]
    store.record(events)
    calls = requests(args.calls + 1_000, start, rng, "t")
    # calibrate the policy so ~20% of decisions are non-allow (they pay for reasons)
    warm = [service.score(r) for r in calls[:1_000]]
    cut = int(np.percentile([d.risk_score for d in warm], 80))
    service.use_policy(Policy(elevated_at=cut, highest_at=min(cut + 10, 100)))
    log.flush()

    gc.collect()
    gc.freeze()
    samples, by_outcome = [], Counter[str]()
    non_allow, allow = [], []
    for r in calls[1_000:]:
        t = time.perf_counter()
        d = service.score(r)
        dt = time.perf_counter() - t
        samples.append(dt)
        by_outcome[d.outcome] += 1
        (allow if d.outcome == "allow" else non_allow).append(dt)
    log.flush()
    # the same again at a steady 500 decisions/s (a busy checkout, not a tight loop)
    paced: list[float] = []
    more = requests(args.calls, start + timedelta(hours=12), rng, "p")
    t0 = time.perf_counter()
    for i, r in enumerate(more):
        wait = t0 + i / 500 - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        t = time.perf_counter()
        service.score(r)
        paced.append(time.perf_counter() - t)
    log.flush()

    # stages, measured apart on the same kind of requests
    stage: dict[str, list[float]] = {"features": [], "model": [], "rules": [], "reasons": []}
    features = TransactionFeatures(store)
    rows = np.array([d.inputs for d in warm], dtype=np.float32)
    snap = config.snapshot()
    for i, r in enumerate(requests(2_000, start + timedelta(days=1), rng, "s")):
        t = time.perf_counter()
        features.decide(r)
        stage["features"].append(time.perf_counter() - t)
        row = rows[i % len(rows)]
        t = time.perf_counter()
        model.probabilities(row[None, :])
        stage["model"].append(time.perf_counter() - t)
        attrs = {"amount": float(r.amount), "card_bin": "424242", "risk_score": 50}
        t = time.perf_counter()
        snap.rules.evaluate(attrs, snap.lists)
        stage["rules"].append(time.perf_counter() - t)
        t = time.perf_counter()
        model.reasons(row)
        stage["reasons"].append(time.perf_counter() - t)

    total = percentiles(samples)
    report = {
        "model": str(args.model),
        "model_version": model.version,
        "calls": len(samples),
        "history_events": len(events),
        "rules": len(snap.rules.rules),
        "list_items": sum(len(v) for v in snap.lists.values()),
        "outcomes": dict(by_outcome),
        "decision": total,
        "decision_paced_500_per_s": percentiles(paced),
        "decision_allow": percentiles(allow),
        "decision_non_allow": percentiles(non_allow) if non_allow else None,
        "stages": {k: percentiles(v) for k, v in stage.items()},
        "decisions_logged": log.written,
        "decisions_dropped": log.dropped,
    }
    print(
        f"decision: p50 {total['p50_ms']:.3f} ms, p99 {total['p99_ms']:.3f} ms over "
        f"{len(samples):,} calls; outcomes {dict(by_outcome)}"
    )
    pp = report["decision_paced_500_per_s"]
    print(f"paced at 500/s: p50 {pp['p50_ms']:.3f} ms, p99 {pp['p99_ms']:.3f} ms")
    for k, v in report["stages"].items():
        print(f"  {k:9s} p50 {v['p50_ms'] * 1e3:7.1f} µs  p99 {v['p99_ms'] * 1e3:7.1f} µs")
    if non_allow:
        na = report["decision_non_allow"]
        print(f"  non-allow (with reasons): p50 {na['p50_ms']:.3f} ms, p99 {na['p99_ms']:.3f} ms")
    print(f"logged {log.written:,} decisions, dropped {log.dropped}")
    print(f"report: {write('fraud_decision', report)}")
    log.close()
    client.flushdb()


if __name__ == "__main__":
    main()
