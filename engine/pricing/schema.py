"""SQL tables of pricing: rules and store defaults, each SKU's current price, the audit trail of
every change, suggestions awaiting an admin, the FX table, and elasticity fits.

They share the commerce core's metadata (one database, one Alembic history).  ``sku_prices`` is
the price a SKU sells at now (no row yet: its list price); ``price_changes`` holds one row per
change, whoever made it, and is never updated.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from engine.commerce.schema import Base, Id, utcnow

_BigId = BigInteger().with_variant(Integer, "sqlite")


class PricingRuleRow(Base):
    __tablename__ = "pricing_rules"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PricingSetting(Base):
    """Store-wide pricing settings (``guardrails``: the defaults every rule starts from)."""

    __tablename__ = "pricing_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SkuPrice(Base):
    __tablename__ = "sku_prices"
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    price: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    rule: Mapped[str | None] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(16))
    bounded_by: Mapped[str | None] = mapped_column(String(16))
    changed_at: Mapped[datetime]
    open_price: Mapped[Decimal]  # the price the UTC day ``open_day`` opened with
    open_day: Mapped[int] = mapped_column(Integer)  # days since 1970-01-01 (UTC)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class PriceChange(Base):
    __tablename__ = "price_changes"
    __table_args__ = (Index("ix_price_changes_sku_created", "sku", "created_at"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    old_price: Mapped[Decimal]
    new_price: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    rule: Mapped[str | None] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(16))
    bounded_by: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    suggestion_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class PriceSuggestion(Base):
    __tablename__ = "price_suggestions"
    __table_args__ = (Index("ix_price_suggestions_status_created", "status", "created_at"),)
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), index=True)
    current_price: Mapped[Decimal]
    suggested_price: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    rule: Mapped[str | None] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(16))
    bounded_by: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending approved rejected superseded
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)


class FxRate(Base):
    """Units of ``currency`` per one unit of the store's base currency."""

    __tablename__ = "fx_rates"
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    rate: Mapped[Decimal] = mapped_column(Numeric(18, 8))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="admin")


class ElasticityFit(Base):
    __tablename__ = "elasticity_fits"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    source: Mapped[str] = mapped_column(String(300))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    history_from: Mapped[datetime | None]
    history_to: Mapped[datetime | None]
    rows: Mapped[int] = mapped_column(Integer)


class ElasticityEstimateRow(Base):
    __tablename__ = "elasticity_estimates"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    fit_id: Mapped[str] = mapped_column(ForeignKey("elasticity_fits.id"), index=True)
    level: Mapped[str] = mapped_column(String(16))  # category | sku
    key: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(200))
    elasticity: Mapped[float | None] = mapped_column(Float)
    std_err: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    n_obs: Mapped[int] = mapped_column(Integer)
    units: Mapped[int] = mapped_column(Integer)
    price_variation: Mapped[float | None] = mapped_column(Float)
    fit_quality: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
