"""RFM scoring: quintile scores with deterministic ties, and the R/F segment grid."""

from __future__ import annotations

import numpy as np
import pytest

from engine.crm import rfm

pytestmark = pytest.mark.unit


def test_five_distinct_values_score_one_to_five() -> None:
    assert rfm.quintile_scores([10, 20, 30, 40, 50]).tolist() == [1, 2, 3, 4, 5]
    assert rfm.quintile_scores([50, 10, 40, 20, 30]).tolist() == [5, 1, 4, 2, 3]


def test_ten_distinct_values_fill_each_quintile_with_two() -> None:
    assert rfm.quintile_scores(range(1, 11)).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_recency_scores_fewer_days_higher() -> None:
    scores = rfm.quintile_scores([0, 10, 100, 5, 50], higher_is_better=False)
    assert scores.tolist() == [5, 3, 1, 4, 2]


def test_ties_score_alike_and_leave_scores_unused() -> None:
    # six customers with one order: none is strictly worse than another, all score 1;
    # the 2 has six below it: 1 + 5*6 // 10 = 4
    values = [1, 1, 1, 1, 1, 1, 2, 3, 4, 5]
    assert rfm.quintile_scores(values).tolist() == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]
    everyone_equal = rfm.quintile_scores([7.5] * 4)
    assert everyone_equal.tolist() == [1, 1, 1, 1]


def test_ties_do_not_depend_on_the_input_order() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 6, size=200).astype(float)
    scores = rfm.quintile_scores(values)
    for _ in range(5):
        perm = rng.permutation(len(values))
        assert rfm.quintile_scores(values[perm]).tolist() == scores[perm].tolist()
    for v in np.unique(values):
        assert len(set(scores[values == v].tolist())) == 1  # one score per value
    # and a larger value never scores lower
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(scores[order]) >= 0)


@pytest.mark.parametrize(
    ("r", "f", "segment"),
    [
        (5, 5, "champions"),
        (5, 4, "champions"),
        (4, 5, "loyal"),
        (3, 4, "loyal"),
        (5, 2, "potential_loyalist"),
        (4, 3, "potential_loyalist"),
        (5, 1, "new"),
        (4, 1, "promising"),
        (3, 3, "need_attention"),
        (3, 1, "about_to_sleep"),
        (3, 2, "about_to_sleep"),
        (2, 3, "at_risk"),
        (1, 4, "at_risk"),
        (1, 5, "cannot_lose"),
        (2, 5, "cannot_lose"),
        (2, 2, "hibernating"),
        (2, 1, "hibernating"),
        (1, 1, "lost"),
        (1, 2, "lost"),
    ],
)
def test_the_segment_grid(r: int, f: int, segment: str) -> None:
    assert rfm.segment_of(r, f) == segment


def test_every_named_segment_is_in_the_grid_and_every_cell_is_named() -> None:
    cells = {name for row in rfm.GRID for name in row}
    assert cells == set(rfm.SEGMENTS)
    assert len(rfm.SEGMENTS) == 11
    with pytest.raises(ValueError, match="1 to 5"):
        rfm.segment_of(0, 3)


def test_score_by_hand() -> None:
    """Six customers (recency days, orders, value), scored by hand:

    R: strictly worse recency counts 5, 4, 3, 2, 1, 0 -> 1 + 5*below // 6 = 5, 4, 3, 2, 1, 1
    F: 3 orders beats 5, 2 orders beats 4, the four with 1 order beat nobody -> 5, 4, 1, 1, 1, 1
    M: 200, 30, 0, 40, 100, 500 -> below 4, 1, 0, 2, 3, 5 -> 4, 1, 1, 2, 3, 5
    """
    recency = [1, 5, 15, 40, 60, 300]
    frequency = [3, 1, 1, 2, 1, 1]
    monetary = [200.0, 30.0, 0.0, 40.0, 100.0, 500.0]
    s = rfm.score(recency, frequency, monetary)
    assert s.r.tolist() == [5, 4, 3, 2, 1, 1]
    assert s.f.tolist() == [5, 1, 1, 4, 1, 1]
    assert s.m.tolist() == [4, 1, 1, 2, 3, 5]
    assert s.segment.tolist() == [
        "champions",
        "promising",
        "about_to_sleep",
        "at_risk",
        "lost",
        "lost",
    ]


def test_bad_inputs_are_refused_and_empty_is_empty() -> None:
    with pytest.raises(ValueError, match="one length"):
        rfm.score([1, 2], [1], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        rfm.quintile_scores([1.0, float("nan")])
    empty = rfm.score([], [], [])
    assert empty.r.size == empty.f.size == empty.m.size == empty.segment.size == 0
