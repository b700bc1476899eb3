"""How ``training.fraud.distributed`` deals training rows out to Ray workers."""

from __future__ import annotations

import numpy as np
import pytest

from training.fraud.distributed import shards

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_every_row_once_and_frauds_spread_evenly(n: int) -> None:
    labels = (np.random.default_rng(n).random(1000) < 0.03).astype(np.int64)
    parts = shards(labels, n)
    assert len(parts) == n
    together = np.concatenate(parts)
    assert np.array_equal(np.sort(together), np.arange(len(labels)))  # each row exactly once
    for rows in parts:
        assert np.all(np.diff(rows) > 0)  # row order kept
    sizes = [len(rows) for rows in parts]
    frauds = [int(labels[rows].sum()) for rows in parts]
    assert max(sizes) - min(sizes) <= 1 and max(frauds) - min(frauds) <= 1
    assert frauds[0] == max(frauds)  # the first worker holds a fraud whenever there is one


def test_fewer_frauds_than_workers() -> None:
    labels = np.zeros(10, dtype=np.int64)
    labels[[4, 8]] = 1
    parts = shards(labels, 3)
    assert [int(labels[rows].sum()) for rows in parts] == [1, 1, 0]
    assert [len(rows) for rows in parts] == [4, 3, 3]
