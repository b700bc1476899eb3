"""Train/test splits of (user, item) pairs, per user.

Both splits work on one row per distinct (user, item) pair (``training.recommend.als.pairs``):
all events of a pair land on the same side, so a test item is one the user never touched in
training.  Each user with ``n >= 2`` distinct items gives ``t = round(test_fraction * n)``
items to test, at least 1 and at most ``n - 1``; users with one item stay in train.

* ``stratified``: the ``t`` test items are drawn at random (seeded) — every user is held out in
  the same proportion, and time plays no part.
* ``time``: the ``t`` items the user came to last (by their first interaction with each item;
  ties broken by item) — "predict what each shopper turns to next".  Chosen over one global
  time cut so that every user with history is tested and the same fraction is held out as in
  the stratified split; the price is that one user's test period may overlap another user's
  training period, so trends that appear late in the data leak a little into training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("stratified", "time")


def _test_counts(sizes: np.ndarray, test_fraction: float) -> np.ndarray:
    t = np.floor(test_fraction * sizes + 0.5).astype(np.int64)
    return np.where(sizes >= 2, np.clip(t, 1, sizes - 1), 0)


def _check(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be in (0, 1)")


def _split_by_order(
    pairs: pd.DataFrame, order: np.ndarray, test_fraction: float, *, last: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows ``order`` ranks within each user (sorted by user first); the first (``last=False``)
    or last ``t`` of each user go to test."""
    users = pairs["user"].to_numpy()[order]
    start = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    sizes = np.diff(np.r_[start, len(users)])
    rank = np.arange(len(users)) - np.repeat(start, sizes)
    t = np.repeat(_test_counts(sizes, test_fraction), sizes)
    size = np.repeat(sizes, sizes)
    in_test = rank >= size - t if last else rank < t
    test = np.zeros(len(pairs), dtype=bool)
    test[order[in_test]] = True
    return pairs[~test].reset_index(drop=True), pairs[test].reset_index(drop=True)


def stratified_split(
    pairs: pd.DataFrame, test_fraction: float = 0.25, *, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) pairs; needs columns ``user`` and ``item``."""
    _check(test_fraction)
    if pairs.empty:
        return pairs.copy(), pairs.copy()
    noise = np.random.default_rng(seed).random(len(pairs))
    order = np.lexsort((noise, pairs["user"].to_numpy()))
    return _split_by_order(pairs, order, test_fraction, last=False)


def time_split(
    pairs: pd.DataFrame, test_fraction: float = 0.25
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) pairs; needs columns ``user``, ``item`` and ``first`` (the time of the
    user's first interaction with the item)."""
    _check(test_fraction)
    if pairs.empty:
        return pairs.copy(), pairs.copy()
    order = np.lexsort(
        (pairs["item"].to_numpy(), pairs["first"].to_numpy(), pairs["user"].to_numpy())
    )
    return _split_by_order(pairs, order, test_fraction, last=True)


def split(
    pairs: pd.DataFrame, how: str, test_fraction: float = 0.25, *, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if how == "stratified":
        return stratified_split(pairs, test_fraction, seed=seed)
    if how == "time":
        return time_split(pairs, test_fraction)
    raise ValueError(f"unknown split {how!r} (expected one of {', '.join(SPLITS)})")
