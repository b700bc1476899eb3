"""SQL tables of experiments: their definitions and who was exposed to which variant.

``experiments.running_target`` is ``"{target_kind}:{target}"`` while the experiment runs and
NULL otherwise; its unique index makes "at most one running experiment per target" hold even
when two replicas start experiments at the same moment.  ``experiment_exposures`` holds one row
per (experiment, customer): the variant, the first exposure (conversions count from then) and
how many times the customer was exposed.  No foreign key to customers: storefronts may send ids
the commerce core has not seen yet (experiments are never deleted, so the key always resolves).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from engine.commerce.schema import Base, utcnow


class ExperimentRow(Base):
    __tablename__ = "experiments"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    target_kind: Mapped[str] = mapped_column(String(16))  # widget | recommender | price_rule
    target: Mapped[str] = mapped_column(String(64))
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), index=True)  # draft | running | stopped
    running_target: Mapped[str | None] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)


class ExperimentExposure(Base):
    __tablename__ = "experiment_exposures"
    __table_args__ = (Index("ix_experiment_exposures_key_variant", "experiment_key", "variant"),)
    experiment_key: Mapped[str] = mapped_column(ForeignKey("experiments.key"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64))
    first_exposed_at: Mapped[datetime]
    exposures: Mapped[int] = mapped_column(Integer, default=1)
