"""``Analytics``: the KPIs and the funnel of one period and channel, as the dashboard reads
them (``GET /v1/analytics/kpis`` and ``/funnel``; definitions in docs/analytics.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.analytics.fraud import fraud_stats
from engine.analytics.funnel import funnel_counts, funnel_steps
from engine.analytics.period import Period, parse_period
from engine.analytics.sales import Sales, buyers, fx_rates, sales, visitors, within
from engine.commerce.db import Database
from engine.commerce.interactions import KnownChannels
from engine.commerce.schema import utcnow
from engine.pricing.schema import PriceChange
from engine.recommend.log import widget_stats


class Analytics:
    """``flush``: write-behind logs (decisions, recommendations) to flush before reading."""

    def __init__(
        self,
        db: Database,
        channels: KnownChannels,
        *,
        base_currency: str = "EUR",
        flush: Sequence[Callable[[], None]] = (),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.channels = channels
        self.base_currency = base_currency
        self.flush = tuple(flush)
        self.clock = clock

    def kpis(
        self, start: str | None = None, end: str | None = None, channel: str | None = None
    ) -> dict[str, Any]:
        period = self._period(start, end, channel)
        with self.db.transaction(readonly=True) as s:
            rates = fx_rates(s, self.base_currency)
            sold = sales(s, period, channel, rates)
            n_buyers = buyers(s, period, channel)
            n_visitors, visitors_per_day = visitors(s, period, channel)
            fraud = fraud_stats(s, period, channel, rates)
            recs = widget_stats(s, since=period.start, until=period.end, channel=channel)
            prices = _price_changes(s, period)
        series = _series(period, sold, visitors_per_day, fraud.per_day)
        return {
            **self._head(period, channel),
            "currency": self.base_currency,
            "orders": sold.orders,
            "revenue": round(float(sold.revenue), 2),
            "average_order_value": round(sold.average_order_value, 2),
            "visitors": n_visitors,
            "buyers": n_buyers,
            "conversion_rate": n_buyers / n_visitors if n_visitors else 0.0,
            "fraud": fraud.public(),
            "recommendations": recs,
            "price_changes": {"count": sum(prices.values()), "by_strategy": prices},
            "series": series,
        }

    def funnel(
        self, start: str | None = None, end: str | None = None, channel: str | None = None
    ) -> dict[str, Any]:
        period = self._period(start, end, channel)
        with self.db.transaction(readonly=True) as s:
            counts = funnel_counts(s, period, channel)
        return {**self._head(period, channel), "steps": funnel_steps(counts)}

    def _period(self, start: str | None, end: str | None, channel: str | None) -> Period:
        period = parse_period(start, end, self.clock())
        self.channels.check(channel)
        for flush in self.flush:
            flush()
        return period

    @staticmethod
    def _head(period: Period, channel: str | None) -> dict[str, Any]:
        return {"from": period.start.isoformat(), "to": period.end.isoformat(), "channel": channel}


def _price_changes(s: Session, period: Period) -> dict[str, int]:
    """Price changes are store-wide: the channel does not filter them."""
    rows = s.execute(
        select(PriceChange.strategy, func.count())
        .where(within(PriceChange.created_at, period))
        .group_by(PriceChange.strategy)
        .order_by(PriceChange.strategy)
    ).all()
    return {str(strategy): int(n) for strategy, n in rows}


def _series(
    period: Period, sold: Sales, visitors_per_day: dict[str, int], decisions: dict[str, int]
) -> list[dict[str, Any]]:
    out = []
    for day in period.days():
        key = day.isoformat()
        totals = sold.days.get(key)
        out.append(
            {
                "day": key,
                "orders": totals.orders if totals else 0,
                "revenue": round(float(totals.revenue), 2) if totals else 0.0,
                "visitors": visitors_per_day.get(key, 0),
                "fraud_decisions": decisions.get(key, 0),
            }
        )
    return out
