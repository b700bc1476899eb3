"""One recommendation server-side: shopper state (one Redis round trip) + fold-in + FAISS search
with filters + widget rules + queueing the log row — everything ``GET /v1/recommendations`` does
but HTTP.

    python -m loadtests.micro.bench_recs_index        # fits and caches the factors once
    python -m loadtests.micro.bench_recs_decision [--calls 10000]

Uses the 50k-item x 64-factor model cached by ``bench_recs_index`` (ALS on synthetic clustered
data), a SQLite catalogue of those 50k SKUs in 200 categories, and the Redis at ``--redis``
(database 11, flushed): 5,000 shoppers with 5 to 30 recent events each, the day's trending counts,
and 1,000 SKUs out of stock.  Widget ``home`` (personalized, at most 3 per category, fallbacks).
Prints p50/p99 per stage and writes reports/recs_decision.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from engine.commerce.db import Database
from engine.commerce.schema import Product
from engine.recommend.artifact import RecModel
from engine.recommend.catalog import CatalogCache
from engine.recommend.index import single_thread
from engine.recommend.log import RecommendationLog
from engine.recommend.service import Recommender
from engine.recommend.widgets import WidgetStore
from features.backends import RedisBackend
from features.connection import connect
from features.definitions import Entity, FeatureEvent, Source
from features.shopper import ShopperReader
from features.store import FeatureStore
from loadtests.micro.report import percentiles, write

CACHE = Path("var/bench/recs_factors_50000x64_40000u.npz")
CATEGORIES = 200


def artifact(directory: Path, data: np.lib.npyio.NpzFile) -> list[str]:
    items, users = data["items"].astype(np.float32), data["users"].astype(np.float32)
    skus = [f"B{i:06d}" for i in range(len(items))]
    ids = np.full((len(items), 20), -1, dtype=np.int64)
    meta = {
        "version": "bench",
        "kind": "als",
        "factors": items.shape[1],
        "regularization": 0.1,
        "alpha": 10.0,
        "weighting": "none",
        "iterations": 15,
        "event_weights": {"view": 1, "add_to_cart": 3, "purchase": 5},
        "metrics": {},
    }
    (directory / "model.json").write_text(json.dumps(meta))
    (directory / "items.json").write_text(json.dumps(skus))
    (directory / "users.json").write_text(json.dumps([f"u{i}" for i in range(len(users))]))
    np.save(directory / "item_factors.npy", items)
    np.save(directory / "user_factors.npy", users)
    np.save(directory / "popularity.npy", data["popularity"].astype(np.float32))
    np.savez(directory / "bought_together.npz", ids=ids, scores=np.zeros(ids.shape, np.float32))
    return skus


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    ap.add_argument("--calls", type=int, default=10_000)
    args = ap.parse_args()
    if not CACHE.exists():
        raise SystemExit(f"{CACHE} missing: run python -m loadtests.micro.bench_recs_index first")
    single_thread()
    tmp = Path(tempfile.mkdtemp())
    (tmp / "model").mkdir()
    skus = artifact(tmp / "model", np.load(CACHE))
    rng = np.random.default_rng(4)
    category = {s: f"cat{rng.integers(CATEGORIES)}" for s in skus}
    db = Database(f"sqlite:///{tmp / 'bench.db'}")
    db.migrate()
    with db.transaction() as s:
        s.execute(
            insert(Product),
            [
                {"sku": k, "title": k, "category": c, "cost": 1, "list_price": 2, "currency": "EUR"}
                for k, c in category.items()
            ],
        )
    client = connect(args.redis, timeout_ms=2_000)
    client.flushdb()
    store = FeatureStore(RedisBackend(client))
    now = time.time()
    pop = np.load(CACHE)["popularity"].astype(np.float64) + 1e-3
    pop /= pop.sum()
    events = []
    for c in range(5_000):
        for j, item in enumerate(rng.choice(len(skus), size=rng.integers(5, 31), p=pop)):
            kind = ("view", "add_to_cart", "purchase")[int(rng.choice(3, p=[0.8, 0.15, 0.05]))]
            sku = skus[item]
            events.append(
                FeatureEvent(
                    f"b{c}-{j}",
                    Source.INTERACTION,
                    kind,
                    now - 3_600 + j,
                    {
                        Entity.CUSTOMER: f"u{c}",
                        Entity.SESSION: f"s{c}",
                        Entity.SKU: sku,
                        Entity.CATEGORY: category[sku],
                    },
                    {"qty": 1},
                    {"sku": sku},
                )
            )
    store.record(events)
    store.set_stock([(skus[i], "w1", 0) for i in rng.choice(len(skus), 1_000, replace=False)])
    widgets = WidgetStore(db)
    widgets.seed_defaults()
    log = RecommendationLog(db)
    shopper = ShopperReader(store)
    recs = Recommender(shopper, CatalogCache(db), widgets, log, model=RecModel.load(tmp / "model"))
    model = recs.model
    assert model is not None
    customers = rng.integers(0, 5_000, args.calls + 500)
    for c in customers[:500]:
        recs.recommend(customer_id=f"u{c}", session_id=f"s{c}", widget="home")
    gc.collect()
    gc.freeze()
    total, shown = [], []
    for c in customers[500:]:
        t = time.perf_counter()
        rec = recs.recommend(customer_id=f"u{c}", session_id=f"s{c}", widget="home")
        total.append(time.perf_counter() - t)
        shown.append(len(rec.items))
    log.flush()
    stage: dict[str, list[float]] = {"shopper_state": [], "fold_in": [], "search": []}
    for c in customers[:2_000]:
        t = time.perf_counter()
        state = shopper.state(customer_id=f"u{c}", session_id=f"s{c}", category=None, now=now)
        stage["shopper_state"].append(time.perf_counter() - t)
        ids = np.array([i for x in state.recent[:20] if (i := model.item_id(x.sku)) is not None])
        w = np.ones(len(ids))
        t = time.perf_counter()
        vec = model.fold_in(ids.astype(np.int64), w, model.user_vector(f"u{c}"))
        stage["fold_in"].append(time.perf_counter() - t)
        t = time.perf_counter()
        model.search(vec, 30, exclude=ids.astype(np.int64), allow=None)
        stage["search"].append(time.perf_counter() - t)
    report = {
        "items": len(skus),
        "factors": int(model.index.item_factors.shape[1]),
        "index": model.index.kind,
        "calls": len(total),
        "mean_items": float(np.mean(shown)),
        "recommendation": percentiles(total),
        "stages": {k: percentiles(v) for k, v in stage.items()},
    }
    r = report["recommendation"]
    print(
        f"recommendation: p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms over "
        f"{len(total):,} calls ({report['index']} index, {len(skus):,} items)"
    )
    for k, v in report["stages"].items():
        print(f"  {k:14s} p50 {v['p50_ms'] * 1e3:7.1f} µs  p99 {v['p99_ms'] * 1e3:7.1f} µs")
    print(f"report: {write('recs_decision', report)}")
    log.close()
    client.flushdb()


if __name__ == "__main__":
    main()
