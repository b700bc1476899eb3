"""SQL table of customer segments: one row per scored customer, replaced whole by each batch
run (``CustomerSegmentation.compute``).  It shares the commerce core's metadata."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from engine.commerce.schema import Base


class CustomerSegment(Base):
    __tablename__ = "customer_segments"
    __table_args__ = (
        Index("ix_customer_segments_segment", "segment"),
        Index("ix_customer_segments_monetary", "monetary"),
    )
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    recency_days: Mapped[int] = mapped_column(Integer)
    frequency: Mapped[int] = mapped_column(Integer)
    monetary: Mapped[Decimal]  # in the store currency
    r: Mapped[int] = mapped_column(SmallInteger)
    f: Mapped[int] = mapped_column(SmallInteger)
    m: Mapped[int] = mapped_column(SmallInteger)
    segment: Mapped[str] = mapped_column(String(32))
    computed_at: Mapped[datetime]
