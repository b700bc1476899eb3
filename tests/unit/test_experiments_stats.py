"""The statistics of results against statsmodels and scipy, and the edge cases they leave
undefined (no visitors, no variance)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sp
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from engine.experiments import stats

pytestmark = pytest.mark.unit


def sample(values: list[float]) -> stats.Sample:
    return stats.Sample(len(values), float(sum(values)), float(sum(v * v for v in values)))


def test_wilson_matches_statsmodels_and_needs_visitors() -> None:
    assert stats.wilson(7, 40) == pytest.approx(proportion_confint(7, 40, method="wilson"))
    assert stats.wilson(0, 0) is None


def test_proportion_lift_matches_the_z_test() -> None:
    lift = stats.proportion_lift(30, 200, 20, 210)
    assert lift is not None
    _, p = proportions_ztest([30, 20], [200, 210])
    assert lift.value == pytest.approx(30 / 200 - 20 / 210)
    assert lift.p_value == pytest.approx(p)
    assert lift.ci is not None and lift.ci[0] < lift.value < lift.ci[1]
    same = stats.proportion_lift(0, 10, 0, 12)
    assert same is not None and (same.value, same.p_value) == (0.0, 1.0)
    assert stats.proportion_lift(1, 0, 1, 5) is None


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    a = list(rng.exponential(5, 300) * (rng.random(300) < 0.2))
    b = list(rng.exponential(6, 280) * (rng.random(280) < 0.2))
    lift = stats.welch_lift(sample(a), sample(b))
    assert lift is not None and lift.ci is not None
    assert lift.value == pytest.approx(np.mean(a) - np.mean(b))
    assert lift.p_value == pytest.approx(sp.ttest_ind(a, b, equal_var=False).pvalue)
    assert stats.mean_ci(sample(a)) == pytest.approx(
        sp.norm.interval(0.95, np.mean(a), np.std(a, ddof=1) / np.sqrt(len(a)))
    )


def test_undefined_variances() -> None:
    assert stats.mean_ci(sample([3.0])) is None
    one = stats.welch_lift(sample([3.0]), sample([1.0, 2.0]))
    assert one is not None and (one.value, one.ci, one.p_value) == (1.5, None, None)
    flat = stats.welch_lift(sample([0.0, 0.0]), sample([0.0, 0.0, 0.0]))
    assert flat is not None and (flat.ci, flat.p_value) == ((0.0, 0.0), 1.0)
    assert stats.welch_lift(sample([]), sample([1.0, 2.0])) is None
