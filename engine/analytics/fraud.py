"""The fraud section: decisions by outcome, the fraud rate of payments, chargebacks.

Decisions count by transaction time (``tx_at``) and by the ``channel`` the checkout sent with
the request.  A payment is labelled fraud when a chargeback with a fraud reason was filed on
it, or a fraud label (``fraud``, ``chargeback``) was given to the decision of its
``transaction_id``, whenever either arrived.  Chargebacks count by filing time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import case, exists, func, or_, select
from sqlalchemy.orm import Session

from engine.analytics.period import Period, sql_day
from engine.analytics.sales import to_base, within
from engine.commerce.schema import Chargeback, Order, Payment
from engine.fraud.schema import FraudDecision, FraudFeedback
from engine.fraud.service import FRAUD_LABELS

OUTCOMES = ("allow", "review", "block", "challenge")
# chargeback reasons that label the payment fraud (as features.ingest.FRAUD_REASONS)
FRAUD_REASONS = ("fraudulent",)


@dataclass(frozen=True)
class FraudStats:
    outcomes: dict[str, int]
    per_day: dict[str, int]
    payments: int
    fraud_payments: int
    chargebacks: int
    chargeback_amount: Decimal

    def public(self) -> dict[str, Any]:
        return {
            "decisions": sum(self.outcomes.values()),
            "outcomes": self.outcomes,
            "fraud_rate": self.fraud_payments / self.payments if self.payments else 0.0,
            "chargebacks": self.chargebacks,
            "chargeback_amount": round(float(self.chargeback_amount), 2),
        }


def fraud_stats(
    s: Session, period: Period, channel: str | None, rates: Mapping[str, Decimal]
) -> FraudStats:
    outcomes, per_day = _decisions(s, period, channel)
    payments, labelled = _payments(s, period, channel)
    chargebacks, amount = _chargebacks(s, period, channel, rates)
    return FraudStats(outcomes, per_day, payments, labelled, chargebacks, amount)


def _decisions(
    s: Session, period: Period, channel: str | None
) -> tuple[dict[str, int], dict[str, int]]:
    where = [within(FraudDecision.tx_at, period)]
    if channel is not None:
        where.append(FraudDecision.attributes["channel"].as_string() == channel)
    day = sql_day(FraudDecision.tx_at, s.get_bind().dialect.name)
    rows = s.execute(
        select(day, FraudDecision.outcome, func.count())
        .where(*where)
        .group_by(day, FraudDecision.outcome)
    ).all()
    outcomes = dict.fromkeys(OUTCOMES, 0)
    per_day: dict[str, int] = {}
    for when, outcome, n in rows:
        outcomes[outcome] = outcomes.get(outcome, 0) + int(n)
        per_day[str(when)] = per_day.get(str(when), 0) + int(n)
    return outcomes, per_day


def _payments(s: Session, period: Period, channel: str | None) -> tuple[int, int]:
    charged_back = exists().where(
        Chargeback.payment_id == Payment.id, Chargeback.reason.in_(FRAUD_REASONS)
    )
    reported = exists().where(
        FraudFeedback.transaction_id == Payment.transaction_id,
        FraudFeedback.label.in_(sorted(FRAUD_LABELS)),
    )
    labelled = func.sum(case((or_(charged_back, reported), 1), else_=0))
    stmt = select(func.count(), labelled).select_from(Payment)
    stmt = stmt.where(within(Payment.created_at, period))
    if channel is not None:
        stmt = stmt.join(Order, Order.id == Payment.order_id).where(Order.channel_id == channel)
    total, fraud = s.execute(stmt).one()
    return int(total or 0), int(fraud or 0)


def _chargebacks(
    s: Session, period: Period, channel: str | None, rates: Mapping[str, Decimal]
) -> tuple[int, Decimal]:
    stmt = (
        select(Payment.currency, func.count(), func.sum(Chargeback.amount))
        .select_from(Chargeback)
        .join(Payment, Payment.id == Chargeback.payment_id)
        .where(within(Chargeback.filed_at, period))
        .group_by(Payment.currency)
    )
    if channel is not None:
        stmt = stmt.join(Order, Order.id == Chargeback.order_id).where(Order.channel_id == channel)
    count, amount = 0, Decimal(0)
    for currency, n, total in s.execute(stmt):
        count += int(n)
        amount += to_base(Decimal(total or 0), currency, rates) or Decimal(0)
    return count, amount
