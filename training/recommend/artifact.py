"""The recommendation model artifact: a directory, the contract with the serving side.

=======================  ==================================================================
``model.json``           ``version``, ``kind`` ("als"), ``factors``, ``regularization``,
                         ``alpha``, ``weighting``, ``iterations``, ``event_weights``,
                         ``metrics`` / ``baseline_metrics`` (ALS / popularity on the test
                         split), ``items``, ``users`` (counts), ``trained_at`` (ISO 8601 UTC);
                         plus what else the trainer adds (``evaluation``, ``fit_on``, …)
``items.json``           item ids (SKUs); position = the int64 item id used everywhere
``item_factors.npy``     float32 C-contiguous ``[items, factors]``; score = user · item
``users.json``           user ids (customer ids); position = int64 user id
``user_factors.npy``     float32 C-contiguous ``[users, factors]``
``bought_together.npz``  ``ids`` int64 ``[items, 20]`` (-1 padded) and ``scores`` float32
                         ``[items, 20]``: per item, the items most often in the same basket
``popularity.npy``       float32 ``[items]``: summed event weights of the last 7 days of data
=======================  ==================================================================

Bought together: a basket is an order (else one user's purchases of one UTC day);
``scores[i, j]`` is the share of the baskets holding item ``i`` that also hold ``ids[i, j]``
(an estimate of P(j | i)), best first, ties by the other item's basket count, then id.  With
no purchases in the data, baskets are made of all interactions (same user, same UTC day).

``model.json`` is written last: a directory with it is complete.  (The FAISS index is built by
the serving side from ``item_factors.npy``.)

``RecsRegistry`` stores artifacts in the MLflow registry: the fraud ``ModelRegistry`` with the
checks of this format's files (the base class insists on ``model.onnx``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from engine.recommend.artifact import (
    BOUGHT_TOGETHER,
    FILES,
    ITEM_FACTORS,
    ITEM_IDF,
    ITEMS,
    META,
    POPULARITY,
    USER_FACTORS,
    USERS,
)
from training.fraud.registry import ModelRegistry
from training.recommend.als import AlsModel, codes_of
from training.recommend.data import baskets

TOP_TOGETHER = 20
POPULARITY_DAYS = 7
_DAY = 86_400


def bought_together(
    events: pd.DataFrame, items: npt.NDArray[np.object_], top: int = TOP_TOGETHER
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], str]:
    """(ids, scores, source) for every item of ``items`` (see the module docstring); source is
    ``"purchases"`` or ``"interactions"``."""
    bought = events[events["purchase"].to_numpy(dtype=bool)]
    source = "purchases"
    if bought.empty:
        bought = events.assign(basket=None)
        source = "interactions"
    basket_codes, _ = pd.factorize(baskets(bought))
    item = codes_of(items, bought["item_id"].to_numpy(object))
    n_items = len(items)
    b = sp.csr_matrix(
        (np.ones(len(item), dtype=np.float32), (basket_codes, item)),
        shape=(int(basket_codes.max(initial=-1)) + 1, n_items),
    )
    b.data[:] = 1.0  # an item twice in one basket counts once
    counts = np.asarray(b.sum(axis=0), dtype=np.float64).ravel()
    co = (b.T @ b).tocoo()
    off = co.row != co.col
    row, col, together = co.row[off], co.col[off], co.data[off].astype(np.float64)
    score = together / counts[row]
    order = np.lexsort((col, -counts[col], -score, row))
    row, col, score = row[order], col[order], score[order]
    start = np.searchsorted(row, np.arange(n_items))
    rank = np.arange(len(row)) - start[row]
    keep = rank < top
    ids = np.full((n_items, top), -1, dtype=np.int64)
    scores = np.zeros((n_items, top), dtype=np.float32)
    ids[row[keep], rank[keep]] = col[keep]
    scores[row[keep], rank[keep]] = score[keep]
    return ids, scores, source


def recent_popularity(
    events: pd.DataFrame, items: npt.NDArray[np.object_], days: int = POPULARITY_DAYS
) -> npt.NDArray[np.float32]:
    """Summed event weights per item over the last ``days`` days of the data."""
    ts = events["timestamp"].to_numpy(np.float64)
    if ts.size == 0:
        return np.zeros(len(items), dtype=np.float32)
    recent = ts > ts.max() - days * _DAY
    item = codes_of(items, events["item_id"].to_numpy(object)[recent])
    weight = events["weight"].to_numpy(np.float64)[recent]
    return np.bincount(item, weights=weight, minlength=len(items)).astype(np.float32)


def _json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=None, default=str))


def write_artifact(
    directory: str | Path,
    *,
    model: AlsModel,
    users: npt.NDArray[np.object_],
    items: npt.NDArray[np.object_],
    event_weights: Mapping[str, float],
    metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    bought_together: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
    popularity: npt.NDArray[np.float32],
    version: str = "unregistered",
    trained_at: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
    weighting: Mapping[str, Any] | None = None,
) -> Path:
    """Write the artifact into ``directory`` (created if needed) and return it."""
    n_users, n_items = len(users), len(items)
    ids, scores = bought_together
    uf, itf = model.user_factors, model.item_factors
    checks = {
        "user_factors": (uf.shape, (n_users, model.params.factors)),
        "item_factors": (itf.shape, (n_items, model.params.factors)),
        "bought_together ids": (ids.shape, (n_items, TOP_TOGETHER)),
        "bought_together scores": (scores.shape, (n_items, TOP_TOGETHER)),
        "popularity": (popularity.shape, (n_items,)),
    }
    for name, (got, want) in checks.items():
        if got != want:
            raise ValueError(f"{name} has shape {got}, expected {want}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)  # incomplete until written again, last
    _json(out / ITEMS, [str(i) for i in items])
    _json(out / USERS, [str(u) for u in users])
    np.save(out / ITEM_FACTORS, np.ascontiguousarray(itf, dtype=np.float32))
    np.save(out / USER_FACTORS, np.ascontiguousarray(uf, dtype=np.float32))
    np.savez(
        out / BOUGHT_TOGETHER,
        ids=ids.astype(np.int64),
        scores=scores.astype(np.float32),
    )
    np.save(out / POPULARITY, popularity.astype(np.float32))
    p = model.params
    weighting_params: dict[str, float] = {}
    if p.weighting != "none":
        if weighting is None:
            raise ValueError(f"a {p.weighting} model needs its weighting stats (fold-in uses them)")
        np.save(out / ITEM_IDF, np.asarray(weighting["idf"], dtype=np.float32))
        weighting_params = {k: float(weighting[k]) for k in ("average_length", "K1", "B")}
    meta = {
        "version": version,
        "kind": "als",
        "factors": p.factors,
        "regularization": p.regularization,
        "alpha": p.alpha,
        "weighting": p.weighting,
        "weighting_params": weighting_params,
        "iterations": p.iterations,
        "event_weights": dict(event_weights),
        "metrics": dict(metrics),
        "baseline_metrics": dict(baseline_metrics),
        "items": n_items,
        "users": n_users,
        "trained_at": (trained_at or datetime.now(UTC)).isoformat(),
        **(extra or {}),
    }
    (out / META).write_text(json.dumps(meta, indent=2, default=str))
    return out


def read_artifact(directory: str | Path) -> dict[str, Any]:
    """Every file of an artifact, loaded (``model``, ``items``, ``users``, ``item_factors``,
    ``user_factors``, ``bought_together_ids``/``_scores``, ``popularity``)."""
    d = Path(directory)
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d} lacks {', '.join(missing)}")
    together = np.load(d / BOUGHT_TOGETHER)
    return {
        "model": json.loads((d / META).read_text()),
        "items": json.loads((d / ITEMS).read_text()),
        "users": json.loads((d / USERS).read_text()),
        "item_factors": np.load(d / ITEM_FACTORS),
        "user_factors": np.load(d / USER_FACTORS),
        "bought_together_ids": together["ids"],
        "bought_together_scores": together["scores"],
        "popularity": np.load(d / POPULARITY),
    }


# --- the registry -------------------------------------------------------------------------------


class RecsRegistry(ModelRegistry):
    """``ModelRegistry`` for recommendation artifacts: the same runs, versions and aliases;
    a version's directory must hold ``artifact.FILES``."""

    files = FILES
