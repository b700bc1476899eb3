"""Customer segmentation in batch: RFM scores and segments for every customer who bought in the
lookback window, kept in ``customer_segments`` and as ``customers.attributes["rfm_segment"]``
(what pricing rules and widget filters read).

What counts as bought: orders ``paid``, ``fulfilled``, ``shipped`` or ``delivered``.  A
``placed`` order is not paid yet; ``cancelled`` and ``refunded`` ones were not bought.  Monetary
value is in the store currency: other currencies convert through the pricing FX table
(``fx_rates``: units per store-currency unit); an order in a currency without a rate counts for
recency and frequency but not for monetary value (``unconverted_orders`` in the summary).

``compute`` replaces every row and every attribute in one transaction: a reader sees the old
segments or the new ones, never a mix, and a failure leaves the old ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from typing import Any

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.commerce.domain import BOUGHT, money
from engine.commerce.schema import Customer, Order
from engine.crm import rfm
from engine.crm.profiles import RFM_ATTRIBUTE, CustomerSegments
from engine.crm.schema import CustomerSegment
from engine.errors import ValidationError
from engine.pricing.schema import FxRate

DEFAULT_LOOKBACK_DAYS = 365
MAX_LOOKBACK_DAYS = 3650
MAX_HIGH_VALUE = 500
CHUNK = 5_000
DAY_S = 86_400


class CustomerSegmentation:
    def __init__(
        self,
        db: Database,
        *,
        base_currency: str = "EUR",
        profiles: CustomerSegments | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.base_currency = base_currency
        self.profiles = profiles
        self.clock = clock

    # --- the batch -----------------------------------------------------------------------------
    def compute(
        self, as_of: date | None = None, lookback_days: int = DEFAULT_LOOKBACK_DAYS
    ) -> dict[str, Any]:
        """Score every customer with a bought order in ``(as_of - lookback_days, as_of]`` and
        replace the stored segments; returns counts per segment and the duration.  ``as_of``
        defaults to now; a date means the end of that day (UTC)."""
        started = time.perf_counter()
        now = self.clock()
        as_of = _check_as_of(as_of, now)
        _check_lookback(lookback_days)
        with self.db.transaction() as s:
            ids, recency, frequency, monetary, unconverted = self._aggregate(
                s, as_of, lookback_days
            )
            scores = rfm.score(recency, frequency, [float(m) for m in monetary])
            segments = [str(x) for x in scores.segment]
            rows = [
                {
                    "customer_id": cid,
                    "recency_days": recency[i],
                    "frequency": frequency[i],
                    "monetary": monetary[i],
                    "r": int(scores.r[i]),
                    "f": int(scores.f[i]),
                    "m": int(scores.m[i]),
                    "segment": segments[i],
                    "computed_at": now,
                }
                for i, cid in enumerate(ids)
            ]
            s.execute(delete(CustomerSegment))
            for start in range(0, len(rows), CHUNK):
                s.execute(insert(CustomerSegment), rows[start : start + CHUNK])
            written, removed = _write_attributes(s, dict(zip(ids, segments, strict=True)))
        if self.profiles is not None:
            self.profiles.invalidate()
        counts = dict.fromkeys(rfm.SEGMENTS, 0)
        for name in segments:
            counts[name] += 1
        return {
            "computed_at": now,
            "as_of": as_of,
            "lookback_days": lookback_days,
            "customers": len(ids),
            "segments": counts,
            "unconverted_orders": unconverted,
            "attributes_written": written,
            "attributes_removed": removed,
            "duration_ms": round((time.perf_counter() - started) * 1e3, 1),
        }

    def _aggregate(
        self, s: Session, as_of: datetime, lookback_days: int
    ) -> tuple[list[str], list[int], list[int], list[Decimal], int]:
        """One GROUP BY over the window's bought orders: last order, count, value."""
        foreign = Order.currency != self.base_currency
        amount = case((foreign, Order.total / FxRate.rate), else_=Order.total)
        unconverted = case((foreign & FxRate.rate.is_(None), 1), else_=0)
        stmt = (
            select(
                Order.customer_id,
                func.max(Order.created_at),
                func.count(),
                func.coalesce(func.sum(amount), 0),
                func.sum(unconverted),
            )
            .outerjoin(FxRate, FxRate.currency == Order.currency)
            .where(
                Order.status.in_(sorted(BOUGHT)),
                Order.created_at > as_of - timedelta(days=lookback_days),
                Order.created_at <= as_of,
            )
            .group_by(Order.customer_id)
            .order_by(Order.customer_id)
        )
        ids: list[str] = []
        recency: list[int] = []
        frequency: list[int] = []
        monetary: list[Decimal] = []
        missing = 0
        for cid, last, n, value, skipped in s.execute(stmt):
            ids.append(str(cid))
            recency.append(int((as_of - last).total_seconds() // DAY_S))
            frequency.append(int(n))
            monetary.append(money(Decimal(str(value))))
            missing += int(skipped or 0)
        return ids, recency, frequency, monetary, missing

    # --- reads ---------------------------------------------------------------------------------
    def get(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's stored scores and segment (None: not scored)."""
        with self.db.transaction(readonly=True) as s:
            row = s.get(CustomerSegment, customer_id)
            return _row(row) if row is not None else None

    def summary(self) -> dict[str, Any]:
        """Per segment (every segment, in ``rfm.SEGMENTS`` order): customers, their share of
        the scored customers, average monetary value and frequency."""
        stmt = select(
            CustomerSegment.segment,
            func.count(),
            func.avg(CustomerSegment.monetary),
            func.avg(CustomerSegment.frequency),
            func.max(CustomerSegment.computed_at),
        ).group_by(CustomerSegment.segment)
        with self.db.transaction(readonly=True) as s:
            found = {str(r[0]): r for r in s.execute(stmt)}
        total = sum(int(r[1]) for r in found.values())
        stamps = [r[4] for r in found.values() if r[4] is not None]
        segments = []
        for name in rfm.SEGMENTS:
            row = found.get(name)
            n = int(row[1]) if row else 0
            segments.append(
                {
                    "segment": name,
                    "customers": n,
                    "share": round(n / total, 4) if total else 0.0,
                    "avg_monetary": round(float(row[2]), 2) if row else 0.0,
                    "avg_frequency": round(float(row[3]), 2) if row else 0.0,
                }
            )
        return {"computed_at": max(stamps) if stamps else None, "segments": segments}

    def high_value(self, limit: int = 50, segment: str | None = None) -> list[dict[str, Any]]:
        """The scored customers with the highest monetary value (ties: the customer id),
        with their email and name; only ``segment``'s when given."""
        if isinstance(limit, bool) or not 1 <= limit <= MAX_HIGH_VALUE:
            raise ValidationError(f"limit must be 1 to {MAX_HIGH_VALUE}", field="limit")
        check_segment(segment, "segment")
        stmt = (
            select(CustomerSegment, Customer.email, Customer.name)
            .join(Customer, Customer.id == CustomerSegment.customer_id)
            .order_by(CustomerSegment.monetary.desc(), CustomerSegment.customer_id)
            .limit(limit)
        )
        if segment is not None:
            stmt = stmt.where(CustomerSegment.segment == segment)
        with self.db.transaction(readonly=True) as s:
            return [
                {**_row(row), "email": email, "name": name} for row, email, name in s.execute(stmt)
            ]


def check_segment(segment: str | None, field: str) -> None:
    if segment is not None and segment not in rfm.SEGMENTS:
        raise ValidationError(
            f"unknown segment {segment!r}; one of {', '.join(rfm.SEGMENTS)}",
            field=field,
            code="unknown_segment",
        )


def parse_as_of(text: str | None) -> date | None:
    """``as_of`` as given on the command line or in a request: an ISO date (its end, UTC) or an
    ISO datetime with a time zone (checked by ``compute``)."""
    if text is None:
        return None
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    raise ValidationError("as_of is an ISO date or datetime", field="as_of")


def _check_as_of(as_of: date | None, now: datetime) -> datetime:
    """``as_of`` as an aware UTC datetime; a date means the end of that day (UTC)."""
    if as_of is None:
        return now
    if not isinstance(as_of, datetime):
        as_of = datetime.combine(as_of + timedelta(days=1), dt_time.min, UTC)
    if as_of.tzinfo is None:
        raise ValidationError("as_of needs a time zone (e.g. 2026-01-01T00:00Z)", field="as_of")
    if as_of > now + timedelta(days=1):
        raise ValidationError("as_of is in the future", field="as_of")
    return as_of.astimezone(UTC)


def _check_lookback(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_LOOKBACK_DAYS:
        raise ValidationError(
            f"lookback_days must be a whole number from 1 to {MAX_LOOKBACK_DAYS}",
            field="lookback_days",
        )


def _write_attributes(s: Session, segments: Mapping[str, str]) -> tuple[int, int]:
    """Set ``attributes["rfm_segment"]`` of the scored customers and remove it from every
    other customer; only rows that change are written.  Returns (written, removed)."""
    rows = s.execute(select(Customer.id, Customer.attributes).with_for_update(key_share=True)).all()
    changes: list[dict[str, Any]] = []
    written = removed = 0
    for cid, attributes in rows:
        attributes = dict(attributes or {})
        new = segments.get(cid)
        if attributes.get(RFM_ATTRIBUTE) == new:
            continue
        if new is None:
            attributes.pop(RFM_ATTRIBUTE, None)
            removed += 1
        else:
            attributes[RFM_ATTRIBUTE] = new
            written += 1
        changes.append({"id": cid, "attributes": attributes})
    for start in range(0, len(changes), CHUNK):
        s.execute(update(Customer), changes[start : start + CHUNK])
    return written, removed


def _row(row: CustomerSegment) -> dict[str, Any]:
    return {
        "customer_id": row.customer_id,
        "segment": row.segment,
        "r": row.r,
        "f": row.f,
        "m": row.m,
        "recency_days": row.recency_days,
        "frequency": row.frequency,
        "monetary": float(row.monetary),
        "computed_at": row.computed_at,
    }
