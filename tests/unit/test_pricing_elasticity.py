"""Elasticity estimation and the market simulator (training/pricing): known truths, no I/O.

The data come from ``training.pricing.simulator``, whose demand curves are known exactly, so
"recovered" means: the true elasticity lies in the estimate's 95 % interval (for most
categories; a few misses are what a 95 % interval promises) and close to it.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.errors import ValidationError
from training.pricing.elasticity import (
    SALES_COLUMNS,
    ElasticityEstimate,
    FitSettings,
    estimates_frame,
    fit_elasticities,
    resolve,
    usable,
)
from training.pricing.simulator import (
    EXPLORE_FACTORS,
    Exploration,
    Market,
    SimulationResult,
    Strategy,
    closed_form_pricer,
    expected_profit,
    expected_units,
    explore_prices,
    guardrails,
    make_market,
    oracle_prices,
    run,
    simulate_history,
)

pytestmark = pytest.mark.unit


def _by_key(estimates: list[ElasticityEstimate], level: str) -> dict[str, ElasticityEstimate]:
    return {e.key: e for e in estimates if e.level == level}


# --- recovering known elasticities ------------------------------------------------------------


@pytest.fixture(scope="module")
def big() -> dict[str, Any]:
    """500 SKUs in 25 categories, 90 days, with a yearly cycle on top of the weekly one; all
    SKUs of a category share its elasticity, so the category's truth is exact."""
    market = make_market(500, 25, seed=7, sku_spread=0.0, yearly_amplitude=0.2)
    history = simulate_history(market, 90, seed=7)
    started = time.perf_counter()
    estimates = fit_elasticities(history)
    return {
        "market": market,
        "history": history,
        "estimates": estimates,
        "seconds": time.perf_counter() - started,
    }


def test_recovers_category_elasticities(big: dict[str, Any]) -> None:
    market: Market = big["market"]
    categories = _by_key(big["estimates"], "category")
    assert sorted(categories) == sorted(market.category_elasticity)
    covered = 0
    for name, truth in market.category_elasticity.items():
        est = categories[name]
        assert est.status == "ok", est.message
        assert abs(est.elasticity - truth) <= 0.3, (name, est.elasticity, truth)
        assert est.ci_low < est.elasticity < est.ci_high
        assert est.n_obs == 20 * 90 and est.units > 0 and 0 < est.fit_quality < 1
        covered += est.ci_low <= truth <= est.ci_high
    assert covered >= 0.8 * len(categories)


def test_sku_estimates_are_calibrated(big: dict[str, Any]) -> None:
    market: Market = big["market"]
    estimates: list[ElasticityEstimate] = big["estimates"]
    levels = [e.level for e in estimates]
    assert levels == ["category"] * 25 + ["sku"] * 500  # categories first
    truth = dict(zip(market.skus, market.elasticity, strict=True))
    own = [e for e in estimates if e.level == "sku" and e.status == "ok"]
    assert len(own) >= 450  # 90 days of ±15 % promotions qualify nearly every SKU
    inside = np.mean([e.ci_low <= truth[e.key] <= e.ci_high for e in own])
    assert inside >= 0.88
    precise = [e for e in own if e.std_err <= 0.25]
    assert precise and max(abs(e.elasticity - truth[e.key]) for e in precise) < 1.0
    frame = estimates_frame(estimates)
    assert len(frame) == 525 and frame.loc[0, "level"] == "category"


def test_fit_of_500_skus_over_90_days_is_fast(big: dict[str, Any]) -> None:
    assert big["seconds"] < 15.0  # about 1.5 s on 2 cores; the bound only catches blow-ups


def test_zero_sale_days_are_kept_and_all_zero_skus_fall_back() -> None:
    market = make_market(60, 1, seed=3, sku_spread=0.0)
    market.base_demand = np.full(60, 0.4)
    history = simulate_history(market, 120, seed=3)
    dead = history["sku"] == market.skus[0]
    history.loc[dead, "units"] = 0
    assert (history["units"] == 0).mean() > 0.5
    estimates = fit_elasticities(history)
    cat = _by_key(estimates, "category")["cat-00"]
    truth = market.category_elasticity["cat-00"]
    assert cat.status == "ok"
    assert cat.ci_low <= truth <= cat.ci_high
    assert cat.n_obs == len(history) - int(dead.sum())  # zero days in, the dead SKU out
    skus = _by_key(estimates, "sku")
    assert skus[market.skus[0]].status == "insufficient_data"
    assert math.isnan(skus[market.skus[0]].elasticity)
    # left out, the zero days make demand look flatter than it is
    naive = fit_elasticities(history[history["units"] > 0])
    assert abs(_by_key(naive, "category")["cat-00"].elasticity) < abs(cat.elasticity) - 0.3


def test_no_price_variation_gets_a_status_not_an_error() -> None:
    market = make_market(40, 2, seed=5)
    market.base_demand = np.full(40, 5.0)  # plenty of sales: only the prices are lacking
    history = simulate_history(market, 60, seed=5, exploration=Exploration(fixed_share=1.0))
    estimates = fit_elasticities(history)
    assert len(estimates) == 42
    for est in estimates:
        assert est.status == "no_price_variation", est
        assert math.isnan(est.elasticity) and math.isnan(est.std_err)
        assert est.price_variation < 1e-12
        assert not usable(est)


def test_prices_moving_only_with_the_month_are_not_identified() -> None:
    """A whole category repriced on the 1st of each month: month effects absorb it."""
    market = make_market(16, 1, seed=9)
    history = simulate_history(market, 90, seed=9, exploration=Exploration(fixed_share=1.0))
    month = history["day"].dt.month.to_numpy()
    history["price"] = np.round(history["price"] * np.array([1.0, 0.9, 1.1, 0.95])[month - 1], 2)
    by_month = fit_elasticities(history)
    assert {e.status for e in by_month} == {"no_price_variation"}
    # with only weekday controls the same prices do identify a (category) slope
    by_weekday = fit_elasticities(history, FitSettings(seasonality="dow"))
    assert _by_key(by_weekday, "category")["cat-00"].status == "ok"


def test_thin_history_is_insufficient_data() -> None:
    market = make_market(20, 2, seed=1)
    short = fit_elasticities(simulate_history(market, 14, seed=1))
    assert {e.status for e in short} == {"insufficient_data"}
    assert all("uses its category's estimate" in e.message for e in short if e.level == "sku")
    strict = fit_elasticities(simulate_history(market, 60, seed=1), FitSettings(min_units=10**6))
    assert {e.status for e in strict if e.level == "sku"} == {"insufficient_data"}
    assert {e.status for e in strict if e.level == "category"} == {"insufficient_data"}


def test_week_effects_work_too() -> None:
    market = make_market(100, 2, seed=2, sku_spread=0.0)
    history = simulate_history(market, 90, seed=2)
    estimates = fit_elasticities(history, FitSettings(seasonality="dow+week"))
    for name, est in _by_key(estimates, "category").items():
        assert abs(est.elasticity - market.category_elasticity[name]) < 0.3


# --- input validation -------------------------------------------------------------------------


def _tiny() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sku": ["A", "A", "B"],
            "category": ["c", "c", "c"],
            "day": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-01"]),
            "units": [1, 0, 2],
            "price": [9.5, 10.0, 3.0],
        }
    )


@pytest.mark.parametrize("column", SALES_COLUMNS)
def test_a_missing_column_is_named(column: str) -> None:
    with pytest.raises(ValidationError) as err:
        fit_elasticities(_tiny().drop(columns=column))
    assert err.value.field == column
    assert column in err.value.message
    assert err.value.code == "invalid_request"


@pytest.mark.parametrize(
    ("column", "value"),
    [("units", -1), ("units", 1.5), ("price", 0.0), ("price", math.nan), ("day", "not a day")],
)
def test_bad_values_are_rejected(column: str, value: Any) -> None:
    frame = _tiny()
    frame[column] = frame[column].astype(object)
    frame.loc[1, column] = value
    with pytest.raises(ValidationError) as err:
        fit_elasticities(frame)
    assert err.value.field == column


def test_duplicates_and_two_categories_are_rejected_together() -> None:
    frame = pd.concat([_tiny(), _tiny().iloc[[2]].assign(category="other")])
    with pytest.raises(ValidationError) as err:
        fit_elasticities(frame)
    assert err.value.field == "day"
    assert [i["field"] for i in err.value.items] == ["day", "category"]


def test_empty_and_dates_as_objects() -> None:
    assert fit_elasticities(_tiny().iloc[:0]) == []
    frame = _tiny()
    frame["day"] = frame["day"].dt.date  # python dates are fine
    assert {e.status for e in fit_elasticities(frame)} == {"insufficient_data"}


# --- usable / resolve -------------------------------------------------------------------------


def _est(level: Any, key: str, e: float, se: float = 0.1, status: str = "ok") -> Any:
    return ElasticityEstimate(
        level=level,
        key=key,
        category="c" if level == "sku" else key,
        elasticity=e,
        std_err=se,
        ci_low=e - 2 * se,
        ci_high=e + 2 * se,
        n_obs=100,
        units=100,
        price_variation=0.1,
        fit_quality=0.2,
        status=status,
    )


def test_usable() -> None:
    assert usable(_est("sku", "A", -2.0))
    assert not usable(_est("sku", "A", -1.0))  # unit elastic: no interior optimum
    assert not usable(_est("sku", "A", -0.5))
    assert not usable(_est("sku", "A", -2.0, se=0.6))
    assert usable(_est("sku", "A", -2.0, se=0.6), max_std_err=0.7)
    assert not usable(_est("sku", "A", math.nan, se=math.nan, status="failed"))
    assert not usable(_est("sku", "A", -2.0, se=math.inf))
    assert not usable(replace(_est("sku", "A", -2.0), status="insufficient_data"))


def test_resolve_prefers_the_sku_then_the_category() -> None:
    estimates = [
        _est("category", "c", -2.0),
        _est("category", "d", -0.8),  # inelastic: unusable
        _est("sku", "A", -3.0),  # own, usable
        _est("sku", "B", -1.5, se=0.9),  # own, too noisy: falls back
        _est("sku", "C", math.nan, se=math.nan, status="no_price_variation"),
        _est("sku", "D", -2.5),  # category d unusable, but D's own estimate is fine
    ]
    mapping = {"A": "c", "B": "c", "C": "c", "D": "d", "E": "d", "F": "unknown"}
    assert resolve(estimates, mapping) == {"A": -3.0, "B": -2.0, "C": -2.0, "D": -2.5}
    assert resolve(estimates, mapping, max_std_err=1.0)["B"] == -1.5


# --- the simulator ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulation() -> SimulationResult:
    return run(make_market(200, 10, seed=11), Strategy(), days_explore=90, days_exploit=28, seed=11)


def test_fitted_prices_come_close_to_the_oracle(simulation: SimulationResult) -> None:
    r = simulation
    assert r.fitted_profit >= 0.95 * r.oracle_profit
    assert r.fitted_profit > r.static_profit
    assert r.oracle_profit >= r.fitted_profit
    assert r.share_of_oracle == pytest.approx(r.fitted_profit / r.oracle_profit)
    assert 0 < r.uplift_captured <= 1
    assert r.clipped == 0
    assert list(r.history.columns) == list(SALES_COLUMNS)
    assert len(r.history) == 200 * 90
    assert len(r.categories) == 10
    assert (r.categories["status"] == "ok").all()
    assert (r.categories["fitted"] - r.categories["true"]).abs().max() < 0.4
    assert r.skus["used_elasticity"].notna().mean() > 0.9


def test_the_oracle_beats_other_prices() -> None:
    market = make_market(50, 5, seed=4, yearly_amplitude=0.3)
    floor, ceiling = guardrails(market)
    best = oracle_prices(market)
    assert ((best >= floor - 1e-9) & (best <= ceiling + 1e-9)).all()
    rng = np.random.default_rng(4)
    for day in (0, 3, 200):
        top = expected_profit(market, best, day)
        for _ in range(20):
            other = np.clip(best * rng.uniform(0.8, 1.2, 50), floor, ceiling)
            assert expected_profit(market, other, day) <= top
        for i in range(50):  # profit is separable: each SKU on its own, too
            for step in (0.98, 1.02):
                moved = best.copy()
                moved[i] = np.clip(moved[i] * step, floor[i], ceiling[i])
                assert expected_profit(market, moved, day) <= top + 1e-9


def test_demand_curve_and_pricer() -> None:
    market = make_market(10, 2, seed=1)
    at_list = expected_units(market, market.list_price, 0)
    assert at_list == pytest.approx(market.base_demand * market.season(0))
    cheaper = expected_units(market, market.list_price * 0.9, 0)
    assert cheaper == pytest.approx(at_list * 0.9**market.elasticity)
    cost = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    lst = np.full(5, 20.0)
    e = np.array([-2.0, -3.0, math.nan, -0.9, -1.1])
    prices = closed_form_pricer(cost, lst, e, cost * 1.05, lst * 1.5)
    assert prices == pytest.approx([20.0, 15.0, 20.0, 20.0, 30.0])


def test_a_pluggable_pricer_is_scored_and_kept_in_bounds() -> None:
    market = make_market(40, 2, seed=6)

    def list_pricer(cost: Any, list_price: Any, e: Any, floor: Any, ceiling: Any) -> Any:
        return list_price.copy()

    same = run(market, Strategy(pricer=list_pricer), 60, 7, seed=6)
    assert same.fitted_profit == pytest.approx(same.static_profit)

    def greedy(cost: Any, list_price: Any, e: Any, floor: Any, ceiling: Any) -> Any:
        return list_price * 10

    capped = run(market, Strategy(pricer=greedy), 60, 7, seed=6)
    assert capped.clipped == 40
    assert capped.skus["fitted_price"].to_numpy() == pytest.approx(market.list_price * 1.5)


def test_exploration_looks_like_promotions() -> None:
    market = make_market(30, 3, seed=8)
    rng = np.random.default_rng(8)
    prices = explore_prices(market, 60, rng, Exploration(fixed_share=0.3))
    factors = np.round(prices / market.list_price, 2)
    assert set(np.unique(factors)) <= {round(f, 2) for f in EXPLORE_FACTORS}
    moving = (factors != factors[0]).any(axis=0)
    assert 0 < moving.sum() < 30  # some SKUs never move
    changes = (np.diff(prices[:, moving], axis=0) != 0).mean()
    assert 0.1 < changes < 0.35  # a new price every ~4 days (some draws repeat the factor)
