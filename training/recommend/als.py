"""Implicit-feedback ALS (implicit's CPU solver), a popularity baseline, and the choice of
hyper-parameters on a validation split carved from the training pairs.

Matrix and confidence (implicit's own convention, which ``engine.recommend.foldin`` mirrors at
request time): the user x item matrix holds ``w``, the summed event weights of each pair
(``training.recommend.data.EVENT_WEIGHTS``), optionally re-weighted by ``weighting`` —
``bm25`` (``implicit.nearest_neighbours.bm25_weight``, K1=100, B=0.8) or ``tfidf``, both on the
user x item matrix, so the idf down-weights popular items and bm25's length norm heavy users;
implicit multiplies it by ``alpha``: confidence ``c = alpha * w`` for the pairs seen,
``c = 1, p = 0`` for the others.  Scores are ``user_factors[u] · item_factors[i]``.

Threads: implicit runs its own ``num_threads`` (default: the CPUs this process may use) and
BLAS is held to one thread while it does (``threadpoolctl``), as implicit recommends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from training.recommend.metrics import ndcg_at_k
from training.recommend.split import split as split_pairs

WEIGHTINGS = ("none", "bm25", "tfidf")

Progress = Callable[[str], None]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class AlsParams:
    factors: int = 64
    regularization: float = 0.1
    alpha: float = 10.0
    iterations: int = 15
    weighting: str = "none"

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}")
        if self.factors < 1 or self.iterations < 1 or self.regularization < 0 or self.alpha <= 0:
            raise ValueError("need factors >= 1, iterations >= 1, regularization >= 0, alpha > 0")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_PARAMS = AlsParams()
MAX_VALIDATION_USERS = 20_000
# Coordinate search, in this order, from DEFAULT_PARAMS: each value is tried with the best
# values found so far; a value is kept only if it beats the current best on validation NDCG@k.
# Capacity first (it moves the best alpha), then the confidence and its weighting.
SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "factors": (16, 32, 64, 128),
    "regularization": (0.01, 0.1, 1.0, 10.0),
    "alpha": (1.0, 5.0, 10.0, 40.0),
    "weighting": ("none", "bm25", "tfidf"),
}


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


# --- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """Users and items numbered by sorted id (position = int id) and one row per pair:
    ``user``, ``item`` (int64), ``weight`` (summed), ``first``/``last`` (seconds)."""

    users: npt.NDArray[np.object_]
    items: npt.NDArray[np.object_]
    pairs: pd.DataFrame

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.users), len(self.items)


def encode(events: pd.DataFrame, *more: pd.DataFrame) -> tuple[Encoded, list[pd.DataFrame]]:
    """Number the users and items of ``events`` (and of ``more``, e.g. a separate test file:
    one shared numbering) and aggregate each frame to pairs."""
    frames = [events, *more]
    ends = np.cumsum([len(f) for f in frames])[:-1]
    user, users = pd.factorize(
        np.concatenate([f["user_id"].to_numpy(object) for f in frames]), sort=True
    )
    item, items = pd.factorize(
        np.concatenate([f["item_id"].to_numpy(object) for f in frames]), sort=True
    )
    out = [
        _pairs(f, u, i, len(items))
        for f, u, i in zip(frames, np.split(user, ends), np.split(item, ends), strict=True)
    ]
    encoded = Encoded(np.asarray(users, dtype=object), np.asarray(items, dtype=object), out[0])
    return encoded, out[1:]


def codes_of(items: npt.NDArray[np.object_], ids: Any) -> I64:
    """Positions of ``ids`` in ``items`` (every id must be there)."""
    codes = pd.Index(items).get_indexer(np.asarray(ids, dtype=object))
    if (codes < 0).any():
        raise KeyError("ids missing from the numbering")
    return codes.astype(np.int64)


def _pairs(events: pd.DataFrame, user: np.ndarray, item: np.ndarray, n_items: int) -> pd.DataFrame:
    key = user.astype(np.int64) * n_items + item
    frame = pd.DataFrame({"key": key, "weight": events["weight"].to_numpy(np.float64)})
    frame["ts"] = events["timestamp"].to_numpy(np.float64)
    grouped = frame.groupby("key", sort=True)
    out = grouped.agg(weight=("weight", "sum"), first=("ts", "min"), last=("ts", "max"))
    keys = out.index.to_numpy()
    return pd.DataFrame(
        {
            "user": keys // n_items,
            "item": keys % n_items,
            "weight": out["weight"].to_numpy(),
            "first": out["first"].to_numpy(),
            "last": out["last"].to_numpy(),
        }
    )


def matrix(pairs: pd.DataFrame, shape: tuple[int, int], weighting: str = "none") -> sp.csr_matrix:
    """The user x item matrix of ``pairs`` (float32 CSR), re-weighted by ``weighting``; values
    stay > 0 (an item every user touched has idf <= 0 under bm25/tfidf: kept at 1e-6)."""
    m = sp.csr_matrix(
        (pairs["weight"].to_numpy(np.float32), (pairs["user"], pairs["item"])),
        shape=shape,
        dtype=np.float32,
    )
    if weighting == "bm25":
        from implicit.nearest_neighbours import bm25_weight

        m = bm25_weight(m, K1=100, B=0.8).tocsr()
    elif weighting == "tfidf":
        from implicit.nearest_neighbours import tfidf_weight

        m = tfidf_weight(m).tocsr()
    elif weighting != "none":
        raise ValueError(f"unknown weighting {weighting!r}")
    m.data = np.maximum(m.data, 1e-6).astype(np.float32)
    m.sort_indices()
    return m


# --- models -------------------------------------------------------------------------------------


class Recommender(Protocol):
    def recommend(self, users: I64, seen: sp.csr_matrix, k: int) -> I64: ...


_CHUNK = 2048  # users per block: bounds the candidate arrays, keeps implicit's threads busy


def _first_unseen(cand: I64, seen: sp.csr_matrix, k: int) -> I64:
    """Per row, the first ``k`` ids of ``cand`` (ranked candidates, -1 = none) that are not
    in the same row of ``seen``; -1 padded."""
    n = cand.shape[0]
    span = seen.shape[1] + 1
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(seen.indptr))
    known = np.sort(rows * span + seen.indices)
    keys = np.arange(n, dtype=np.int64)[:, None] * span + cand
    if known.size:
        pos = np.minimum(np.searchsorted(known, keys), known.size - 1)
        drop = (known[pos] == keys) | (cand < 0)
    else:
        drop = cand < 0
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(cand, order, axis=1)
    out[np.take_along_axis(drop, order, axis=1)] = -1
    if out.shape[1] < k:
        out = np.hstack([out, np.full((n, k - out.shape[1]), -1, dtype=np.int64)])
    return out


def _blocks(users: I64, seen: sp.csr_matrix, k: int, n_items: int) -> Iterator[tuple[I64, int]]:
    """Positions into ``users`` in blocks of similar history length, with the number of
    candidates each block needs (k + its longest history, at most every item)."""
    sizes = np.diff(seen.indptr)[users]
    order = np.argsort(sizes, kind="stable")
    for start in range(0, len(order), _CHUNK):
        block = order[start : start + _CHUNK]
        yield block, min(n_items, k + int(sizes[block].max()))


def _top_k(
    item_factors: np.ndarray,
    user_factors: np.ndarray,
    users: I64,
    seen: sp.csr_matrix,
    k: int,
    threads: int,
) -> I64:
    """Top ``k`` item ids (by inner product) of each user in ``users``, excluding the items of
    their row in ``seen``; -1 padded.  implicit's ``topk`` ranks k + (history length)
    candidates without filtering (its filter slices the sparse matrix row by row, in Python);
    the history is then removed here, vectorised."""
    from implicit.cpu.topk import topk

    out = np.full((len(users), k), -1, dtype=np.int64)
    for block, width in _blocks(users, seen, k, item_factors.shape[0]):
        if width == 0:
            continue
        rows = users[block]
        with one_blas_thread():
            ids, _ = topk(item_factors, user_factors[rows], width, num_threads=threads)
        out[block] = _first_unseen(ids.astype(np.int64), seen[rows], k)
    return out


@dataclass
class AlsModel:
    params: AlsParams
    user_factors: npt.NDArray[np.float32]  # [users, factors], C-contiguous
    item_factors: npt.NDArray[np.float32]  # [items, factors], C-contiguous
    num_threads: int = 1

    def recommend(self, users: I64, seen: sp.csr_matrix, k: int) -> I64:
        """Top ``k`` items of each user in ``users``; ``seen`` (user x item, all users) holds
        the items to exclude (their training items)."""
        users = np.asarray(users, dtype=np.int64)
        return _top_k(self.item_factors, self.user_factors, users, seen, k, self.num_threads)


@dataclass
class PopularityModel:
    """Every user gets the items with the largest summed training weight they have not seen
    (ties: lower item id first)."""

    scores: npt.NDArray[np.float32]

    def recommend(self, users: I64, seen: sp.csr_matrix, k: int) -> I64:
        users = np.asarray(users, dtype=np.int64)
        ranked = np.argsort(-self.scores, kind="stable").astype(np.int64)
        out = np.full((len(users), k), -1, dtype=np.int64)
        for block, width in _blocks(users, seen, k, len(ranked)):
            cand = np.broadcast_to(ranked[:width], (len(block), width))
            out[block] = _first_unseen(cand, seen[users[block]], k)
        return out


def fit_popularity(weights: sp.csr_matrix) -> PopularityModel:
    return PopularityModel(np.asarray(weights.sum(axis=0), dtype=np.float32).ravel())


def fit_als(
    weights: sp.csr_matrix,
    params: AlsParams,
    *,
    seed: int = 42,
    num_threads: int | None = None,
) -> AlsModel:
    """Fit ALS on the raw-weight matrix ``weights`` (``matrix(..., "none")``); ``params``'s
    weighting is applied here."""
    from implicit.cpu.als import AlternatingLeastSquares

    threads = num_threads or default_threads()
    m = weights if params.weighting == "none" else _reweight(weights, params.weighting)
    with one_blas_thread():
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            num_threads=threads,
            random_state=seed,
        )
        model.fit(m, show_progress=False)
    return AlsModel(
        params,
        np.ascontiguousarray(model.user_factors, dtype=np.float32),
        np.ascontiguousarray(model.item_factors, dtype=np.float32),
        threads,
    )


def _reweight(weights: sp.csr_matrix, weighting: str) -> sp.csr_matrix:
    coo = weights.tocoo()
    pairs = pd.DataFrame({"user": coo.row, "item": coo.col, "weight": coo.data})
    return matrix(pairs, weights.shape, weighting)


# --- choosing the hyper-parameters --------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    params: AlsParams
    trials: list[dict[str, Any]]  # every candidate tried: params and validation NDCG@k
    validation_users: int


def validation_ndcg(
    model: Recommender, seen: sp.csr_matrix, truth: sp.csr_matrix, users: I64, k: int
) -> float:
    return ndcg_at_k(model.recommend(users, seen, k), truth[users], k)


def choose_params(
    train: pd.DataFrame,
    shape: tuple[int, int],
    *,
    how: str,
    test_fraction: float,
    k: int,
    seed: int,
    candidates: AlsParams | Sequence[AlsParams] | None = None,
    space: Mapping[str, Sequence[Any]] = SEARCH_SPACE,
    max_validation_users: int = MAX_VALIDATION_USERS,
    num_threads: int | None = None,
    progress: Progress | None = None,
) -> Choice:
    """The parameters with the best NDCG@k on a validation split of the *training* pairs
    (split the same way as train/test, seed + 1), scored on at most ``max_validation_users``
    validation users (a seeded sample: enough to rank candidates, and a fit's cost, not the
    scoring's, then dominates the search).  ``candidates``: one set (used as is, no
    validation), a list (each tried), or None (coordinate search over ``space`` from
    ``DEFAULT_PARAMS``)."""
    if isinstance(candidates, AlsParams):
        return Choice(candidates, [], 0)
    say = progress or (lambda _m: None)
    fit_part, val_part = split_pairs(train, how, test_fraction, seed=seed + 1)
    seen = matrix(fit_part, shape)
    truth = matrix(val_part, shape)
    users = np.flatnonzero((np.diff(truth.indptr) > 0) & (np.diff(seen.indptr) > 0))
    if users.size == 0:  # no user with enough training items to hold some out
        return Choice(candidates[0] if candidates else DEFAULT_PARAMS, [], 0)
    if users.size > max_validation_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_validation_users, False))
    trials: list[dict[str, Any]] = []
    scored: dict[AlsParams, float] = {}

    def score(p: AlsParams) -> float:
        if p not in scored:
            say(f"validating: {p}")
            model = fit_als(seen, p, seed=seed, num_threads=num_threads)
            scored[p] = validation_ndcg(model, seen, truth, users, k)
            trials.append({"params": p.as_dict(), f"ndcg@{k}": scored[p]})
        return scored[p]

    if candidates:
        best = max(candidates, key=score)
    else:
        best = DEFAULT_PARAMS
        for name, values in space.items():
            for value in values:
                p = replace(best, **{name: value})
                if score(p) > score(best) + 1e-9:
                    best = p
    return Choice(best, trials, int(users.size))


def weighting_stats(pairs: pd.DataFrame, shape: tuple[int, int]) -> dict[str, Any]:
    """What request-time fold-in needs to re-weight a shopper's events the way ``matrix`` did:
    each item's idf (log N - log1p(df), as implicit computes it) and the mean user row sum."""
    n_users, n_items = shape
    df = np.bincount(pairs["item"].to_numpy(np.int64), minlength=n_items).astype(np.float64)
    idf = np.log(float(n_users)) - np.log1p(df)
    rows = np.bincount(
        pairs["user"].to_numpy(np.int64),
        weights=pairs["weight"].to_numpy(np.float64),
        minlength=n_users,
    )
    return {
        "idf": idf.astype(np.float32),
        "average_length": float(rows.mean()),
        "K1": 100.0,
        "B": 0.8,
    }
