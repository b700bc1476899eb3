"""The pricing kernels: numba equals the numpy reference, and the guardrails hold whatever the
strategies, inputs and settings (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.pricing import kernels as k
from tests.unit import pricing_reference as ref

pytestmark = pytest.mark.unit


@dataclass
class Case:
    rule: np.ndarray
    list_c: np.ndarray
    cost_c: np.ndarray
    map_c: np.ndarray
    cur_c: np.ndarray
    open_c: np.ndarray
    since: np.ndarray
    inputs: np.ndarray
    strategies: np.ndarray
    params: np.ndarray
    guards: np.ndarray

    def args(self) -> tuple:
        return (
            self.rule,
            self.list_c,
            self.cost_c,
            self.map_c,
            self.cur_c,
            self.open_c,
            self.since,
            self.inputs,
            self.strategies,
            self.params,
            self.guards,
        )

    def floors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g = self.guards[np.where(self.rule < 0, len(self.guards) - 1, self.rule)].astype(np.int64)
        cost, lp = self.cost_c.astype(np.int64), self.list_c.astype(np.int64)
        margin = (cost * (10_000 + g[:, k.G_MIN_MARGIN_BP]) + 9_999) // 10_000
        floor = np.maximum(margin, self.map_c.astype(np.int64))
        ceiling = lp * g[:, k.G_CEILING_BP] // 10_000
        return floor, ceiling, g


def run_kernel(c: Case) -> tuple[np.ndarray, np.ndarray]:
    """The kernel over the case grouped by rule, answers put back in the case's order."""
    order = np.argsort(c.rule, kind="stable")
    starts, seg_rule = k.segments(c.rule[order])
    n = len(c.rule)
    target, price, bound = np.zeros(n), np.zeros(n, np.int32), np.zeros(n, np.int8)
    k.reprice(
        starts,
        seg_rule,
        c.list_c[order],
        c.cost_c[order],
        c.map_c[order],
        c.cur_c[order],
        c.open_c[order],
        c.since[order],
        np.ascontiguousarray(c.inputs[:, order]),
        c.strategies,
        c.params,
        c.guards,
        target,
        price,
        bound,
    )
    back = np.empty(n, dtype=np.int64)
    back[order] = np.arange(n)
    return price[back].astype(np.int64), bound[back].astype(np.int64)


PARAMS = {
    k.STRATEGY_DEMAND: [0.1, 0.05, 1.0, 20.0, 0.15],
    k.STRATEGY_INVENTORY: [30.0, 0.2, 0.05, 0.1, 0.0],
    k.STRATEGY_COMPETITOR: [0.0, 1.0, 0.02, 0.0, 0.0],
    k.STRATEGY_ELASTICITY: [0.0, 0.0, 0.0, 0.0, 0.0],
}


@st.composite
def cases(draw: st.DrawFn, n_max: int = 40) -> Case:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, n_max))
    n_rules = draw(st.integers(0, 4))
    strategies = np.array(
        [draw(st.sampled_from(sorted(PARAMS))) for _ in range(n_rules)], dtype=np.int64
    )
    params = np.array([PARAMS[s] for s in strategies], dtype=np.float64).reshape(n_rules, 5)
    for row, s in enumerate(strategies):  # vary the settings that change the code path
        if s == k.STRATEGY_COMPETITOR:
            params[row, 0] = draw(st.sampled_from([0.0, 1.0]))
            params[row, 1] = draw(st.sampled_from([0.0, 1.0, 2.0]))
            params[row, 3] = draw(st.sampled_from([0.0, 150.0]))
        if s == k.STRATEGY_INVENTORY:
            params[row, 4] = draw(st.sampled_from([0.0, 0.3]))
    guards = np.array(
        [
            [
                draw(st.integers(0, 5_000)),
                draw(st.integers(5_000, 30_000)),
                draw(st.integers(0, 5_000)),
                draw(st.sampled_from([0, 600, 3_600])),
                draw(st.sampled_from([0, 95, 99])),
            ]
            for _ in range(n_rules + 1)
        ],
        dtype=np.float64,
    )
    list_c = rng.integers(1, 10_000_000, n)
    scale = draw(st.sampled_from([100, 10_000, 1_000_000]))
    list_c = np.minimum(list_c % scale + 1, 10_000_000).astype(np.int32)
    cost_c = (list_c * rng.uniform(0.0, 1.6, n)).astype(np.int32)
    map_c = np.where(rng.random(n) < 0.4, list_c * rng.uniform(0.5, 1.2, n), 0).astype(np.int32)
    cur_c = np.maximum(list_c * rng.uniform(0.5, 1.5, n), 1).astype(np.int32)
    open_c = np.where(rng.random(n) < 0.5, cur_c, cur_c * rng.uniform(0.7, 1.3, n)).astype(np.int32)
    since = rng.integers(0, 7_200, n).astype(np.int64)
    x = np.empty((k.N_INPUTS, n), dtype=np.float32)
    x[k.I_UNITS_1D] = rng.poisson(rng.uniform(0, 20), n)
    x[k.I_UNITS_7D] = rng.poisson(rng.uniform(0, 100), n)
    x[k.I_VIEWS_1D] = rng.poisson(rng.uniform(0, 200), n)
    x[k.I_VIEWS_7D] = rng.poisson(rng.uniform(0, 1_000), n)
    x[k.I_STOCK] = rng.integers(0, 1_000, n)
    x[k.I_COMP_MIN] = np.round(list_c * rng.uniform(0.5, 1.5, n))
    x[k.I_COMP_AVG] = np.round(x[k.I_COMP_MIN] * rng.uniform(1.0, 1.3, n))
    x[k.I_ELASTICITY] = rng.uniform(-5, 0, n)
    x[rng.random(x.shape) < draw(st.sampled_from([0.0, 0.2]))] = np.nan
    rule = rng.integers(-1, n_rules, n).astype(np.int32)
    return Case(rule, list_c, cost_c, map_c, cur_c, open_c, since, x, strategies, params, guards)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_numba_equals_the_numpy_reference(c: Case) -> None:
    price, bound = run_kernel(c)
    want_price, want_bound = ref.reprice(*c.args())
    assert price.tolist() == want_price.tolist()
    assert bound.tolist() == want_bound.tolist()


@settings(max_examples=300, deadline=None)
@given(cases())
def test_guardrails_hold(c: Case) -> None:
    price, bound = run_kernel(c)
    floor, ceiling, g = c.floors()
    # never below the floor, and so never below MAP
    assert (price >= floor).all()
    assert (price >= c.map_c).all()
    # never above the ceiling (when MAP or the margin put the floor above it, the floor wins)
    assert (price <= np.maximum(ceiling, floor)).all()
    # within the minimum interval the price holds, unless the hard bounds moved
    hold = c.since < g[:, k.G_MIN_INTERVAL_S]
    held = np.clip(c.cur_c, floor, np.maximum(ceiling, floor))
    assert (price[hold] == held[hold]).all()
    # otherwise never a change beyond the daily limit, unless the limit and the hard bounds
    # cannot both be met (then the hard bound nearest to the band wins)
    chg = g[:, k.G_MAX_CHANGE_BP]
    open_c = c.open_c.astype(np.int64)
    band_lo = (open_c * (10_000 - chg) + 9_999) // 10_000
    band_hi = open_c * (10_000 + chg) // 10_000
    meets = ~hold & (band_hi >= floor) & (band_lo <= np.maximum(ceiling, floor))
    assert (price[meets] >= band_lo[meets]).all()
    assert (price[meets] <= band_hi[meets]).all()
    missed_low = ~hold & (band_hi < floor)
    assert (price[missed_low] == floor[missed_low]).all()
    # a bound is named whenever the price is not the strategy's own
    assert set(bound.tolist()) <= {0, 1, 2, 3, 4}


@settings(max_examples=200, deadline=None)
@given(cases())
def test_charm_rounding_when_the_bounds_leave_room(c: Case) -> None:
    price, _ = run_kernel(c)
    floor, ceiling, g = c.floors()
    charm = g[:, k.G_CHARM]
    hold = c.since < g[:, k.G_MIN_INTERVAL_S]
    chg = g[:, k.G_MAX_CHANGE_BP]
    open_c = c.open_c.astype(np.int64)
    lo = np.maximum(floor, (open_c * (10_000 - chg) + 9_999) // 10_000)
    hi = np.minimum(np.maximum(ceiling, floor), open_c * (10_000 + chg) // 10_000)
    roomy = ~hold & (charm > 0) & (hi - lo >= 100)
    assert (price[roomy] % 100 == charm[roomy]).all()


def test_the_daily_limit_is_cumulative_from_the_opening_price() -> None:
    """Two steps of 8 % in one day under a 10 % limit: the second stops at +10 % of the
    day's opening price, not of the price after the first step."""
    g = np.array([[0, 50_000, 1_000, 0, 0]], dtype=np.float64)
    args = {"list_c": 10_000.0, "cost_c": 1_000.0, "map_c": 0.0, "since_change_s": 1e9}
    first, _ = k.guard(
        10_800.0, cur_c=10_000.0, open_c=10_000.0, **args, g0=0, g1=50_000, g2=1_000, g3=0, g4=0
    )
    second, bound = k.guard(
        11_664.0, cur_c=first, open_c=10_000.0, **args, g0=0, g1=50_000, g2=1_000, g3=0, g4=0
    )
    assert (first, second, bound) == (10_800.0, 11_000.0, k.BOUND_CHANGE)
    assert g.shape == (1, k.N_GUARDS)


def test_quote_discounts_within_floor_and_map() -> None:
    g = np.array([1_000, 15_000, 1_000, 3_600, 99], dtype=np.float64)
    # 10 % off 20.00 is 18.00 -> charm 17.99; floor (cost 15 + 10 %) 16.50 allows it
    assert k.quote_one(2_000, 0.10, 2_000, 1_500, 0, g) == (1_799, k.BOUND_NONE)
    # 30 % off would cross the margin floor (16.50, charm would go below): the floor holds
    assert k.quote_one(2_000, 0.30, 2_000, 1_500, 0, g) == (1_699, k.BOUND_FLOOR)
    # MAP 19.00 above the margin floor: the discount stops at MAP
    assert k.quote_one(2_000, 0.10, 2_000, 1_500, 1_900, g) == (1_999, k.BOUND_MAP)


def test_strategies_targets() -> None:
    nan = float("nan")
    demand = np.array([0.1, 0.0, 1.0, 20.0, 0.15])
    # selling 3x the 7-day norm: velocity_weight 0.1 of a clipped +100 % = +10 %
    assert k.demand_target(demand, 1_000.0, 9.0, 21.0, 0.0, 0.0) == pytest.approx(1_100.0)
    assert k.demand_target(demand, 1_000.0, nan, 21.0, 0.0, 0.0) == 1_000.0
    inventory = np.array([30.0, 0.2, 0.05, 0.1, 0.0])
    # 1 sale a day, 90 units: 3 targets of cover, 2 over: 20 % off (the max)
    assert k.inventory_target(inventory, 1_000.0, 90.0, 7.0) == pytest.approx(800.0)
    # 5 units at 1 a day: scarce (1/6 of the target) -> marked up
    assert k.inventory_target(inventory, 1_000.0, 5.0, 7.0) > 1_000.0
    competitor = np.array([0.0, 1.0, 0.02, 0.0, 0.0])  # beat the cheapest by 2 %
    assert k.competitor_target(competitor, 1_000.0, 900.0, 950.0) == pytest.approx(882.0)
    assert k.competitor_target(competitor, 1_000.0, nan, nan) == 1_000.0
    # elasticity -3: cost * 3/2
    assert k.elasticity_target(1_000.0, 400.0, -3.0) == pytest.approx(600.0)
    assert k.elasticity_target(1_000.0, 400.0, -0.8) == 1_000.0  # inelastic: no optimum
