"""SQL tables of fraud decisions: the decision log, feedback, rules and lists.

They share the commerce core's metadata (one database, one Alembic history).  The decision log
is what retraining joins labels to: a decision's ``inputs`` are the model inputs exactly as
scored, so a model can be retrained on logged features as well as on recomputed ones.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from engine.commerce.schema import Base, Id, utcnow


class FraudDecision(Base):
    __tablename__ = "fraud_decisions"
    __table_args__ = (Index("ix_fraud_decisions_customer_created", "customer_id", "created_at"),)
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(128), unique=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    merchant_id: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    tx_at: Mapped[datetime] = mapped_column(index=True)
    probability: Mapped[float] = mapped_column(Float)
    risk_score: Mapped[int] = mapped_column(Integer)
    risk_level: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    rule_id: Mapped[str | None] = mapped_column(String(64))
    matched_rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    model_version: Mapped[str] = mapped_column(String(64))
    features_degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    inputs: Mapped[list[float]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class FraudFeedback(Base):
    """A label for a decision (analyst review, customer report, chargeback); one row per
    decision and label (the same label sent again is the same feedback)."""

    __tablename__ = "fraud_feedback"
    __table_args__ = (UniqueConstraint("decision_id", "label"),)
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("fraud_decisions.id"), index=True)
    transaction_id: Mapped[str] = mapped_column(String(128), index=True)
    label: Mapped[str] = mapped_column(String(16))
    reported_at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FraudRule(Base):
    __tablename__ = "fraud_rules"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    expression: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=100)
    mode: Mapped[str] = mapped_column(String(16), default="active")
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class FraudList(Base):
    """A named set of values (cards, emails, IPs, devices, countries) rules refer to."""

    __tablename__ = "fraud_lists"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FraudListItem(Base):
    __tablename__ = "fraud_list_items"
    list_name: Mapped[str] = mapped_column(
        ForeignKey("fraud_lists.name", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[str] = mapped_column(String(320), primary_key=True)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FraudConfigVersion(Base):
    """One row whose counter moves on every rule or list change; replicas poll it."""

    __tablename__ = "fraud_config_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
