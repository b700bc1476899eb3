"""SQL tables of recommendations: widget configurations and the log of what was shown.

Storefront events that carry a ``recommendation_id`` (``interactions.recommendation_id``) join
the log, which gives click-through and conversion per widget.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from engine.commerce.schema import Base, Id, utcnow


class RecWidget(Base):
    __tablename__ = "rec_widgets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Recommendation(Base):
    __tablename__ = "recommendations"
    __table_args__ = (Index("ix_recommendations_widget_created", "widget", "created_at"),)
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    widget: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    session_id: Mapped[str | None] = mapped_column(String(128))
    context_sku: Mapped[str | None] = mapped_column(String(64))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    model_version: Mapped[str | None] = mapped_column(String(64))
    degraded: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel_id: Mapped[str | None] = mapped_column(String(64), index=True)


class RecommendationHour(Base):
    """Per widget, channel (``""``: none) and UTC hour in which recommendations were shown:
    how many, and the distinct storefront events sent back with their ids (views are clicks),
    whenever those came.  Kept up to date by the transactions that write the log and the
    events (``engine/recommend/rollup.py``), so widget stats read hours, not every row."""

    __tablename__ = "recommendation_hours"
    __table_args__ = (PrimaryKeyConstraint("widget", "channel", "hour"),)
    widget: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    hour: Mapped[str] = mapped_column(String(13))  # "YYYY-MM-DD HH", UTC
    impressions: Mapped[int] = mapped_column(Integer, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    add_to_carts: Mapped[int] = mapped_column(Integer, default=0)
    purchases: Mapped[int] = mapped_column(Integer, default=0)
