"""SQLAlchemy tables of the commerce core (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; cartwise stores UTC-aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Money = Numeric(14, 2, asdecimal=True)
Id = String(64)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), Decimal: Money, dict[str, Any]: JSON}


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Channel(Base):
    __tablename__ = "channels"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    country: Mapped[str | None] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelKey(Base):
    """An API key of a channel: ``publishable`` (kept whole, it is public by design) or
    ``secret`` (kept only as its SHA-256 digest and the first characters it is shown by)."""

    __tablename__ = "channel_keys"
    __table_args__ = (
        CheckConstraint("kind IN ('publishable', 'secret')", name="kind"),
        CheckConstraint("kind = 'publishable' OR token IS NULL", name="secret_not_kept"),
    )
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    display: Mapped[str] = mapped_column(String(16))
    token: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Merchant(Base):
    __tablename__ = "merchants"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("list_price >= 0", name="list_price_nonneg"),
        CheckConstraint("cost >= 0", name="cost_nonneg"),
    )
    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    category: Mapped[str] = mapped_column(String(200), index=True)
    brand: Mapped[str | None] = mapped_column(String(200), index=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cost: Mapped[Decimal]
    list_price: Mapped[Decimal]
    map_price: Mapped[Decimal | None]
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Warehouse(Base):
    __tablename__ = "warehouses"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    click_and_collect: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Stock(Base):
    """On-hand and allocated units of one SKU in one warehouse; never allocated > on_hand."""

    __tablename__ = "stock"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_nonneg"),
        CheckConstraint("allocated >= 0", name="allocated_nonneg"),
        CheckConstraint("allocated <= on_hand", name="not_oversold"),
        Index("ix_stock_sku", "sku"),
    )
    warehouse_id: Mapped[str] = mapped_column(ForeignKey("warehouses.id"), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    allocated: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_customer_created", "customer_id", "created_at"),)
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    channel_id: Mapped[str | None] = mapped_column(ForeignKey("channels.id"))
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"))
    status: Mapped[str] = mapped_column(String(16), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal]
    shipping_country: Mapped[str | None] = mapped_column(String(2))
    pickup_warehouse_id: Mapped[str | None] = mapped_column(ForeignKey("warehouses.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    lines: Mapped[list[OrderLine]] = relationship(
        order_by="OrderLine.line_no", cascade="all, delete-orphan", lazy="selectin"
    )
    allocations: Mapped[list[Allocation]] = relationship(
        order_by="Allocation.id", cascade="all, delete-orphan", lazy="selectin"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), index=True)
    qty: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal]
    line_total: Mapped[Decimal]


class Allocation(Base):
    """Units of an order reserved in one warehouse; ``state``: allocated, released, fulfilled."""

    __tablename__ = "allocations"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    warehouse_id: Mapped[str] = mapped_column(ForeignKey("warehouses.id"))
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    qty: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="allocated")


class OrderEvent(Base):
    """Audit log: one row per thing that happened to an order."""

    __tablename__ = "order_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64), default="api")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_customer_created", "customer_id", "created_at"),)
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    method: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    card_fingerprint: Mapped[str | None] = mapped_column(String(128), index=True)
    card_bin: Mapped[str | None] = mapped_column(String(8))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_country: Mapped[str | None] = mapped_column(String(2))
    device_id: Mapped[str | None] = mapped_column(String(128))
    ip: Mapped[str | None] = mapped_column(String(64))
    # the id the checkout scored with POST /v1/fraud/score: the same transaction in the features
    transaction_id: Mapped[str | None] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Chargeback(Base):
    """A dispute on a payment: the delayed fraud label."""

    __tablename__ = "chargebacks"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), unique=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    amount: Mapped[Decimal]
    reason: Mapped[str] = mapped_column(String(32), default="fraudulent")
    note: Mapped[str | None] = mapped_column(Text)
    filed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Interaction(Base):
    """One storefront event (view, add_to_cart, remove_from_cart, purchase, search).

    ``event_id`` is the client's id and makes ingestion idempotent.
    """

    __tablename__ = "interactions"
    __table_args__ = (
        Index("ix_interactions_customer_ts", "customer_id", "ts"),
        Index("ix_interactions_sku_ts", "sku", "ts"),
    )
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(24))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(128), index=True)
    sku: Mapped[str | None] = mapped_column(String(64))
    query: Mapped[str | None] = mapped_column(String(300))
    recommendation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    ts: Mapped[datetime] = mapped_column(index=True)
    channel_id: Mapped[str | None] = mapped_column(String(64), index=True)
