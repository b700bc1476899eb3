"""Ranking metrics at k, defined as in Microsoft Recommenders' ``python_evaluation``.

For each test user: ``rec`` is their ranked recommendation list (first k used), ``rel`` the set
of items in their test set (distinct), ``hit_i`` = 1 if the item at rank ``i`` (1-based) is in
``rel``; ``n = |rel|``.  Every metric is the mean over the test users of:

* precision@k = Σ hit_i / k  (k, even if fewer than k items were recommended);
* recall@k    = Σ hit_i / n;
* NDCG@k      = DCG / IDCG with binary relevance, DCG = Σ hit_i / ln(1 + i) and
  IDCG = Σ_{i=1..min(n, k)} 1 / ln(1 + i);
* MAP@k       = Σ_i hit_i · (hits in ranks 1..i) / i, divided by min(n, k) (``map_at_k``;
  Recommenders' ``map`` divides by n instead).

Users with an empty test set are not test users and are skipped.  Recommenders averages
precision, recall and MAP over the users that have recommendations; here every test user gets a
list (an empty one scores 0), which is the same whenever every test user has recommendations,
as in ``training.recommend.train``.

Catalogue coverage = distinct recommended items / items in the catalogue.

Recommendations are given either as an int array ``[users, ≥k]`` padded with -1 and the test
sets as a CSR-like object (``indptr``, ``indices``; row ``u`` = the items of user ``u``) — the
fast, vectorised path — or as plain sequences of item lists and item collections.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

NAMES = ("precision", "recall", "ndcg", "map")


class Sparse(Protocol):
    indptr: npt.NDArray[np.integer[Any]]
    indices: npt.NDArray[np.integer[Any]]


def hits(
    recommended: npt.NDArray[np.integer[Any]] | Sequence[Sequence[Hashable]],
    relevant: Sparse | Sequence[Collection[Hashable]],
    k: int,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """``hit[u, i]`` (rank i+1 of user u is relevant, ``[users, k]``) and ``n[u] = |rel_u|``;
    users with no relevant item are dropped."""
    if k < 1:
        raise ValueError("k must be at least 1")
    if isinstance(recommended, np.ndarray) and hasattr(relevant, "indptr"):
        hit, n = _hits_arrays(recommended, relevant, k)  # type: ignore[arg-type]
    else:
        hit, n = _hits_lists(recommended, relevant, k)  # type: ignore[arg-type]
    keep = n > 0
    return hit[keep], n[keep]


def _hits_arrays(
    recommended: npt.NDArray[np.integer[Any]], relevant: Sparse, k: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    users = len(relevant.indptr) - 1
    if recommended.ndim != 2 or recommended.shape[0] != users:
        raise ValueError(f"recommended must be [{users}, k]; got {recommended.shape}")
    recs = np.full((users, k), -1, dtype=np.int64)
    width = min(k, recommended.shape[1])
    recs[:, :width] = recommended[:, :width]
    indices = np.asarray(relevant.indices, dtype=np.int64)
    span = max(int(recs.max(initial=-1)), int(indices.max(initial=-1))) + 1
    rows = np.repeat(np.arange(users, dtype=np.int64), np.diff(relevant.indptr))
    truth = np.unique(rows * span + indices)  # sorted keys user * span + item, no duplicates
    if truth.size == 0:
        return np.zeros((users, k), dtype=bool), np.zeros(users, dtype=np.int64)
    n = np.bincount(truth // span, minlength=users).astype(np.int64)
    keys = np.arange(users, dtype=np.int64)[:, None] * span + recs
    pos = np.minimum(np.searchsorted(truth, keys), truth.size - 1)
    return (recs >= 0) & (truth[pos] == keys), n


def _hits_lists(
    recommended: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]], k: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    if len(recommended) != len(relevant):
        raise ValueError(f"{len(recommended)} recommendation lists but {len(relevant)} test sets")
    hit = np.zeros((len(relevant), k), dtype=bool)
    n = np.zeros(len(relevant), dtype=np.int64)
    for u, (recs, rel) in enumerate(zip(recommended, relevant, strict=True)):
        truth = set(rel)
        n[u] = len(truth)
        for i, item in enumerate(list(recs)[:k]):
            hit[u, i] = item in truth
    return hit, n


def precision_at_k(recommended: Any, relevant: Any, k: int) -> float:
    hit, _ = hits(recommended, relevant, k)
    return _mean(hit.sum(axis=1) / k)


def recall_at_k(recommended: Any, relevant: Any, k: int) -> float:
    hit, n = hits(recommended, relevant, k)
    return _mean(hit.sum(axis=1) / np.maximum(n, 1))


def ndcg_at_k(recommended: Any, relevant: Any, k: int) -> float:
    hit, n = hits(recommended, relevant, k)
    return _mean(_ndcg(hit, n, k))


def map_at_k(recommended: Any, relevant: Any, k: int) -> float:
    hit, n = hits(recommended, relevant, k)
    return _mean(_ap(hit, n, k))


def _ndcg(hit: npt.NDArray[np.bool_], n: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.float64]:
    discount = 1.0 / np.log(np.arange(2, k + 2, dtype=np.float64))
    dcg = hit @ discount
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n, k)]
    return np.asarray(dcg / np.where(ideal > 0, ideal, 1.0), dtype=np.float64)


def _ap(hit: npt.NDArray[np.bool_], n: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.float64]:
    ranks = np.arange(1, k + 1, dtype=np.float64)
    precision_at_hits = np.cumsum(hit, axis=1) / ranks * hit
    return np.asarray(precision_at_hits.sum(axis=1) / np.maximum(np.minimum(n, k), 1))


def _mean(values: npt.NDArray[np.float64]) -> float:
    return float(values.mean()) if values.size else 0.0


def coverage(recommended: Any, catalogue_size: int) -> float:
    """Distinct recommended items / ``catalogue_size`` (ids < 0 are padding)."""
    if catalogue_size <= 0:
        return 0.0
    if isinstance(recommended, np.ndarray):
        distinct = np.unique(recommended[recommended >= 0]).size
    else:
        distinct = len({item for recs in recommended for item in recs})
    return distinct / catalogue_size


def ranking_metrics(
    recommended: Any, relevant: Any, k: int, *, catalogue_size: int
) -> dict[str, float]:
    """``{"precision@k", "recall@k", "ndcg@k", "map@k", "coverage", "users"}`` in one pass;
    ``recommended`` is cut to its first k columns for coverage too."""
    hit, n = hits(recommended, relevant, k)
    top = (
        recommended[:, :k] if isinstance(recommended, np.ndarray) else [r[:k] for r in recommended]
    )
    return {
        f"precision@{k}": _mean(hit.sum(axis=1) / k),
        f"recall@{k}": _mean(hit.sum(axis=1) / np.maximum(n, 1)),
        f"ndcg@{k}": _mean(_ndcg(hit, n, k)),
        f"map@{k}": _mean(_ap(hit, n, k)),
        "coverage": coverage(top, catalogue_size),
        "users": float(hit.shape[0]),
    }


def curves(recommended: Any, relevant: Any, k: int) -> dict[str, npt.NDArray[np.float64]]:
    """``precision`` and ``recall`` at 1..k (index ``j`` is @``j + 1``), from one pass; the
    value at ``k`` is ``ranking_metrics``'s."""
    hit, n = hits(recommended, relevant, k)
    if hit.shape[0] == 0:
        return {"precision": np.zeros(k), "recall": np.zeros(k)}
    found = np.cumsum(hit, axis=1, dtype=np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    return {
        "precision": (found / ranks).mean(axis=0),
        "recall": (found / np.maximum(n, 1)[:, None]).mean(axis=0),
    }


def coverage_curve(
    recommended: npt.NDArray[np.integer[Any]], k: int, catalogue_size: int
) -> npt.NDArray[np.float64]:
    """Catalogue coverage of the top 1..k (``coverage(recommended[:, :j], …)`` at index
    ``j - 1``; ids < 0 are padding)."""
    if catalogue_size <= 0:
        return np.zeros(k)
    top = np.asarray(recommended)[:, :k]
    rank = np.broadcast_to(np.arange(1, top.shape[1] + 1), top.shape)
    keep = top >= 0
    first = np.full(catalogue_size, k + 1, dtype=np.int64)  # the best rank each item reached
    np.minimum.at(first, top[keep], rank[keep])
    reached = np.bincount(first, minlength=k + 2)[1 : k + 1]
    return np.cumsum(reached) / catalogue_size
