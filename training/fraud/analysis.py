"""Where card precision@100 goes: the protocol's daily top 100 cards taken apart.

    python -m training.fraud.analysis --transactions FILE --train-start 2018-07-25 \\
        [--params '{"n_estimators": 100, "max_depth": 6, "learning_rate": 0.05}'] [--folds 4]

For each prequential validation window (the windows ``cartwise fraud backtest`` chooses its
parameters on; never the test window unless ``--test`` is given) a model of ``--params`` is
trained and scored, and every test day's cards are ranked as the metric ranks them (a card's
highest score that day, cards found in an earlier day's top 100 left out).  It prints, over all
those days: the fraudulent cards inside the top 100 and outside it (by the file's
``fraud_scenario`` column when it has one: what kind of fraud is missed), the scores at the cut,
and the share of the misses whose merchant had no fraud known by then.  ``fraud_scenario`` is
read for this breakdown only; it is never a model input.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.fraud.inputs import INPUTS
from training.fraud.backtest import Prepared, fit, prepare, split
from training.fraud.protocol import Protocol, daily_card_rankings

MERCHANT_KNOWN = INPUTS.index("merchant_txn.fraud_30d_delay7d_ratio")


@dataclass
class Breakdown:
    """Counts over every test day of the windows analysed (cards, not transactions)."""

    days: int = 0
    frauds_in_top: Counter[str] = field(default_factory=Counter)  # by scenario
    frauds_missed: Counter[str] = field(default_factory=Counter)
    missed_merchant_unknown: int = 0  # missed cards whose merchant had no fraud known yet
    legit_in_top: int = 0
    cut_scores: list[float] = field(default_factory=list)  # the 100th card's score per day
    missed_scores: list[float] = field(default_factory=list)
    card_precision: list[float] = field(default_factory=list)  # per window

    def summary(self) -> dict[str, Any]:
        missed = sum(self.frauds_missed.values())
        return {
            "days": self.days,
            "card_precision_at_100": [round(c, 4) for c in self.card_precision],
            "per_day": {
                "frauds_in_top_100": round(sum(self.frauds_in_top.values()) / self.days, 2),
                "legit_in_top_100": round(self.legit_in_top / self.days, 2),
                "frauds_missed": round(missed / self.days, 2),
            },
            "frauds_in_top_by_scenario": dict(sorted(self.frauds_in_top.items())),
            "frauds_missed_by_scenario": dict(sorted(self.frauds_missed.items())),
            "missed_with_no_merchant_fraud_known": round(self.missed_merchant_unknown / missed, 3)
            if missed
            else 0.0,
            "score_of_the_100th_card_median": float(np.median(self.cut_scores)),
            "score_of_missed_frauds_median": float(np.median(self.missed_scores))
            if self.missed_scores
            else None,
        }


def analyse(
    data: Prepared,
    scenario: npt.NDArray[np.int_] | None,
    protocol: Protocol,
    params: dict[str, Any],
    out: Breakdown,
    *,
    k: int = 100,
) -> None:
    """Train and score ``protocol``'s windows with ``params`` and add its days to ``out``."""
    train, test = split(data, protocol)
    score = fit(data, train, params).predict_proba(data.inputs[test])[:, 1]
    ts, card, label = data.ts[test], data.card[test], data.label[test]
    kind = scenario[test] if scenario is not None else np.where(label > 0, 1, 0)
    known = data.inputs[test][:, MERCHANT_KNOWN] > 0  # the merchant's fraud known by then
    precision = []
    for ranked in daily_card_rankings(ts, card, label, score, protocol, k=k):
        out.days += 1
        out.cut_scores.append(ranked[:k][-1].score)
        for rank, r in enumerate(ranked):
            if rank < k:
                if r.fraud:
                    out.frauds_in_top[str(int(kind[r.fraud_row]))] += 1
                else:
                    out.legit_in_top += 1
            elif r.fraud:
                out.frauds_missed[str(int(kind[r.fraud_row]))] += 1
                out.missed_scores.append(r.score)
                out.missed_merchant_unknown += int(not known[r.best])
        precision.append(sum(r.fraud for r in ranked[:k]) / k)
    out.card_precision.append(float(np.mean(precision)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--transactions", required=True)
    ap.add_argument("--train-start", required=True, type=lambda s: datetime.strptime(s, "%Y-%m-%d"))
    ap.add_argument("--train-days", type=int, default=7)
    ap.add_argument("--delay-days", type=int, default=7)
    ap.add_argument("--test-days", type=int, default=7)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument(
        "--params", default='{"n_estimators": 100, "max_depth": 6, "learning_rate": 0.05}'
    )
    ap.add_argument("--test", action="store_true", help="analyse the test window instead")
    args = ap.parse_args()
    from features.offline import load_table

    raw = load_table(args.transactions)
    data = prepare(raw)
    scenario = None
    if "fraud_scenario" in raw.columns:
        by_id = raw.set_index(raw["transaction_id"].astype(str))["fraud_scenario"]
        scenario = by_id.reindex(data.transaction_id.astype(str)).fillna(0).to_numpy(np.int64)
    protocol = Protocol(args.train_start.date(), args.train_days, args.delay_days, args.test_days)
    first = protocol.delay_days + protocol.test_days
    windows = (
        [protocol]
        if args.test
        else [protocol.shifted(first + i * protocol.test_days) for i in range(args.folds)]
    )
    out = Breakdown()
    for window in windows:
        analyse(data, scenario, window, json.loads(args.params), out)
    print(json.dumps(out.summary(), indent=2))


if __name__ == "__main__":
    main()
