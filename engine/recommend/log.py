"""The log of what each widget showed, and what shoppers did with it.

Every response is logged (written behind the request) under its ``recommendation_id``; storefront
events sent back with that id (``POST /v1/events``) join it, which gives click-through and
conversion per widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select

from engine.commerce.db import Database
from engine.commerce.schema import Interaction
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

    def public(self) -> dict[str, Any]:
        return {
            "recommendation_id": self.recommendation_id,
            "widget": self.widget,
            "items": [
                {"sku": i.sku, "score": round(i.score, 6), "reason": i.reason} for i in self.items
            ],
            "model_version": self.model_version,
            "degraded": self.degraded,
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
    }


class RecommendationLog(WriteBehind[Recommendation]):
    def __init__(self, db: Database) -> None:
        super().__init__(db, RecommendationRow, ["id"], _row, name="recommendation-log")

    def stats(self, widget: str, *, days: int = 7) -> dict[str, Any]:
        """Impressions, clicks (views), add-to-carts and purchases that came back with the
        widget's recommendation ids, over the last ``days``."""
        self.flush()
        since = datetime.now(UTC) - timedelta(days=days)
        recs = and_(RecommendationRow.widget == widget, RecommendationRow.created_at >= since)
        with self.db.transaction(readonly=True) as s:
            impressions = s.scalar(select(func.count()).select_from(RecommendationRow).where(recs))
            counts = dict(
                s.execute(
                    select(Interaction.type, func.count(func.distinct(Interaction.event_id)))
                    .join(RecommendationRow, RecommendationRow.id == Interaction.recommendation_id)
                    .where(recs)
                    .group_by(Interaction.type)
                ).all()
            )
        shown = int(impressions or 0)
        clicks, carts = int(counts.get("view", 0)), int(counts.get("add_to_cart", 0))
        purchases = int(counts.get("purchase", 0))
        return {
            "widget": widget,
            "days": days,
            "impressions": shown,
            "clicks": clicks,
            "add_to_carts": carts,
            "purchases": purchases,
            "click_through_rate": clicks / shown if shown else 0.0,
            "conversion_rate": purchases / shown if shown else 0.0,
        }
