"""The elasticity strategy as the engine runs it (the numba kernel with its guardrails) in a
market with known demand curves: close to the oracle, better than list prices."""

from __future__ import annotations

import numpy as np
import pytest

from training.pricing.simulator import (
    Strategy,
    closed_form_pricer,
    engine_pricer,
    guardrails,
    make_market,
    run,
)

pytestmark = pytest.mark.unit


def test_the_engine_kernel_reaches_95_percent_of_the_oracle_profit() -> None:
    market = make_market(n_skus=200, n_categories=10, seed=3)
    result = run(market, Strategy(pricer=engine_pricer()), days_explore=90, days_exploit=28, seed=3)
    assert result.share_of_oracle >= 0.95
    assert result.fitted_profit > result.static_profit
    assert result.clipped == 0  # the kernel's own floor and ceiling agree with the market's


def test_the_kernel_prices_as_the_closed_form_to_the_cent() -> None:
    market = make_market(n_skus=300, n_categories=6, seed=1)
    floor, ceiling = guardrails(market)
    rng = np.random.default_rng(0)
    e = rng.uniform(-4.0, -0.5, len(market.skus))
    e[rng.random(len(e)) < 0.2] = np.nan
    kernel = engine_pricer()(market.cost, market.list_price, e, floor, ceiling)
    closed = closed_form_pricer(market.cost, market.list_price, e, floor, ceiling)
    assert np.abs(kernel - closed).max() <= 0.011
