"""The shadow log: a challenger's output beside the champion's for the same request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from engine.commerce.schema import Base, Id, utcnow


class ModelShadow(Base):
    __tablename__ = "model_shadow"
    __table_args__ = (Index("ix_model_shadow_model_created", "model", "created_at"),)
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))  # the registered model's name
    request_id: Mapped[str] = mapped_column(String(64), index=True)  # decision / recommendation
    unit: Mapped[str | None] = mapped_column(String(128))  # customer (or session) id
    champion_version: Mapped[str] = mapped_column(String(64))
    challenger_version: Mapped[str] = mapped_column(String(64))
    champion: Mapped[dict[str, Any]] = mapped_column(JSON)  # what was answered
    challenger: Mapped[dict[str, Any]] = mapped_column(JSON)  # what the challenger would have
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
