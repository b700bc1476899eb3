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

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

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
    day = np.floor((ts - protocol.test_from) / DAY).astype(int)
    detected: set[object] = set()
    per_day: list[float] = []
    for d in range(protocol.test_days):
        rows = day == d
        if not rows.any():
            continue
        best: dict[object, tuple[float, int]] = {}
        for c, s, y in zip(card[rows], score[rows], label[rows], strict=True):
            if c in detected:
                continue
            prev = best.get(c)
            best[c] = (s, int(y)) if prev is None else (max(s, prev[0]), max(int(y), prev[1]))
        top = sorted(best.items(), key=lambda item: -item[1][0])[:k]
        per_day.append(sum(y for _c, (_s, y) in top) / k)
        detected |= {c for c, (_s, y) in top if y}
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
