"""The evaluation protocol of the fraud-handbook benchmark (see its README).

A training window, a gap of ``delay_days`` whose labels are not known yet, then a test window.
From each test day the transactions of cards already known to be compromised are removed: a
fraud in the training window, or on a day before the current day minus the delay.  On what is
left: ROC AUC, average precision, and card precision@k — per test day each card is ranked by
its highest score, the share of fraudulent cards among the top k is taken, cards found
fraudulent in an earlier day's top k are left out (investigators already have them), and the
days are averaged.  This follows the handbook's reference code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, roc_auc_score

DAY = 86_400


@dataclass(frozen=True)
class Protocol:
    train_start: date
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7

    def shifted(self, days: int) -> Protocol:
        """The same windows ``days`` earlier (prequential validation folds)."""
        return Protocol(
            self.train_start - timedelta(days=days),
            self.train_days,
            self.delay_days,
            self.test_days,
        )

    @property
    def train_from(self) -> float:
        return datetime(
            self.train_start.year, self.train_start.month, self.train_start.day, tzinfo=UTC
        ).timestamp()

    @property
    def test_from(self) -> float:
        return self.train_from + (self.train_days + self.delay_days) * DAY

    def train_mask(self, ts: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        return (ts >= self.train_from) & (ts < self.train_from + self.train_days * DAY)

    def test_mask(self, ts: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        return (ts >= self.test_from) & (ts < self.test_from + self.test_days * DAY)


def known_compromised_mask(
    ts: npt.NDArray[np.float64],
    card: npt.NDArray[np.object_],
    label: npt.NDArray[np.int_],
    protocol: Protocol,
) -> npt.NDArray[np.bool_]:
    """Test transactions whose card was known compromised on their day (to drop)."""
    test = protocol.test_mask(ts)
    drop = np.zeros(len(ts), dtype=bool)
    frauds = label.astype(bool) & (ts >= protocol.train_from)
    for d in range(protocol.test_days):
        start = protocol.test_from + d * DAY
        rows = test & (ts >= start) & (ts < start + DAY)
        known = set(card[frauds & (ts < start - protocol.delay_days * DAY)])
        drop[rows] = np.isin(card[rows], list(known))
    return drop


_SCORE = itemgetter(1)


class RankedCard(NamedTuple):
    """A card as card precision ranks it on one test day."""

    card: object
    score: float  # its highest score that day
    fraud: bool  # a fraud among its transactions that day
    best: int  # the row (of the arrays ranked) of that highest score
    fraud_row: int  # the row of its last fraud that day, -1 without one


def daily_card_rankings(
    ts: npt.NDArray[np.float64],
    card: npt.NDArray[np.object_],
    label: npt.NDArray[np.int_],
    score: npt.NDArray[np.float64],
    protocol: Protocol,
    *,
    k: int = 100,
) -> Iterator[list[RankedCard]]:
    """Each test day's cards, highest score first (ties in row order), as card precision@k
    ranks them: a card found fraudulent in an earlier day's top ``k`` is left out."""
    day = np.floor((ts - protocol.test_from) / DAY).astype(int)
    detected: set[object] = set()
    for d in range(protocol.test_days):
        rows = np.flatnonzero(day == d)
        if rows.size == 0:
            continue
        best: dict[object, list[Any]] = {}  # card -> [score, best row, fraud row]
        picked = (rows.tolist(), card[rows], score[rows].tolist(), label[rows].tolist())
        for i, c, s, y in zip(*picked, strict=True):
            if c in detected:
                continue
            entry = best.get(c)
            if entry is None:
                best[c] = entry = [s, i, -1]
            elif s > entry[0]:
                entry[0], entry[1] = s, i
            if y:
                entry[2] = i
        ranked = sorted(
            (RankedCard(c, s, f >= 0, b, f) for c, (s, b, f) in best.items()),
            key=_SCORE,
            reverse=True,  # stable: equal scores stay in row order
        )
        yield ranked
        detected |= {r.card for r in ranked[:k] if r.fraud}


def card_precision_at_k(
    ts: npt.NDArray[np.float64],
    card: npt.NDArray[np.object_],
    label: npt.NDArray[np.int_],
    score: npt.NDArray[np.float64],
    protocol: Protocol,
    *,
    k: int = 100,
) -> float:
    """Mean over test days of the fraud share among the k cards scored highest that day."""
    per_day = [
        sum(r.fraud for r in ranked[:k]) / k
        for ranked in daily_card_rankings(ts, card, label, score, protocol, k=k)
    ]
    return float(np.mean(per_day)) if per_day else 0.0


def metrics(
    ts: npt.NDArray[np.float64],
    card: npt.NDArray[np.object_],
    label: npt.NDArray[np.int_],
    score: npt.NDArray[np.float64],
    protocol: Protocol,
) -> dict[str, float]:
    """The three published metrics on test transactions (known-compromised already removed)."""
    both = 0 < label.sum() < len(label)
    return {
        "roc_auc": float(roc_auc_score(label, score)) if both else 0.5,
        "average_precision": float(average_precision_score(label, score)) if both else 0.0,
        "card_precision_at_100": card_precision_at_k(ts, card, label, score, protocol),
    }
