"""Recommender training at scale: the ALS fit alone and the whole ``train`` pipeline.

    python -m loadtests.micro.bench_recs_training                # 200k x 50k x 5M
    python -m loadtests.micro.bench_recs_training --interactions 1000000 --search

Generates interactions in the file format (power-law item popularity, users with one of
``--tastes`` tastes picking 70% of their items from it, log-normal activity, 60 days), then
times: validating the frame (``data.events_from_frame``), one ALS fit on all pairs with fixed
parameters, and ``train.train`` end to end (split, parameters — fixed, or the coordinate search
with ``--search`` —, fit on train, scoring ALS and popularity on the test users, refit on all
pairs, bought-together, artifact; no registry).  Prints the figures and writes
reports/recs_training.json.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loadtests.micro.report import write
from training.recommend.als import AlsParams, default_threads, encode, fit_als, matrix
from training.recommend.data import events_from_frame
from training.recommend.train import train

DAY = 86_400


def synthetic(users: int, items: int, n: int, tastes: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, items + 1) ** 1.0  # Zipf-like popularity over a shuffled catalogue
    pop = pop[rng.permutation(items)]
    activity = rng.lognormal(0.0, 1.0, size=users)
    user = rng.choice(users, size=n, p=activity / activity.sum())
    item = _draw(rng, np.arange(items), pop, n)
    cluster = np.arange(items) % tastes
    taste = rng.integers(tastes, size=users)
    own = rng.random(n) < 0.7
    for c in range(tastes):
        rows = np.flatnonzero(own & (taste[user] == c))
        members = np.flatnonzero(cluster == c)
        item[rows] = _draw(rng, members, pop[members], len(rows))
    kinds = np.array(["view", "add_to_cart", "purchase"], dtype=object)
    return pd.DataFrame(
        {
            "user_id": np.char.add("u", user.astype(str)).astype(object),
            "item_id": np.char.add("sku-", item.astype(str)).astype(object),
            "timestamp": 1_760_000_000 + rng.integers(0, 60 * DAY, size=n),
            "event_type": kinds[rng.choice(3, size=n, p=[0.75, 0.15, 0.10])],
        }
    )


def _draw(rng: np.random.Generator, values: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    cdf = np.cumsum(weights / weights.sum())
    return values[np.minimum(np.searchsorted(cdf, rng.random(n)), len(values) - 1)]


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--interactions", type=int, default=5_000_000)
    ap.add_argument("--tastes", type=int, default=100)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--search", action="store_true", help="Coordinate search in the pipeline.")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    params = AlsParams(factors=args.factors, iterations=args.iterations)
    threads = default_threads()

    t = time.perf_counter()
    raw = synthetic(args.users, args.items, args.interactions, args.tastes, args.seed)
    generate_s = time.perf_counter() - t
    t = time.perf_counter()
    events = events_from_frame(raw)
    validate_s = time.perf_counter() - t
    del raw
    t = time.perf_counter()
    encoded, _ = encode(events)
    weights = matrix(encoded.pairs, encoded.shape)
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    fit_als(weights, params, seed=args.seed, num_threads=threads)
    fit_s = time.perf_counter() - t
    users, items = encoded.shape
    print(
        f"{len(events):,} events, {users:,} users x {items:,} items, {weights.nnz:,} pairs; "
        f"generate {generate_s:.1f} s, validate {validate_s:.1f} s, encode {encode_s:.1f} s"
    )
    print(
        f"ALS fit ({args.factors} factors, {args.iterations} iterations, {threads} threads): "
        f"{fit_s:.1f} s ({fit_s / args.iterations:.2f} s per iteration)"
    )
    del weights, encoded

    steps: list[tuple[float, str]] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cw-bench-recs-") as tmp:
        result = train(
            events,
            params=None if args.search else params,
            out_dir=Path(tmp) / "model",
            num_threads=threads,
            progress=lambda m: steps.append((time.perf_counter() - start, m)),
        )
        size_mb = sum(f.stat().st_size for f in (Path(tmp) / "model").iterdir()) / 1e6
    pipeline_s = time.perf_counter() - start
    ev = result.evaluation
    summary: dict[str, Any] = ev.summary()
    print(f"train pipeline: {pipeline_s:.1f} s (artifact {size_mb:.0f} MB); steps:")
    marks = [*steps, (pipeline_s, "done")]
    for (at, what), (after, _) in itertools.pairwise(marks):
        print(f"  {at:7.1f} s  +{after - at:6.1f} s  {what[:90]}")
    print(f"  ALS        {_fmt(ev.als)}\n  popularity {_fmt(ev.popularity)}")
    print(f"peak RSS {_rss_gb():.1f} GB")
    path = write(
        "recs_training",
        {
            "data": {
                "events": len(events),
                "users": users,
                "items": items,
                "pairs": len(ev.encoded.pairs),
                "tastes": args.tastes,
            },
            "threads": threads,
            "params": params.as_dict() if not args.search else summary["params"],
            "search": args.search,
            "seconds": {
                "generate": generate_s,
                "validate": validate_s,
                "encode": encode_s,
                "als_fit": fit_s,
                "als_fit_per_iteration": fit_s / args.iterations,
                "train_pipeline": pipeline_s,
            },
            "pipeline_steps": [{"at_s": at, "step": what} for at, what in steps],
            "artifact_mb": size_mb,
            "metrics": {"als": ev.als, "popularity": ev.popularity},
            "evaluation": {k: summary[k] for k in ("split", "test_users", "test_pairs")},
            "peak_rss_gb": _rss_gb(),
        },
    )
    print(f"report: {path}")


def _fmt(m: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in m.items())


if __name__ == "__main__":
    main()
