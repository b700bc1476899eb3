"""The numpy reference of engine/pricing/kernels.py: the oracle the numba kernels must equal.

Written column-wise, the way one would without numba, with the same operations in the same
order as the kernel (so results are identical, not just close).  The benchmark measures the
kernel against it too.
"""

from __future__ import annotations

import numpy as np

from engine.pricing.kernels import (
    BOUND_CEILING,
    BOUND_CHANGE,
    BOUND_FLOOR,
    BOUND_MAP,
    BOUND_NONE,
    G_CEILING_BP,
    G_CHARM,
    G_MAX_CHANGE_BP,
    G_MIN_INTERVAL_S,
    G_MIN_MARGIN_BP,
    I_COMP_AVG,
    I_COMP_MIN,
    I_ELASTICITY,
    I_STOCK,
    I_UNITS_1D,
    I_UNITS_7D,
    I_VIEWS_1D,
    I_VIEWS_7D,
    STRATEGY_COMPETITOR,
    STRATEGY_DEMAND,
    STRATEGY_ELASTICITY,
    STRATEGY_INVENTORY,
)


def targets(rule, list_c, cost_c, inputs, strategies, params) -> np.ndarray:
    n = len(list_c)
    lp = list_c.astype(np.float64)
    cost = cost_c.astype(np.float64)
    x = inputs.astype(np.float64)
    has = rule >= 0
    r = np.maximum(rule, 0)
    strategy = np.where(has, strategies[r] if len(strategies) else -1, -1)
    p = params[r] if len(params) else np.zeros((n, 5))
    out = lp.copy()
    with np.errstate(all="ignore"):
        # demand
        u1, u7, v1, v7 = x[I_UNITS_1D], x[I_UNITS_7D], x[I_VIEWS_1D], x[I_VIEWS_7D]
        prior = p[:, 2]
        adjust = np.clip((u1 + prior) / (u7 / 7.0 + prior) - 1.0, -1.0, 1.0) * p[:, 0]
        conv = np.clip((u1 / v1) / (u7 / v7) - 1.0, -1.0, 1.0) * p[:, 1]
        adjust = np.where((v1 >= p[:, 3]) & (v7 > 0.0) & (u7 > 0.0), adjust + conv, adjust)
        demand = lp * (1.0 + np.clip(adjust, -p[:, 4], p[:, 4]))
        demand = np.where(np.isnan(u1) | np.isnan(u7), lp, demand)
        sel = strategy == STRATEGY_DEMAND
        out[sel] = demand[sel]

        # inventory
        stock = x[I_STOCK]
        daily = np.where(np.isnan(u7), 0.0, u7 / 7.0)
        daily = np.where(daily < 0.1, 0.1, daily)
        pressure = stock / daily / p[:, 0]
        inv = np.where(
            pressure > 1.0,
            lp * (1.0 - np.minimum(p[:, 1], (pressure - 1.0) * p[:, 3])),
            np.where(pressure < 0.5, lp * (1.0 + p[:, 2] * (0.5 - pressure) / 0.5), lp),
        )
        inv = np.where((p[:, 4] > 0.0) & (stock > 0.0), lp * (1.0 - p[:, 4]), inv)
        inv = np.where(np.isnan(stock), lp, inv)
        sel = strategy == STRATEGY_INVENTORY
        out[sel] = inv[sel]

        # competitor
        ref = np.where(p[:, 0] == 1.0, x[I_COMP_AVG], x[I_COMP_MIN])
        comp = np.where(
            p[:, 1] == 1.0,
            ref * (1.0 - p[:, 2]) - p[:, 3],
            np.where(p[:, 1] == 2.0, ref * (1.0 + p[:, 2]) + p[:, 3], ref),
        )
        comp = np.where(np.isnan(ref), lp, comp)
        sel = strategy == STRATEGY_COMPETITOR
        out[sel] = comp[sel]

        # elasticity
        e = x[I_ELASTICITY]
        el = np.where(np.isnan(e) | (e >= -1.0), lp, cost * e / (1.0 + e))
        sel = strategy == STRATEGY_ELASTICITY
        out[sel] = el[sel]
    return out


def charm(price, ending, lo, hi) -> np.ndarray:
    down = (price // 100) * 100 + ending
    down = np.where(down > price, down - 100, down)
    up = down + 100
    down_first = price - down <= up - price
    first = np.where(down_first, down, up)
    second = np.where(down_first, up, down)
    ok1 = (first > 0) & (lo <= first) & (first <= hi)
    ok2 = (second > 0) & (lo <= second) & (second <= hi)
    out = np.where(ok1, first, np.where(ok2, second, price))
    return np.where(ending > 0, out, price)


def guard(target, list_c, cost_c, map_c, cur_c, open_c, since, g):
    """Vectorised guardrails; ``open_c`` < 0: no change limits."""
    list_c, cost_c, map_c = (a.astype(np.int64) for a in (list_c, cost_c, map_c))
    cur_c, open_c, since = (a.astype(np.int64) for a in (cur_c, open_c, since))
    floor_margin = (cost_c * (10_000 + g[:, G_MIN_MARGIN_BP]) + 9_999) // 10_000
    use_map = map_c > floor_margin
    floor = np.where(use_map, map_c, floor_margin)
    floor_kind = np.where(use_map, BOUND_MAP, BOUND_FLOOR)
    ceiling = np.maximum(list_c * g[:, G_CEILING_BP] // 10_000, floor)
    target = np.where(np.isnan(target), list_c.astype(np.float64), target)
    price = np.floor(target + 0.5).astype(np.int64)
    bound = np.full(len(price), BOUND_NONE, dtype=np.int64)
    below, above = price < floor, price > ceiling
    bound = np.where(below, floor_kind, np.where(above, BOUND_CEILING, bound))
    price = np.clip(price, floor, ceiling)
    lo, hi = floor.copy(), ceiling.copy()

    limited = open_c >= 0
    # minimum interval: hold the current price (within the hard bounds)
    hold = limited & (since < g[:, G_MIN_INTERVAL_S])
    held = np.minimum(np.maximum(cur_c, floor), ceiling)
    moved = hold & (held != price)
    held_bound = np.where(
        held == cur_c, BOUND_CHANGE, np.where(held == floor, floor_kind, BOUND_CEILING)
    )
    bound = np.where(moved, held_bound, bound)
    price = np.where(hold, held, price)
    lo = np.where(hold, price, lo)
    hi = np.where(hold, price, hi)

    # the daily band around the opening price
    band = limited & ~hold
    chg = g[:, G_MAX_CHANGE_BP]
    band_lo = (open_c * (10_000 - chg) + 9_999) // 10_000
    band_hi = open_c * (10_000 + chg) // 10_000
    under = band & (band_hi < floor)
    over = band & ~under & (band_lo > ceiling)
    inside = band & ~under & ~over
    bound = np.where(under & (price != floor), floor_kind, bound)
    bound = np.where(over & (price != ceiling), BOUND_CEILING, bound)
    price = np.where(under, floor, np.where(over, ceiling, price))
    lo = np.where(
        under, floor, np.where(over, ceiling, np.where(inside, np.maximum(floor, band_lo), lo))
    )
    hi = np.where(
        under, floor, np.where(over, ceiling, np.where(inside, np.minimum(ceiling, band_hi), hi))
    )
    bound = np.where(
        inside & (price < lo), BOUND_CHANGE, np.where(inside & (price > hi), BOUND_CHANGE, bound)
    )
    price = np.where(inside, np.clip(price, lo, hi), price)

    price = charm(price, g[:, G_CHARM], lo, hi)
    return price, bound


def reprice(rule, list_c, cost_c, map_c, cur_c, open_c, since, inputs, strategies, params, guards):
    """``rule``: each SKU's row of the rule tables (-1: none), in any order; ``inputs`` as the
    kernel's, [N_INPUTS, n]; ``guards`` as the kernel's, float64 whole numbers."""
    default = len(guards) - 1
    g = guards[np.where(rule < 0, default, rule)].astype(np.int64)
    target = targets(rule, list_c, cost_c, inputs, strategies, params)
    return guard(target, list_c, cost_c, map_c, cur_c, open_c, since, g)
