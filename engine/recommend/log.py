"""The log of what each widget showed, and what shoppers did with it.

Every response is logged (written behind the request) under its ``recommendation_id``; storefront
events sent back with that id (``POST /v1/events``) join it, which gives click-through and
conversion per widget.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.commerce.schema import Interaction
from engine.recommend import rollup
from engine.recommend.schema import Recommendation as RecommendationRow
from engine.writebehind import WriteBehind


@dataclass(frozen=True, slots=True)
class RecItem:
    sku: str
    score: float
    reason: str  # personalized | similar | trending | promoted


@dataclass(frozen=True)
class Recommendation:
    recommendation_id: str
    widget: str
    customer_id: str | None
    session_id: str | None
    context_sku: str | None
    items: tuple[RecItem, ...]
    model_version: str | None
    degraded: bool
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    channel: str | None = None
    experiment: dict[str, str] | None = None  # {key, variant} of a running experiment

    def public(self) -> dict[str, Any]:
        return {
            "recommendation_id": self.recommendation_id,
            "widget": self.widget,
            "items": [
                {"sku": i.sku, "score": round(i.score, 6), "reason": i.reason} for i in self.items
            ],
            "model_version": self.model_version,
            "degraded": self.degraded,
            "experiment": self.experiment,
        }


def _row(r: Recommendation) -> dict[str, Any]:
    return {
        "id": r.recommendation_id,
        "widget": r.widget,
        "customer_id": r.customer_id,
        "session_id": r.session_id,
        "context_sku": r.context_sku,
        "items": [{"sku": i.sku, "score": i.score, "reason": i.reason} for i in r.items],
        "model_version": r.model_version,
        "degraded": r.degraded,
        "created_at": r.created_at,
        "channel_id": r.channel,
    }


class RecommendationLog(WriteBehind[Recommendation]):
    def __init__(self, db: Database) -> None:
        super().__init__(db, RecommendationRow, ["id"], _row, name="recommendation-log")

    def _within(self, session: Session, rows: list[dict[str, Any]]) -> None:
        rollup.shown(session, rows)  # the hourly counts, in the same transaction

    def stats(self, widget: str, *, days: int = 7) -> dict[str, Any]:
        """Impressions, clicks (views), add-to-carts and purchases that came back with the
        widget's recommendation ids, over the last ``days`` (in whole UTC hours: from the
        start of the hour ``days`` ago, read from the hourly counts alone)."""
        self.flush()
        since = _floor_hour(datetime.now(UTC) - timedelta(days=days))
        with self.db.transaction(readonly=True) as s:
            found = widget_stats(s, since=since, widget=widget)
        return {"widget": widget, "days": days, **(found[0] if found else _rates(widget, 0, {}))}


def widget_stats(
    session: Session,
    *,
    since: datetime,
    until: datetime | None = None,
    channel: str | None = None,
    widget: str | None = None,
) -> list[dict[str, Any]]:
    """Per widget (by name): recommendations shown in ``[since, until)`` (of ``channel``;
    ``until`` None: up to now), and the distinct storefront events sent back with their ids
    (views are clicks), whenever those came.  Whole UTC hours are read from the hourly
    counts (``engine/recommend/rollup.py``), a partial first and last hour from the rows; with
    no ``until`` the current hour is a whole one (nothing is shown later than now)."""
    first = _next_hour(since)
    last = None if until is None else _floor_hour(until)
    if last is not None and first >= last:  # within one hour, or two partial ones
        parts = [_shown(session, since, until, channel, widget)]
    else:
        upto = None if last is None else rollup.hour_of(last)
        parts = [
            _shown(session, since, first, channel, widget),
            rollup.hours(session, rollup.hour_of(first), upto, channel=channel, widget=widget),
        ]
        if last is not None:
            parts.append(_shown(session, last, until, channel, widget))
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for part in parts:
        for name, counts in part.items():
            found[name].update(counts)
    return [
        _rates(name, c["impressions"], {k: c[k] for k in rollup.OUTCOMES.values()})
        for name, c in sorted(found.items())
        if c["impressions"]
    ]


def _shown(
    session: Session,
    since: datetime,
    until: datetime | None,
    channel: str | None,
    widget: str | None,
) -> dict[str, Counter[str]]:
    """The counts of ``[since, until)`` from the log and the events, per widget."""
    if until is not None and until <= since:
        return {}
    where = [RecommendationRow.created_at >= since]
    if until is not None:
        where.append(RecommendationRow.created_at < until)
    if channel is not None:
        where.append(RecommendationRow.channel_id == channel)
    if widget is not None:
        where.append(RecommendationRow.widget == widget)
    counts = [
        func.count(
            func.distinct(case((Interaction.type == kind, Interaction.event_id), else_=None))
        )
        for kind in rollup.OUTCOMES
    ]
    rows = session.execute(
        select(RecommendationRow.widget, func.count(func.distinct(RecommendationRow.id)), *counts)
        .outerjoin(Interaction, Interaction.recommendation_id == RecommendationRow.id)
        .where(and_(*where))
        .group_by(RecommendationRow.widget)
    ).all()
    return {
        name: Counter(dict(zip(rollup.COUNTS, map(int, rest), strict=True))) for name, *rest in rows
    }


def _floor_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _next_hour(t: datetime) -> datetime:
    floor = _floor_hour(t)
    return floor if floor == t else floor + timedelta(hours=1)


def _rates(widget: str, shown: int, counts: dict[str, int]) -> dict[str, Any]:
    clicks, purchases = counts.get("clicks", 0), counts.get("purchases", 0)
    return {
        "widget": widget,
        "impressions": shown,
        "clicks": clicks,
        "add_to_carts": counts.get("add_to_carts", 0),
        "purchases": purchases,
        "click_through_rate": clicks / shown if shown else 0.0,
        "conversion_rate": purchases / shown if shown else 0.0,
    }
