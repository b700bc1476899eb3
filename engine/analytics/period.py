"""The reporting period ``[start, end)`` of a KPI or funnel request, and the SQL day of a
timestamp on each backend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func

from engine.errors import ValidationError

DEFAULT_DAYS = 30
MAX_DAYS = 366


@dataclass(frozen=True, slots=True)
class Period:
    """Half-open: ``start`` is included, ``end`` is not (both aware UTC)."""

    start: datetime
    end: datetime

    def days(self) -> list[date]:
        """Every UTC day the period touches, oldest first."""
        first, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def parse_when(value: str, field: str) -> datetime:
    """An ISO date (midnight UTC) or datetime (UTC if it names no zone)."""
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"{field} must be an ISO date (2026-05-01) or datetime (2026-05-01T12:00:00Z)",
            field=field,
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_period(start: str | None, end: str | None, now: datetime) -> Period:
    """``from``/``to`` of a request; default: the ``DEFAULT_DAYS`` days ending ``now``."""
    until = parse_when(end, "to") if end else now.astimezone(UTC)
    since = parse_when(start, "from") if start else until - timedelta(days=DEFAULT_DAYS)
    if since >= until:
        raise ValidationError("from must be before to", field="from")
    if until - since > timedelta(days=MAX_DAYS):
        raise ValidationError(f"the period is at most {MAX_DAYS} days", field="from")
    return Period(since, until)


def sql_day(column: Any, dialect: str) -> Any:
    """``YYYY-MM-DD`` of a UTC timestamp column (SQLite stores them naive UTC)."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)
