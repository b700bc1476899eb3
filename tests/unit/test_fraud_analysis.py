"""The card precision breakdown (``training.fraud.analysis``) on a made-up store: it ranks the
cards as the metric does, so its counts add up to the metric."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from engine.fraud.inputs import INPUTS
from training.fraud.analysis import MERCHANT_KNOWN, Breakdown, analyse
from training.fraud.backtest import Prepared, evaluate
from training.fraud.protocol import DAY, Protocol

pytestmark = pytest.mark.unit
P = Protocol(date(2018, 7, 25), train_days=7, delay_days=7, test_days=7)
PARAMS = {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.3}


def store(seed: int = 3) -> tuple[Prepared, np.ndarray]:
    """21 days, 500 cards paying ~twice a day.  Frauds of kind 1 carry a signal in the first
    input (a large amount) and are caught; frauds of kind 2 look like any other payment (as a
    freshly compromised terminal's do) and are missed."""
    rng = np.random.default_rng(seed)
    start = datetime(2018, 7, 25, tzinfo=UTC).timestamp()
    n = 500 * 2 * 21
    ts = np.sort(start + rng.random(n) * 21 * DAY)
    card = np.array([f"c{i}" for i in rng.integers(500, size=n)], dtype=object)
    scenario = np.where(rng.random(n) < 0.01, 1, np.where(rng.random(n) < 0.01, 2, 0))
    inputs = rng.random((n, len(INPUTS))).astype(np.float32)
    inputs[scenario == 1, 0] += 5.0
    inputs[:, MERCHANT_KNOWN] = (scenario == 1).astype(np.float32)
    label = (scenario > 0).astype(np.int64)
    ids = np.array([str(i) for i in range(n)], dtype=object)
    return Prepared(ids, ts, card, label, inputs), scenario


def test_counts_add_up_to_the_metric_and_name_what_is_missed() -> None:
    data, scenario = store()
    out = Breakdown()
    analyse(data, scenario, P, PARAMS, out, k=100)
    result, _ = evaluate(data, P, PARAMS)
    assert out.card_precision == [pytest.approx(result["card_precision_at_100"])]
    assert out.days == 7
    in_top = sum(out.frauds_in_top.values())
    assert in_top / (100 * out.days) == pytest.approx(out.card_precision[0])
    assert in_top + out.legit_in_top == 100 * out.days  # > 100 cards pay every day
    assert out.frauds_in_top["1"] > 0 and out.frauds_missed["2"] > out.frauds_missed["1"]
    summary = out.summary()
    missed = sum(out.frauds_missed.values())
    assert summary["per_day"]["frauds_missed"] == pytest.approx(missed / 7, abs=0.01)
    # the missed kind-2 cards had no "merchant fraud known" (the store's column is 0 for them)
    assert out.missed_merchant_unknown >= out.frauds_missed["2"]
    assert summary["score_of_missed_frauds_median"] < summary["score_of_the_100th_card_median"]
