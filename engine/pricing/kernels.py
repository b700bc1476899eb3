"""Pricing kernels: numba over plain arrays, one loop for the whole catalogue.

Money is integer cents (``int32``: up to 21 million in the catalogue's currency) and guardrail
percentages are integer basis points, so floors, ceilings and the daily band are exact integer
arithmetic; only a strategy's *target* is a float, rounded half up to a cent once.  Demand
inputs arrive as ``float32`` (counts and competitor cents are exact in it) and are widened to
``float64`` before any arithmetic.  The numpy reference in the tests does the same operations
in the same order, so both give identical prices, not just close ones.

One price, in order:

1. the rule's strategy gives a target (``STRATEGY_*``; no rule: the list price);
2. hard bounds: floor = max(⌈cost · (1 + min margin)⌉, MAP), ceiling = ⌊list · ceiling⌋
   (never below the floor: MAP and margin win over the ceiling);
3. change limits (repricing only): within the minimum interval since the last change the
   current price holds; otherwise the price stays within ±max change of the day's opening price.
   When that band misses [floor, ceiling] entirely, the nearest hard bound wins;
4. charm rounding to .99 / .95: the nearest ending inside every bound above, else unrounded.

``bounded_by`` names the bound that moved the target (``BOUND_*``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# strategies (rule tables hold the code; names in engine/pricing/rules.py)
STRATEGY_LIST = 0
STRATEGY_DEMAND = 1
STRATEGY_INVENTORY = 2
STRATEGY_COMPETITOR = 3
STRATEGY_SEGMENT = 4
STRATEGY_ELASTICITY = 5

# bounded_by
BOUND_NONE = 0
BOUND_FLOOR = 1
BOUND_CEILING = 2
BOUND_MAP = 3
BOUND_CHANGE = 4
BOUND_NAMES = (None, "floor", "ceiling", "map", "change_limit")

# guardrail columns of the rule table (float64 holding whole numbers)
G_MIN_MARGIN_BP = 0  # floor = cost · (1 + bp / 10⁴)
G_CEILING_BP = 1  # ceiling = list · bp / 10⁴
G_MAX_CHANGE_BP = 2  # per UTC day, of the day's opening price
G_MIN_INTERVAL_S = 3  # since the last change
G_CHARM = 4  # 0: none, 99 or 95: the cents a price ends in
N_GUARDS = 5

# strategy parameter columns (float64); meaning depends on the strategy
# demand:      velocity_weight, conversion_weight, prior_units, min_views, max_adjust
# inventory:   target_days, max_discount, max_markup, overstock_slope, clearance_discount
# competitor:  reference (0 min, 1 average), action (0 match, 1 beat, 2 stay above),
#              percent (fraction), amount (cents)
# elasticity:  (none)
N_PARAMS = 5

# demand inputs, one row per input, one column per SKU (float32, NaN: unknown)
I_UNITS_1D = 0
I_UNITS_7D = 1
I_VIEWS_1D = 2
I_VIEWS_7D = 3
I_STOCK = 4
I_COMP_MIN = 5  # cents, in the catalogue's currency
I_COMP_AVG = 6
I_ELASTICITY = 7
N_INPUTS = 8

_CACHE = True


@njit(cache=_CACHE, inline="always", error_model="numpy")
def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


@njit(cache=_CACHE, inline="always", error_model="numpy")
def _pick(mask: bool, a: float, b: float) -> float:
    """``a if mask else b`` as arithmetic (both finite): a branch here is unpredictable, and
    LLVM vectorises arithmetic, not control flow."""
    m = np.float64(mask)
    return m * a + (1.0 - m) * b


@njit(cache=_CACHE, inline="always", error_model="numpy")
def demand_target(
    p: np.ndarray, list_c: float, u1: float, u7: float, v1: float, v7: float
) -> float:
    """Sales velocity against its norm (the 7-day daily mean, smoothed by ``prior`` units) and,
    with enough views, conversion against its 7-day norm: list · (1 + bounded adjustment)."""
    prior = p[2]
    adjust = _clip((u1 + prior) / (u7 / 7.0 + prior) - 1.0, -1.0, 1.0) * p[0]
    conv = _clip((u1 / v1) / (u7 / v7) - 1.0, -1.0, 1.0) * p[1]
    use_conv = (v1 >= p[3]) & (v7 > 0.0) & (u7 > 0.0)
    adjust = adjust + conv if use_conv else adjust
    demand = list_c * (1.0 + _clip(adjust, -p[4], p[4]))
    return list_c if (u1 != u1) | (u7 != u7) else demand


@njit(cache=_CACHE, inline="always", error_model="numpy")
def inventory_target(p: np.ndarray, list_c: float, stock: float, u7: float) -> float:
    """Days of cover against the target: overstock marks down (up to ``max_discount``), scarce
    stock (under half the target) marks up; ``clearance_discount`` > 0 marks down flat while
    any stock is left."""
    daily = u7 / 7.0 if u7 == u7 else 0.0
    daily = max(daily, 0.1)
    pressure = stock / daily / p[0]
    over = list_c * (1.0 - min(p[1], (pressure - 1.0) * p[3]))
    scarce = list_c * (1.0 + p[2] * (0.5 - pressure) / 0.5)
    price = over if pressure > 1.0 else (scarce if pressure < 0.5 else list_c)
    price = list_c * (1.0 - p[4]) if (p[4] > 0.0) & (stock > 0.0) else price
    return list_c if stock != stock else price


@njit(cache=_CACHE, inline="always", error_model="numpy")
def competitor_target(p: np.ndarray, list_c: float, cmin: float, cavg: float) -> float:
    """Match, beat (by a percent and/or an amount) or stay above the cheapest or the average
    competitor."""
    ref = cavg if p[0] == 1.0 else cmin
    beat = ref * (1.0 - p[2]) - p[3]
    above = ref * (1.0 + p[2]) + p[3]
    price = beat if p[1] == 1.0 else (above if p[1] == 2.0 else ref)
    return list_c if ref != ref else price


@njit(cache=_CACHE, inline="always", error_model="numpy")
def elasticity_target(list_c: float, cost_c: float, e: float) -> float:
    """The profit-maximising price under constant elasticity e < -1: cost · e / (1 + e)."""
    optimum = cost_c * e / (1.0 + e)
    return list_c if (e != e) | (e >= -1.0) else optimum


@njit(cache=_CACHE, inline="always", error_model="numpy")
def _ceil_bp(a: float) -> float:
    """⌈a / 10⁴⌉ for a whole number 0 ≤ a < 10¹⁴, by a multiplication (a division costs
    several times more).  a · 10⁻⁴ is within 10⁻⁶ of the exact quotient, and a quotient that
    is not whole lies at least 10⁻⁴ from the next whole number: nudging by 10⁻⁵ lands on the
    right side either way."""
    return float(np.ceil(a * 1e-4 - 1e-5))


@njit(cache=_CACHE, inline="always", error_model="numpy")
def _floor_bp(a: float) -> float:
    """⌊a / 10⁴⌋, as ``_ceil_bp``."""
    return float(np.floor(a * 1e-4 + 1e-5))


@njit(cache=_CACHE, inline="always", error_model="numpy")
def _charm(p: float, ending: float, lo: float, hi: float) -> float:
    """The price ending in ``ending`` cents nearest to ``p`` within [lo, hi] (ties: the lower);
    ``p`` itself when none fits, or when ``ending`` is 0."""
    down = np.floor(p * 0.01 + 1e-6) * 100.0 + ending
    down = _pick(down > p, down - 100.0, down)
    up = down + 100.0
    down_first = p - down <= up - p
    first = _pick(down_first, down, up)
    second = _pick(down_first, up, down)
    ok1 = (first > 0.0) & (lo <= first) & (first <= hi)
    ok2 = (second > 0.0) & (lo <= second) & (second <= hi)
    charmed = _pick(ok1, first, _pick(ok2, second, p))
    return _pick(ending > 0.0, charmed, p)


@njit(cache=_CACHE, inline="always", error_model="numpy")
def guard(
    target: float,
    list_c: float,
    cost_c: float,
    map_c: float,
    cur_c: float,
    open_c: float,
    since_change_s: float,
    g0: float,
    g1: float,
    g2: float,
    g3: float,
    g4: float,
) -> tuple[float, float]:
    """Guardrails on one target price: (price in cents, bounded_by code), both whole numbers
    in float64 (exact below 2⁵³).  ``open_c`` < 0: no change limits (a quote bounds an
    already-set price; it changes nothing).  ``g0..g4``: the rule's guardrail columns.

    Every case is computed and the answer picked arithmetically: over a catalogue these
    branches are unpredictable, and this way the loop vectorises."""
    floor_margin = _ceil_bp(cost_c * (10_000.0 + g0))
    floor = max(map_c, floor_margin)
    floor_kind = _pick(map_c > floor_margin, BOUND_MAP, BOUND_FLOOR)
    ceiling = max(_floor_bp(list_c * g1), floor)
    # a strategy given unusable inputs keeps the list price
    rounded = np.floor((list_c if target != target else target) + 0.5)
    price = _clip(rounded, floor, ceiling)
    bound = _pick(rounded < floor, floor_kind, _pick(rounded > ceiling, BOUND_CEILING, BOUND_NONE))

    # within the minimum interval: the current price holds (inside the hard bounds)
    held = _clip(cur_c, floor, ceiling)
    held_kind = _pick(held == cur_c, BOUND_CHANGE, _pick(held == floor, floor_kind, BOUND_CEILING))
    held_bound = _pick(held != price, held_kind, bound)
    # otherwise: within the day's band around the opening price; a band that misses
    # [floor, ceiling] collapses onto the nearest hard bound
    band_lo = _ceil_bp(open_c * (10_000.0 - g2))
    band_hi = _floor_bp(open_c * (10_000.0 + g2))
    lo = min(max(band_lo, floor), ceiling)
    hi = max(min(band_hi, ceiling), floor)
    banded = _clip(price, lo, hi)
    band_kind = _pick(
        band_hi < floor, floor_kind, _pick(band_lo > ceiling, BOUND_CEILING, BOUND_CHANGE)
    )
    banded_bound = _pick(banded != price, band_kind, bound)

    limited = open_c >= 0.0
    hold = limited & (since_change_s < g3)
    out = _pick(hold, held, _pick(limited, banded, price))
    out_bound = _pick(hold, held_bound, _pick(limited, banded_bound, bound))
    lo = _pick(hold, held, _pick(limited, lo, floor))
    hi = _pick(hold, held, _pick(limited, hi, ceiling))
    return _charm(out, g4, lo, hi), out_bound


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def reprice(
    starts: np.ndarray,  # int64 [m + 1]: SKUs grouped by rule; segment s is starts[s]:starts[s+1]
    seg_rule: np.ndarray,  # int64 [m]: the segment's row of the rule tables, -1: no rule
    list_c: np.ndarray,  # int32 [n]
    cost_c: np.ndarray,  # int32 [n]
    map_c: np.ndarray,  # int32 [n], 0: none
    cur_c: np.ndarray,  # int32 [n]: the current price
    open_c: np.ndarray,  # int32 [n]: the price the UTC day opened with
    since_change_s: np.ndarray,  # int64 [n]: seconds since the last change
    inputs: np.ndarray,  # float32 [N_INPUTS, n]
    strategies: np.ndarray,  # int64 [r]
    params: np.ndarray,  # float64 [r, N_PARAMS]
    guards: np.ndarray,  # float64 [r + 1, N_GUARDS]; the last row: defaults for SKUs with no rule
    out_target: np.ndarray,  # float64 [n]: the strategy's price before guardrails, in cents
    out_price: np.ndarray,  # int32 [n]
    out_bound: np.ndarray,  # int8 [n]
) -> None:
    """Reprice a whole catalogue, allocating nothing.  SKUs come grouped by rule, so each
    segment's strategy and guardrails are constants of a branch-free inner loop, which LLVM
    vectorises (the loops index slices from 0: numba then knows no index is negative)."""
    default = guards.shape[0] - 1
    for s in range(seg_rule.shape[0]):
        a, b = starts[s], starts[s + 1]
        r = seg_rule[s]
        strategy = STRATEGY_LIST if r < 0 else strategies[r]
        p = params[max(r, 0)]
        lp, t = list_c[a:b], out_target[a:b]
        if strategy == STRATEGY_DEMAND:
            _demand_all(
                p,
                lp,
                inputs[I_UNITS_1D, a:b],
                inputs[I_UNITS_7D, a:b],
                inputs[I_VIEWS_1D, a:b],
                inputs[I_VIEWS_7D, a:b],
                t,
            )
        elif strategy == STRATEGY_INVENTORY:
            _inventory_all(p, lp, inputs[I_STOCK, a:b], inputs[I_UNITS_7D, a:b], t)
        elif strategy == STRATEGY_COMPETITOR:
            _competitor_all(p, lp, inputs[I_COMP_MIN, a:b], inputs[I_COMP_AVG, a:b], t)
        elif strategy == STRATEGY_ELASTICITY:
            _elasticity_all(lp, cost_c[a:b], inputs[I_ELASTICITY, a:b], t)
        else:
            for i in range(b - a):
                t[i] = np.float64(lp[i])
        row = default if r < 0 else r
        _guard_all(
            t,
            lp,
            cost_c[a:b],
            map_c[a:b],
            cur_c[a:b],
            open_c[a:b],
            since_change_s[a:b],
            guards[row],
            out_price[a:b],
            out_bound[a:b],
        )


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _demand_all(
    p: np.ndarray,
    lp: np.ndarray,
    u1: np.ndarray,
    u7: np.ndarray,
    v1: np.ndarray,
    v7: np.ndarray,
    out: np.ndarray,
) -> None:
    for i in range(lp.shape[0]):
        out[i] = demand_target(
            p,
            np.float64(lp[i]),
            np.float64(u1[i]),
            np.float64(u7[i]),
            np.float64(v1[i]),
            np.float64(v7[i]),
        )


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _inventory_all(
    p: np.ndarray, lp: np.ndarray, stock: np.ndarray, u7: np.ndarray, out: np.ndarray
) -> None:
    for i in range(lp.shape[0]):
        out[i] = inventory_target(p, np.float64(lp[i]), np.float64(stock[i]), np.float64(u7[i]))


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _competitor_all(
    p: np.ndarray, lp: np.ndarray, cmin: np.ndarray, cavg: np.ndarray, out: np.ndarray
) -> None:
    for i in range(lp.shape[0]):
        out[i] = competitor_target(p, np.float64(lp[i]), np.float64(cmin[i]), np.float64(cavg[i]))


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _elasticity_all(lp: np.ndarray, cost: np.ndarray, e: np.ndarray, out: np.ndarray) -> None:
    for i in range(lp.shape[0]):
        out[i] = elasticity_target(np.float64(lp[i]), np.float64(cost[i]), np.float64(e[i]))


@njit(cache=_CACHE, nogil=True, error_model="numpy")
def _guard_all(
    target: np.ndarray,
    list_c: np.ndarray,
    cost_c: np.ndarray,
    map_c: np.ndarray,
    cur_c: np.ndarray,
    open_c: np.ndarray,
    since_change_s: np.ndarray,
    g: np.ndarray,
    out_price: np.ndarray,
    out_bound: np.ndarray,
) -> None:
    g0, g1, g2, g3, g4 = g[0], g[1], g[2], g[3], g[4]
    for i in range(list_c.shape[0]):
        price, bound = guard(
            target[i],
            np.float64(list_c[i]),
            np.float64(cost_c[i]),
            np.float64(map_c[i]),
            np.float64(cur_c[i]),
            np.float64(open_c[i]),
            np.float64(since_change_s[i]),
            g0,
            g1,
            g2,
            g3,
            g4,
        )
        out_price[i] = np.int32(price)
        out_bound[i] = np.int8(bound)


@njit(cache=_CACHE, error_model="numpy")
def quote_one(
    base_c: int, discount: float, list_c: int, cost_c: int, map_c: int, g: np.ndarray
) -> tuple[int, int]:
    """One quote: the SKU's current price less a customer's segment discount (a fraction),
    within floor, MAP and ceiling; no change limits (a quote changes no price)."""
    target = float(base_c) * (1.0 - discount)
    price, bound = guard(
        target, float(list_c), float(cost_c), float(map_c), float(base_c), -1.0, 0.0,
        g[0], g[1], g[2], g[3], g[4],
    )  # fmt: skip
    return int(price), int(bound)


def segments(rule: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, seg_rule) of an array of rule rows already grouped (sorted) by rule."""
    n = len(rule)
    if n == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    cut = np.flatnonzero(rule[1:] != rule[:-1]) + 1
    starts = np.concatenate(([0], cut, [n])).astype(np.int64)
    return starts, rule[starts[:-1]].astype(np.int64)


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel now, so no request pays for it."""
    g = np.array([[1_000, 15_000, 1_000, 3_600, 99]], dtype=np.float64)
    one = np.ones(6, dtype=np.int32) * 1_000
    rule = np.array([-1, 0, 1, 2, 3, 4], dtype=np.int64)
    starts, seg_rule = segments(rule)
    reprice(
        starts,
        seg_rule,
        one,
        one // 2,
        np.zeros(6, dtype=np.int32),
        one,
        one,
        np.zeros(6, dtype=np.int64),
        np.zeros((N_INPUTS, 6), dtype=np.float32),
        np.array([1, 2, 3, 5, 0], dtype=np.int64),
        np.ones((5, N_PARAMS), dtype=np.float64),
        np.repeat(g, 6, axis=0),
        np.zeros(6, dtype=np.float64),
        np.zeros(6, dtype=np.int32),
        np.zeros(6, dtype=np.int8),
    )
    quote_one(1_000, 0.1, 1_000, 500, 0, g[0])
