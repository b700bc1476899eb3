"""Recommendation index and fold-in, in-process, one OpenMP thread (as in a serving replica).

    nice -n 5 python -m loadtests.micro.bench_recs_index [--items 50000 --factors 64]

Item and user factors come from an implicit ALS fit on synthetic clustered interactions (so the
geometry is realistic: power-law norms, clusters, cold items at zero).  The fit runs in a child
process (``--fit-only``) and is cached under ``var/bench/``: this process never runs a
multi-threaded OpenMP region, whose spinning threads would distort the timings.

Measures, for a flat and an IVF index: search latency for k=10 without a filter and with an
exclude filter of 50 ids (drawn from the user's true top 100: the hard case, the excluded items
are the ones the index would have returned), recall@10 against brute force for both, build
time; then fold-in of 20 interactions and fold-in + filtered IVF search together.  Prints and
writes ``reports/recs_index.json``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

EVENT_WEIGHTS = np.array([1.0, 3.0, 5.0])  # view, add_to_cart, purchase
CACHE = Path("var/bench")


def fit(items: int, users: int, factors: int, out: Path, seed: int = 0) -> None:
    """Synthetic clustered interactions → implicit ALS → ``out`` (.npz)."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    clusters = max(8, items // 500)
    item_cluster = rng.integers(clusters, size=items)
    appeal = rng.pareto(1.1, size=items) + 1.0
    order = np.argsort(item_cluster, kind="stable")
    bounds = np.searchsorted(item_cluster[order], np.arange(clusters + 1))
    cum = [np.cumsum(appeal[order[a:b]]) for a, b in itertools.pairwise(bounds)]
    per_user = rng.integers(5, 60, size=users)
    rows = np.repeat(np.arange(users), per_user)
    liked = rng.integers(clusters, size=(users, 3))
    pick = liked[rows, rng.choice(3, size=rows.size, p=[0.6, 0.3, 0.1])]
    stray = rng.random(rows.size) < 0.1  # some browsing outside the shopper's clusters
    pick[stray] = rng.integers(clusters, size=int(stray.sum()))
    cols = np.empty(rows.size, dtype=np.int64)
    for c in range(clusters):
        at = np.flatnonzero(pick == c)
        u = rng.random(at.size) * cum[c][-1]
        cols[at] = order[bounds[c] + np.searchsorted(cum[c], u)]
    vals = rng.choice(EVENT_WEIGHTS, size=rows.size, p=[0.75, 0.17, 0.08]).astype(np.float32)
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(users, items))
    model = AlternatingLeastSquares(
        factors=factors, regularization=0.05, alpha=2.0, iterations=12, random_state=seed
    )
    with threadpool_limits(1, "blas"):
        model.fit(matrix, show_progress=False)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        items=model.item_factors.astype(np.float32),
        users=model.user_factors.astype(np.float32),
        popularity=np.asarray((matrix > 0).sum(axis=0)).ravel().astype(np.float32),
        nnz=np.array(matrix.nnz),
    )


def timed(fn: Callable[[int], Any], n: int, warm: int = 200) -> np.ndarray:
    for i in range(warm):
        fn(i)
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out[i] = time.perf_counter() - t
    return out


def us(stats: dict[str, float]) -> str:
    return f"p50 {stats['p50_ms'] * 1e3:6.1f} µs  p99 {stats['p99_ms'] * 1e3:6.1f} µs"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--users", type=int, default=40_000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--queries", type=int, default=3_000)
    ap.add_argument("--refit", action="store_true")
    ap.add_argument("--fit-only", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fit_only:
        fit(args.items, args.users, args.factors, args.fit_only)
        return

    cached = CACHE / f"recs_factors_{args.items}x{args.factors}_{args.users}u.npz"
    if args.refit or not cached.exists():
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "loadtests.micro.bench_recs_index", "--fit-only", str(cached)]
        cmd += ["--items", str(args.items), "--users", str(args.users)]
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        subprocess.run([*cmd, "--factors", str(args.factors)], check=True, env=env)
        print(f"implicit ALS fit on synthetic data: {time.perf_counter() - t:.1f} s")

    import faiss
    from threadpoolctl import threadpool_limits

    from engine.recommend.foldin import FoldIn
    from engine.recommend.index import ItemIndex, exact_top_k, recall_at_k, single_thread
    from loadtests.micro.report import percentiles, write

    single_thread()
    threadpool_limits(1, "blas")
    data = np.load(cached)
    items, users, popularity = data["items"], data["users"], data["popularity"]
    rng = np.random.default_rng(1)
    held_out = users[1::2]
    held_out = held_out[np.abs(held_out).sum(axis=1) > 0]
    qs = held_out[rng.choice(len(held_out), size=args.queries, replace=False)]
    truth100 = exact_top_k(items, qs, 100)
    excludes = np.array([rng.choice(row, size=50, replace=False) for row in truth100])
    truth_excl = np.array(
        [row[~np.isin(row, ex)][:10] for row, ex in zip(truth100, excludes, strict=True)]
    )
    truth10 = truth100[:, :10]
    report: dict[str, Any] = {
        "items": int(items.shape[0]),
        "factors": int(items.shape[1]),
        "users": int(users.shape[0]),
        "interactions": int(data["nnz"]),
        "queries": args.queries,
        "omp_threads": faiss.omp_get_max_threads(),
        "k": 10,
        "exclude": "50 ids drawn from the user's true top 100",
        "indexes": {},
    }
    print(
        f"{items.shape[0]:,} items x {items.shape[1]} factors, {args.queries:,} held-out user "
        f"queries, {faiss.omp_get_max_threads()} OpenMP thread"
    )
    ivf_index = None
    for kind in ("flat", "ivf"):
        t = time.perf_counter()
        index = ItemIndex.build(items, kind=kind, queries=users[::2])
        build_s = time.perf_counter() - t
        plain = timed(lambda i, ix=index: ix.search(qs[i % len(qs)], 10), args.queries)
        filt = timed(
            lambda i, ix=index: ix.search(qs[i % len(qs)], 10, exclude=excludes[i % len(qs)]),
            args.queries,
        )
        found = np.array([_pad(index.search(q, 10)[0]) for q in qs])
        found_ex = np.array(
            [_pad(index.search(q, 10, exclude=ex)[0]) for q, ex in zip(qs, excludes, strict=True)]
        )
        if index.nprobe is not None:  # the same, probing only what depth 10 needs
            table, index.nprobe_by_depth = index.nprobe_by_depth, {len(index): index.nprobe}
            shallow = np.array(
                [
                    _pad(index.search(q, 10, exclude=ex)[0])
                    for q, ex in zip(qs, excludes, strict=True)
                ]
            )
            index.nprobe_by_depth = table
        leaked = int(sum(np.isin(f, ex).sum() for f, ex in zip(found_ex, excludes, strict=True)))
        entry = {
            "build_s": build_s,
            "nlist": index.nlist,
            "nprobe": index.nprobe,
            "nprobe_by_depth": index.nprobe_by_depth,
            "tuning_recall_at_10": index.recall,
            "search_k10": percentiles(plain),
            "search_k10_exclude50": percentiles(filt),
            "recall_at_10": recall_at_k(found, truth10),
            "recall_at_10_exclude50": recall_at_k(found_ex, truth_excl),
            "excluded_ids_returned": leaked,
        }
        if index.nprobe is not None:
            entry["recall_at_10_exclude50_depth10_nprobe"] = recall_at_k(shallow, truth_excl)
        report["indexes"][kind] = entry
        probes = "" if index.nlist is None else f" nlist {index.nlist} nprobe {index.nprobe}"
        print(f"{kind:4}{probes}: build {build_s:.1f} s, depth table {index.nprobe_by_depth}")
        print(f"  k=10           {us(entry['search_k10'])}  recall@10 {entry['recall_at_10']:.3f}")
        print(
            f"  k=10 excl. 50  {us(entry['search_k10_exclude50'])}  "
            f"recall@10 {entry['recall_at_10_exclude50']:.3f}  excluded returned: {leaked}"
        )
        if "recall_at_10_exclude50_depth10_nprobe" in entry:
            shallow_recall = entry["recall_at_10_exclude50_depth10_nprobe"]
            print(f"  k=10 excl. 50 with the depth-10 nprobe: recall@10 {shallow_recall:.3f}")
        ivf_index = index

    t = time.perf_counter()
    foldin = FoldIn(items, 0.05, 2.0)
    prep_ms = (time.perf_counter() - t) * 1e3
    p = popularity / popularity.sum()
    sessions = [
        list(
            zip(
                rng.choice(items.shape[0], size=20, p=p).tolist(),
                rng.choice(EVENT_WEIGHTS, size=20, p=[0.75, 0.17, 0.08]).tolist(),
                strict=True,
            )
        )
        for _ in range(args.queries)
    ]
    fold = timed(lambda i: foldin.user_vector(sessions[i % len(sessions)]), args.queries)
    base = held_out[0]
    blend = timed(
        lambda i: foldin.user_vector(sessions[i % len(sessions)], base=base), args.queries
    )
    assert ivf_index is not None

    def request(i: int) -> None:
        session = sessions[i % len(sessions)]
        x = foldin.user_vector(session)
        ivf_index.search(x, 10, exclude=np.array([s[0] for s in session], dtype=np.int64))

    both = timed(request, args.queries)
    report["foldin"] = {
        "interactions": 20,
        "precompute_ms": prep_ms,
        "user_vector": percentiles(fold),
        "user_vector_with_base": percentiles(blend),
        "foldin_plus_ivf_search_exclude20": percentiles(both),
    }
    print(f"fold-in, 20 interactions: {us(report['foldin']['user_vector'])}")
    print(f"  with stored vector:     {us(report['foldin']['user_vector_with_base'])}")
    combined = us(report["foldin"]["foldin_plus_ivf_search_exclude20"])
    print(f"fold-in + IVF search excluding the 20: {combined}")
    print(f"report: {write('recs_index', report)}")


def _pad(ids: np.ndarray, k: int = 10) -> np.ndarray:
    out = np.full(k, -1, dtype=np.int64)
    out[: ids.size] = ids[:k]
    return out


if __name__ == "__main__":
    main()
