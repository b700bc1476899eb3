"""The fraud-handbook evaluation protocol: windows, known-compromised cards, card precision@k."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from engine.fraud.inputs import INPUTS, REQUEST_INPUTS, assemble
from training.fraud.protocol import DAY, Protocol, card_precision_at_k, known_compromised_mask

pytestmark = pytest.mark.unit
P = Protocol(date(2018, 7, 25), train_days=7, delay_days=7, test_days=7)
T = datetime(2018, 7, 25, tzinfo=UTC).timestamp()


def test_windows() -> None:
    ts = np.array(
        [
            T - 1,
            T,
            T + 7 * DAY - 1,
            T + 7 * DAY,
            T + 14 * DAY - 1,
            T + 14 * DAY,
            T + 21 * DAY - 1,
            T + 21 * DAY,
        ]
    )
    assert P.train_mask(ts).tolist() == [False, True, True, False, False, False, False, False]
    assert P.test_mask(ts).tolist() == [False, False, False, False, False, True, True, False]
    assert P.shifted(14).test_from == P.test_from - 14 * DAY


def test_known_compromised_cards_leave_the_test_days() -> None:
    test0 = P.test_from
    ts = np.array(
        [
            T + DAY,  # fraud of card A in training: A is known from the first test day
            T + 7.5 * DAY,  # fraud of card B on the first delay day (day 7 after the start)
            test0 + 0.5 * DAY,  # A on test day 0: dropped
            test0 + 0.5 * DAY,  # B on test day 0: kept (B's fraud is only known 7 days later)
            test0 + 1.5 * DAY,  # B on test day 1 (day 15): day 7's frauds are known -> dropped
            test0 + 1.5 * DAY,  # C on test day 1: kept
        ]
    )
    card = np.array(["A", "B", "A", "B", "B", "C"], dtype=object)
    label = np.array([1, 1, 0, 0, 0, 0])
    assert known_compromised_mask(ts, card, label, P).tolist() == [
        False,
        False,
        True,
        False,
        True,
        False,
    ]


def test_card_precision_takes_each_cards_best_score_and_forgets_detected_cards() -> None:
    day0, day1 = P.test_from + 3600, P.test_from + DAY + 3600
    ts = np.array([day0, day0, day0, day0, day1, day1, day1])
    card = np.array(["A", "A", "B", "C", "A", "B", "C"], dtype=object)
    label = np.array([0, 1, 0, 1, 1, 1, 0])
    score = np.array([0.9, 0.1, 0.8, 0.2, 0.99, 0.5, 0.4])
    # day 0, k=2: A (best 0.9, fraud via its 2nd tx) and B (0.8, legit) -> 1/2; A detected
    # day 1: A is left out; B (0.5, fraud) and C (0.4, legit) -> 1/2
    assert card_precision_at_k(ts, card, label, score, P, k=2) == pytest.approx(0.5)
    # k=1: day 0 top is A (fraud) -> 1; day 1 without A: B (fraud) -> 1
    assert card_precision_at_k(ts, card, label, score, P, k=1) == pytest.approx(1.0)
    # the share is over k even when fewer cards played that day
    assert card_precision_at_k(ts[:4], card[:4], label[:4], score[:4], P, k=100) == 0.02


def test_model_inputs_one_row_equals_the_column_computation() -> None:
    store = {
        "customer_txn.amount_mean_30d": np.array([20.0, 0.0]),
        "merchant_txn.fraud_7d_delay7d_ratio": np.array([0.25, 0.0]),
    }
    amount = np.array([100.0, 5.0])
    ts = np.array(
        [
            datetime(2018, 7, 28, 3, tzinfo=UTC).timestamp(),  # a Saturday, 03:00
            datetime(2018, 7, 30, 14, tzinfo=UTC).timestamp(),
        ]
    )  # a Monday, 14:00
    rows = assemble(store, amount, ts)
    assert rows.shape == (2, len(INPUTS))
    col = {name: i for i, name in enumerate(INPUTS)}
    assert rows[0, col["amount_vs_customer_30d"]] == pytest.approx(5.0)
    assert rows[1, col["amount_vs_customer_30d"]] == 0.0  # no history: 0, not inf
    assert rows[:, col["is_weekend"]].tolist() == [1.0, 0.0]
    assert rows[:, col["is_night"]].tolist() == [1.0, 0.0]
    assert rows[0, col["merchant_txn.fraud_7d_delay7d_ratio"]] == pytest.approx(0.25)
    assert rows[0, col["card_txn.frauds_known"]] == 0.0  # absent view: its default
    one = assemble({k: v[1:] for k, v in store.items()}, amount[1:], ts[1:])
    assert np.array_equal(one[0], rows[1])
    assert INPUTS[: len(REQUEST_INPUTS)] == REQUEST_INPUTS
