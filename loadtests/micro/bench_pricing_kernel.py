"""Batch repricing kernel: 1M SKUs through every guardrail, numba on one thread against the
numpy reference of the tests (the same prices, checked).

    python -m loadtests.micro.bench_pricing_kernel [--skus 1000000] [--runs 30]

A synthetic catalogue shaped like a real one: list prices log-normal around 40 EUR, costs
40-90 % of list, MAP on a third of the SKUs, a fifth changed within the last hour (the minimum
interval holds them), the day's opening price off the current one on half; demand inputs from
Poisson counts, competitor prices around list, elasticities, 10 % of inputs missing.  SKUs are
grouped by rule (as repricing groups them): six rules over the five strategies, plus SKUs with
no rule, each rule with its own guardrails (margin, ceiling, daily limit, interval, charm).
Prints the figures and writes reports/pricing_kernel.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from engine.pricing import kernels as k
from loadtests.micro.report import percentiles, write
from tests.unit import pricing_reference as reference

STRATEGIES = [
    k.STRATEGY_DEMAND,
    k.STRATEGY_INVENTORY,
    k.STRATEGY_COMPETITOR,
    k.STRATEGY_COMPETITOR,
    k.STRATEGY_ELASTICITY,
    k.STRATEGY_INVENTORY,
]
PARAMS = [
    [0.10, 0.05, 1.0, 20.0, 0.15],
    [30.0, 0.20, 0.05, 0.10, 0.0],
    [0.0, 1.0, 0.01, 0.0, 0.0],  # beat the cheapest by 1 %
    [1.0, 2.0, 0.0, 50.0, 0.0],  # stay 0.50 above the average
    [0.0, 0.0, 0.0, 0.0, 0.0],
    [90.0, 0.30, 0.0, 0.15, 0.25],  # clearance
]
GUARDS = [  # min margin bp, ceiling bp, max change bp/day, min interval s, charm
    [1_000, 13_000, 1_000, 3_600, 99],
    [500, 15_000, 1_500, 3_600, 99],
    [800, 12_000, 500, 1_800, 95],
    [800, 12_000, 500, 1_800, 0],
    [1_000, 15_000, 2_000, 3_600, 99],
    [0, 10_000, 3_000, 0, 95],
    [1_000, 13_000, 1_000, 3_600, 99],  # defaults (no rule)
]


def catalogue(n: int, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rule = np.sort(rng.integers(-1, len(STRATEGIES), n)).astype(np.int32)
    list_c = np.clip(rng.lognormal(np.log(4_000), 0.9, n), 99, 5_000_000).astype(np.int32)
    cost_c = (list_c * rng.uniform(0.4, 0.9, n)).astype(np.int32)
    map_c = np.where(rng.random(n) < 0.33, list_c * rng.uniform(0.8, 0.95, n), 0)
    cur_c = (list_c * rng.uniform(0.85, 1.15, n)).astype(np.int32)
    moved = rng.random(n) < 0.5
    open_c = np.where(moved, cur_c * rng.uniform(0.9, 1.1, n), cur_c).astype(np.int32)
    since = np.where(rng.random(n) < 0.2, rng.integers(0, 3_600, n), rng.integers(3_600, 10**6, n))
    x = np.empty((k.N_INPUTS, n), dtype=np.float32)
    x[k.I_UNITS_1D] = rng.poisson(3, n)
    x[k.I_UNITS_7D] = rng.poisson(20, n)
    x[k.I_VIEWS_1D] = rng.poisson(80, n)
    x[k.I_VIEWS_7D] = rng.poisson(500, n)
    x[k.I_STOCK] = rng.integers(0, 2_000, n)
    x[k.I_COMP_MIN] = np.round(list_c * rng.uniform(0.8, 1.1, n))
    x[k.I_COMP_AVG] = np.round(x[k.I_COMP_MIN] * rng.uniform(1.0, 1.15, n))
    x[k.I_ELASTICITY] = rng.uniform(-4.0, -0.8, n)
    x[rng.random(x.shape) < 0.1] = np.nan
    return {
        "rule": rule,
        "list_c": list_c,
        "cost_c": cost_c,
        "map_c": map_c.astype(np.int32),
        "cur_c": cur_c,
        "open_c": open_c,
        "since": since.astype(np.int64),
        "inputs": x,
        "strategies": np.array(STRATEGIES, dtype=np.int64),
        "params": np.array(PARAMS, dtype=np.float64),
        "guards": np.array(GUARDS, dtype=np.float64),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skus", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--numpy-runs", type=int, default=3)
    args = ap.parse_args()
    c = catalogue(args.skus)
    n = args.skus
    starts, seg_rule = k.segments(c["rule"])
    target, price, bound = np.zeros(n), np.zeros(n, np.int32), np.zeros(n, np.int8)

    def kernel() -> None:
        k.reprice(
            starts, seg_rule, c["list_c"], c["cost_c"], c["map_c"], c["cur_c"], c["open_c"],
            c["since"], c["inputs"], c["strategies"], c["params"], c["guards"],
            target, price, bound,
        )  # fmt: skip

    t = time.perf_counter()
    k.warm_up()
    warm_s = time.perf_counter() - t
    with threadpool_limits(1):
        kernel()  # touch every page once
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            kernel()
            times.append(time.perf_counter() - t)
        numpy_times = []
        for _ in range(args.numpy_runs):
            t = time.perf_counter()
            want_price, want_bound = reference.reprice(
                c["rule"], c["list_c"], c["cost_c"], c["map_c"], c["cur_c"], c["open_c"],
                c["since"], c["inputs"], c["strategies"], c["params"], c["guards"],
            )  # fmt: skip
            numpy_times.append(time.perf_counter() - t)
    identical = bool(
        np.array_equal(want_price, price.astype(np.int64))
        and np.array_equal(want_bound, bound.astype(np.int64))
    )
    numba_ms = percentiles(times)
    numpy_ms = percentiles(numpy_times)
    bounds = np.bincount(bound, minlength=5)
    body = {
        "skus": n,
        "rules": len(STRATEGIES),
        "kernel_warm_up_s": round(warm_s, 3),
        "numba": numba_ms,
        "numpy_reference": numpy_ms,
        "speedup_median": numpy_ms["p50_ms"] / numba_ms["p50_ms"],
        "identical_prices": identical,
        "bounded_by": {str(k.BOUND_NAMES[i]): int(v) for i, v in enumerate(bounds)},
        "changed": int(np.sum(price != c["cur_c"])),
    }
    path = write("pricing_kernel", body)
    print(
        f"reprice {n:,} SKUs, one thread: p50 {numba_ms['p50_ms']:.2f} ms, "
        f"min {min(times) * 1e3:.2f} ms, max {numba_ms['max_ms']:.2f} ms over {args.runs} runs "
        "(target <= 15 ms)"
    )
    print(
        f"numpy reference: p50 {numpy_ms['p50_ms']:.0f} ms -> numba {body['speedup_median']:.0f}x "
        f"(target >= 3x); identical prices and bounds: {identical}"
    )
    print(f"kernel warm-up (compile or numba cache load): {warm_s:.2f} s")
    print(f"bounded_by: {body['bounded_by']}")
    print(f"report: {path}")


if __name__ == "__main__":
    main()
