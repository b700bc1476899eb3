"""A market with known demand curves, to test elasticity-based pricing end to end.

Every SKU has constant-elasticity demand ``base · (p / list)^e · weekly[dow] · yearly(day)``
with Poisson noise.  ``run`` lets prices wander through promotions for a while (the history a
real store would have), fits elasticities on that history exactly as on real data, prices with a
pluggable *pricer*, and scores the result on the *expected* profit of the true curves, so the
comparison with the oracle and with list prices is free of sales noise.

Days are integers counted from ``Market.start`` (a Monday by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.pricing.elasticity import (
    ElasticityEstimate,
    FitSettings,
    fit_elasticities,
    resolve,
)

Array = npt.NDArray[np.float64]
# (cost, list_price, elasticity (NaN: no usable estimate), floor, ceiling) -> prices
Pricer = Callable[[Array, Array, Array, Array, Array], Array]

WEEKLY = (0.92, 0.90, 0.94, 0.98, 1.06, 1.15, 1.05)  # Monday first: weekend shoppers
EXPLORE_FACTORS = (0.85, 0.90, 0.95, 1.00, 1.05, 1.10, 1.15)


@dataclass
class Market:
    """n SKUs with their true demand; arrays are aligned with ``skus``."""

    skus: list[str]
    category: list[str]
    list_price: Array
    cost: Array
    elasticity: Array
    base_demand: Array  # expected units per day at list price, before seasonality
    weekly: Array  # (7,) day-of-week multipliers, Monday first, mean 1
    category_elasticity: dict[str, float]
    yearly_amplitude: float = 0.0  # yearly multiplier 1 + a · cos(2π (doy - peak) / 365.25)
    yearly_peak: int = 340  # day of year of the yearly peak (early December)
    start: date = date(2026, 1, 5)

    def date(self, day: int) -> date:
        return self.start + timedelta(days=day)

    def season(self, day: int) -> float:
        when = self.date(day)
        doy = when.timetuple().tm_yday
        yearly = 1.0 + self.yearly_amplitude * math.cos(
            2 * math.pi * (doy - self.yearly_peak) / 365.25
        )
        return float(self.weekly[when.weekday()]) * yearly


def make_market(
    n_skus: int = 200,
    n_categories: int = 10,
    seed: int = 0,
    *,
    elasticity_range: tuple[float, float] = (-3.5, -1.3),
    sku_spread: float = 0.15,
    yearly_amplitude: float = 0.0,
) -> Market:
    """A random market: category elasticities uniform in ``elasticity_range``, each SKU's
    the category's plus N(0, ``sku_spread``) (capped at -1.1 so every SKU has a profit
    optimum), costs 40-75 % of list, base demand lognormal in [0.5, 20] units a day."""
    if n_categories < 1 or n_skus < n_categories:
        raise ValueError("need at least one SKU per category")
    rng = np.random.default_rng(seed)
    names = [f"cat-{j:02d}" for j in range(n_categories)]
    cat_e = rng.uniform(*elasticity_range, size=n_categories)
    cat_of = rng.permutation(np.arange(n_skus) % n_categories)
    elasticity = np.minimum(cat_e[cat_of] + rng.normal(0.0, sku_spread, n_skus), -1.1)
    list_price = np.round(np.exp(rng.normal(math.log(30.0), 0.8, n_skus)), 2).clip(1.0)
    weekly = np.array(WEEKLY) * rng.uniform(0.97, 1.03, 7)
    return Market(
        skus=[f"SKU-{i:05d}" for i in range(n_skus)],
        category=[names[j] for j in cat_of],
        list_price=list_price,
        cost=np.round(list_price * rng.uniform(0.40, 0.75, n_skus), 2),
        elasticity=elasticity,
        base_demand=np.exp(rng.normal(math.log(3.0), 1.0, n_skus)).clip(0.5, 20.0),
        weekly=weekly / weekly.mean(),
        category_elasticity={n: float(e) for n, e in zip(names, cat_e, strict=True)},
        yearly_amplitude=yearly_amplitude,
    )


def expected_units(market: Market, prices: Array, day: int) -> Array:
    """The true demand curve: expected units per SKU on ``day`` at ``prices``."""
    ratio = np.asarray(prices, dtype=np.float64) / market.list_price
    return np.asarray(market.base_demand * ratio**market.elasticity * market.season(day))


def simulate_day(market: Market, prices: Array, day: int, rng: np.random.Generator) -> Array:
    """Units sold per SKU on ``day``: Poisson draws around the true curve."""
    return rng.poisson(expected_units(market, prices, day)).astype(np.int64)


def expected_profit(market: Market, prices: Array, day: int) -> float:
    """Expected gross profit of the whole catalogue on ``day``."""
    units = expected_units(market, prices, day)
    return float(np.sum((np.asarray(prices) - market.cost) * units))


def guardrails(
    market: Market, *, min_margin: float = 0.05, max_markup: float = 1.5
) -> tuple[Array, Array]:
    """(floor, ceiling): at least ``min_margin`` over cost, at most ``max_markup`` times list."""
    return market.cost * (1.0 + min_margin), market.list_price * max_markup


def closed_form_pricer(
    cost: Array, list_price: Array, elasticity: Array, floor: Array, ceiling: Array
) -> Array:
    """Profit-maximising price under constant elasticity, p* = cost · e / (1 + e), clipped to
    [floor, ceiling] (profit is unimodal in p, so clipping gives the constrained optimum);
    the list price where there is no estimate or demand is inelastic (e >= -1: no optimum)."""
    e = np.asarray(elasticity, dtype=np.float64)
    elastic = np.isfinite(e) & (e < -1.0)
    safe = np.where(elastic, e, -2.0)
    optimum = np.clip(cost * safe / (1.0 + safe), floor, ceiling)
    return np.where(elastic, optimum, list_price)


def engine_pricer(min_margin_pct: float = 5.0, ceiling_pct: float = 150.0) -> Pricer:
    """The engine's elasticity rule as a pricer: the numba repricing kernel over the whole
    catalogue, with its guardrails (floor = cost · (1 + margin), ceiling = list · ceiling
    share; no change limits or charm rounding, which a simulated day does not need).  Costs
    round up to a cent so the kernel's floor is never below the simulator's."""
    from engine.pricing import kernels as k

    guards = np.zeros((2, k.N_GUARDS))
    guards[:, k.G_MIN_MARGIN_BP] = round(min_margin_pct * 100)
    guards[:, k.G_CEILING_BP] = round(ceiling_pct * 100)

    def price(
        cost: Array, list_price: Array, elasticity: Array, floor: Array, ceiling: Array
    ) -> Array:
        n = len(cost)
        list_c = np.floor(np.asarray(list_price) * 100 + 1e-6).astype(np.int32)
        cost_c = np.ceil(np.asarray(cost) * 100 - 1e-6).astype(np.int32)
        inputs = np.full((k.N_INPUTS, n), np.nan, dtype=np.float32)
        inputs[k.I_ELASTICITY] = elasticity
        starts, seg_rule = k.segments(np.zeros(n, dtype=np.int64))
        out = np.zeros(n, dtype=np.int32)
        k.reprice(
            starts,
            seg_rule,
            list_c,
            cost_c,
            np.zeros(n, dtype=np.int32),
            list_c,
            np.full(n, -1, dtype=np.int32),  # no change limits
            np.zeros(n, dtype=np.int64),
            inputs,
            np.array([k.STRATEGY_ELASTICITY], dtype=np.int64),
            np.zeros((1, k.N_PARAMS)),
            guards,
            np.zeros(n),
            out,
            np.zeros(n, dtype=np.int8),
        )
        return out.astype(np.float64) / 100

    return price


def oracle_prices(
    market: Market, floor: Array | None = None, ceiling: Array | None = None
) -> Array:
    """The best prices under the true elasticities (default bounds: ``guardrails``)."""
    lo, hi = guardrails(market)
    floor = lo if floor is None else floor
    ceiling = hi if ceiling is None else ceiling
    return closed_form_pricer(market.cost, market.list_price, market.elasticity, floor, ceiling)


@dataclass(frozen=True)
class Exploration:
    """How prices move before any model exists: each SKU at list times one of ``factors``, a new
    draw after a geometric number of days (mean ``mean_hold_days``), like rolling promotions;
    ``fixed_share`` of the SKUs never move (e.g. bound by a manufacturer's price)."""

    factors: Sequence[float] = EXPLORE_FACTORS
    mean_hold_days: float = 4.0
    fixed_share: float = 0.0


@dataclass(frozen=True)
class Strategy:
    """Fit elasticities on the history, keep the usable ones, price with ``pricer``."""

    pricer: Pricer = closed_form_pricer
    settings: FitSettings = field(default_factory=FitSettings)
    max_std_err: float = 0.5


@dataclass
class SimulationResult:
    """Expected profits over the exploitation phase, and what the strategy saw and did.

    ``categories``: category, true (mean of its SKUs' true elasticities), fitted, std_err,
    ci_low, ci_high, status.  ``skus``: per SKU the true and the used elasticity (NaN: none),
    cost, list price and the three prices.  ``history``: the exploration sales, in the format of
    ``fit_elasticities``."""

    static_profit: float
    fitted_profit: float
    oracle_profit: float
    categories: pd.DataFrame
    skus: pd.DataFrame
    history: pd.DataFrame
    estimates: list[ElasticityEstimate]
    clipped: int  # prices the pricer returned outside [floor, ceiling], clipped by the simulator

    @property
    def share_of_oracle(self) -> float:
        return self.fitted_profit / self.oracle_profit

    @property
    def uplift_captured(self) -> float:
        """Share of the oracle's gain over list prices that the strategy realised."""
        gain = self.oracle_profit - self.static_profit
        return (self.fitted_profit - self.static_profit) / gain if gain > 0 else math.nan


def explore_prices(
    market: Market, days: int, rng: np.random.Generator, exploration: Exploration = Exploration()
) -> Array:
    """(days, n) prices of the exploration phase, rounded to cents."""
    n = len(market.skus)
    factors = np.asarray(exploration.factors, dtype=np.float64)
    change = rng.random((days, n)) < 1.0 / exploration.mean_hold_days
    change[0] = True
    drawn = factors[rng.integers(0, len(factors), size=(days, n))]
    last = np.maximum.accumulate(np.where(change, np.arange(days)[:, None], 0), axis=0)
    factor = np.take_along_axis(drawn, last, axis=0)
    factor[:, rng.random(n) < exploration.fixed_share] = 1.0
    return np.asarray(np.round(market.list_price * factor, 2))


def simulate_history(
    market: Market, days: int, seed: int = 0, exploration: Exploration = Exploration()
) -> pd.DataFrame:
    """``days`` of exploration sales, one row per SKU per day (zero-sale days included)."""
    rng = np.random.default_rng(seed)
    prices = explore_prices(market, days, rng, exploration)
    units = np.stack([simulate_day(market, prices[d], d, rng) for d in range(days)])
    n = len(market.skus)
    dates = pd.to_datetime([market.date(d) for d in range(days)])
    return pd.DataFrame(
        {
            "sku": np.tile(np.asarray(market.skus, dtype=object), days),
            "category": np.tile(np.asarray(market.category, dtype=object), days),
            "day": np.repeat(dates.to_numpy(), n),
            "units": units.ravel(),
            "price": prices.ravel(),
        }
    )


def run(
    market: Market,
    strategy: Strategy = Strategy(),
    days_explore: int = 90,
    days_exploit: int = 28,
    seed: int = 0,
    *,
    exploration: Exploration = Exploration(),
    floor: Array | None = None,
    ceiling: Array | None = None,
) -> SimulationResult:
    """Explore for ``days_explore`` days, fit, then score list, fitted and oracle prices on
    the expected profit of the next ``days_exploit`` days (default bounds: ``guardrails``)."""
    lo, hi = guardrails(market)
    floor = lo if floor is None else np.asarray(floor, dtype=np.float64)
    ceiling = hi if ceiling is None else np.asarray(ceiling, dtype=np.float64)
    history = simulate_history(market, days_explore, seed, exploration)
    estimates = fit_elasticities(history, strategy.settings)
    sku_category = dict(zip(market.skus, market.category, strict=True))
    used = resolve(estimates, sku_category, max_std_err=strategy.max_std_err)
    e = np.array([used.get(s, math.nan) for s in market.skus])
    raw = np.asarray(
        strategy.pricer(market.cost, market.list_price, e, floor, ceiling), dtype=np.float64
    )
    if raw.shape != market.list_price.shape or not np.isfinite(raw).all():
        raise ValueError("the pricer must return one finite price per SKU")
    fitted = np.clip(raw, floor, ceiling)
    oracle = oracle_prices(market, floor, ceiling)
    exploit = range(days_explore, days_explore + days_exploit)
    profit = {
        name: sum(expected_profit(market, p, d) for d in exploit)
        for name, p in (("static", market.list_price), ("fitted", fitted), ("oracle", oracle))
    }
    skus = pd.DataFrame(
        {
            "sku": market.skus,
            "category": market.category,
            "true_elasticity": market.elasticity,
            "used_elasticity": e,
            "cost": market.cost,
            "list_price": market.list_price,
            "fitted_price": fitted,
            "oracle_price": oracle,
        }
    )
    return SimulationResult(
        static_profit=profit["static"],
        fitted_profit=profit["fitted"],
        oracle_profit=profit["oracle"],
        categories=_category_table(skus, estimates),
        skus=skus,
        history=history,
        estimates=estimates,
        clipped=int(np.count_nonzero((raw < floor - 1e-9) | (raw > ceiling + 1e-9))),
    )


def _category_table(skus: pd.DataFrame, estimates: list[ElasticityEstimate]) -> pd.DataFrame:
    true = skus.groupby("category")["true_elasticity"].mean().rename("true")
    fitted = pd.DataFrame(
        [
            {
                "category": e.key,
                "fitted": e.elasticity,
                "std_err": e.std_err,
                "ci_low": e.ci_low,
                "ci_high": e.ci_high,
                "status": e.status,
            }
            for e in estimates
            if e.level == "category"
        ]
    )
    return true.reset_index().merge(fitted, on="category", how="left")
