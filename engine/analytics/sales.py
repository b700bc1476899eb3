"""Orders, revenue, visitors and buyers: SQL aggregates per day (and currency), valued in the
base currency through the FX table.

Counted orders are those created in the period whose status is ``placed``, ``paid``,
``fulfilled``, ``shipped`` or ``delivered`` (booked and not taken back): ``cancelled`` and
``refunded`` orders are neither orders nor revenue.  An order in a currency the FX table has no
rate for is counted but cannot be valued: it is left out of revenue and of the average order
value's denominator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, literal, select
from sqlalchemy.orm import Session

from engine.analytics.period import Period, sql_day
from engine.commerce.domain import BOUGHT, OrderStatus
from engine.commerce.schema import Interaction, Order
from engine.pricing.schema import FxRate

COUNTED = BOUGHT | {OrderStatus.PLACED}  # placed and not (yet) cancelled: sold


@dataclass
class DayTotals:
    orders: int = 0
    valued: int = 0  # orders whose currency could be converted
    revenue: Decimal = Decimal(0)


@dataclass
class Sales:
    days: dict[str, DayTotals] = field(default_factory=dict)

    @property
    def orders(self) -> int:
        return sum(d.orders for d in self.days.values())

    @property
    def revenue(self) -> Decimal:
        return sum((d.revenue for d in self.days.values()), Decimal(0))

    @property
    def average_order_value(self) -> float:
        valued = sum(d.valued for d in self.days.values())
        return float(self.revenue / valued) if valued else 0.0


def within(column: Any, period: Period) -> Any:
    return and_(column >= period.start, column < period.end)


def counted_orders(period: Period, channel: str | None) -> list[Any]:
    where = [within(Order.created_at, period), Order.status.in_(sorted(COUNTED))]
    if channel is not None:
        where.append(Order.channel_id == channel)
    return where


def visitor_key() -> Any:
    """A visitor: the customer, or else the session (prefixed so the two never collide)."""
    return func.coalesce(
        literal("c:") + Interaction.customer_id, literal("s:") + Interaction.session_id
    )


def storefront_events(period: Period, channel: str | None) -> list[Any]:
    where = [within(Interaction.ts, period)]
    if channel is not None:
        where.append(Interaction.channel_id == channel)
    return where


def fx_rates(s: Session, base: str) -> dict[str, Decimal]:
    """Units of each currency per base unit (the base itself: 1)."""
    rates = {code: Decimal(rate) for code, rate in s.execute(select(FxRate.currency, FxRate.rate))}
    return {**{c: r for c, r in rates.items() if r > 0}, base: Decimal(1)}


def to_base(amount: Decimal, currency: str, rates: Mapping[str, Decimal]) -> Decimal | None:
    rate = rates.get(currency)
    return None if rate is None else Decimal(amount) / rate


def sales(s: Session, period: Period, channel: str | None, rates: Mapping[str, Decimal]) -> Sales:
    day = sql_day(Order.created_at, s.get_bind().dialect.name)
    rows = s.execute(
        select(day, Order.currency, func.count(), func.sum(Order.total))
        .where(*counted_orders(period, channel))
        .group_by(day, Order.currency)
    ).all()
    out = Sales()
    for when, currency, n, total in rows:
        totals = out.days.setdefault(str(when), DayTotals())
        totals.orders += int(n)
        value = to_base(Decimal(total or 0), currency, rates)
        if value is not None:
            totals.valued += int(n)
            totals.revenue += value
    return out


def buyers(s: Session, period: Period, channel: str | None) -> int:
    found = s.scalar(
        select(func.count(func.distinct(Order.customer_id))).where(*counted_orders(period, channel))
    )
    return int(found or 0)


def visitors(s: Session, period: Period, channel: str | None) -> tuple[int, dict[str, int]]:
    """Distinct visitors in the period, and per day."""
    key = visitor_key()
    where = storefront_events(period, channel)
    total = s.scalar(select(func.count(func.distinct(key))).where(*where))
    day = sql_day(Interaction.ts, s.get_bind().dialect.name)
    per_day = s.execute(
        select(day, func.count(func.distinct(key))).where(*where).group_by(day)
    ).all()
    return int(total or 0), {str(d): int(n) for d, n in per_day}
