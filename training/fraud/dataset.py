"""Training transactions from the commerce database, in the import format of ``features.offline``.

One row per payment attempt (authorized and declined: the online store records both), with the
entities the online store keys on (``features.ingest.payment_event``): customer, the order's
merchant, card fingerprint, device, IP, the customer's e-mail, the order's shipping country.

Labels are what was known at ``as_of``: ``is_fraud`` is 1 only for a payment with a chargeback
whose reason is a fraud reason (``features.ingest.FRAUD_REASONS``, the same rule the online
store applies) filed at or before ``as_of``; ``reported_at`` is that chargeback's ``filed_at``.
Payments made after ``as_of`` are left out, so ``as_of`` replays the database as it was then.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import and_, select

from engine.commerce.db import Database
from engine.commerce.schema import Chargeback, Customer, Order, Payment
from features.ingest import FRAUD_REASONS

COLUMNS = (
    "transaction_id",
    "timestamp",
    "customer_id",
    "merchant_id",
    "amount",
    "card_id",
    "device_id",
    "ip",
    "email",
    "currency",
    "payment_method",
    "status",
    "card_country",
    "shipping_country",
    "is_fraud",
    "reported_at",
)
CHUNK = 10_000


def transactions_from_db(db: Database, *, as_of: datetime | None = None) -> pd.DataFrame:
    """Every payment attempt made by ``as_of`` (default: now), oldest first, labelled with the
    fraud chargebacks filed by ``as_of``.  Columns: ``COLUMNS``; timestamps are aware UTC."""
    as_of = as_of or datetime.now(UTC)
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    fraud = and_(
        Chargeback.payment_id == Payment.id,
        Chargeback.reason.in_(sorted(FRAUD_REASONS)),
        Chargeback.filed_at <= as_of,
    )
    stmt = (
        select(
            Payment.id,
            Payment.created_at,
            Payment.customer_id,
            Order.merchant_id,
            Payment.amount,
            Payment.card_fingerprint,
            Payment.device_id,
            Payment.ip,
            Customer.email,
            Payment.currency,
            Payment.method,
            Payment.status,
            Payment.card_country,
            Order.shipping_country,
            Chargeback.filed_at,
        )
        .join(Order, Order.id == Payment.order_id)
        .join(Customer, Customer.id == Payment.customer_id)
        .outerjoin(Chargeback, fraud)
        .where(Payment.created_at <= as_of)
        .order_by(Payment.created_at, Payment.id)
    )
    rows: list[tuple[Any, ...]] = []
    with db.transaction(readonly=True) as s:
        for row in s.execute(stmt.execution_options(yield_per=CHUNK)):
            rows.append(tuple(row))
    names = [c for c in COLUMNS if c != "is_fraud"]
    frame = pd.DataFrame.from_records(rows, columns=names)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["reported_at"] = pd.to_datetime(frame["reported_at"], utc=True)
    frame["amount"] = frame["amount"].astype(np.float64)
    frame.insert(
        COLUMNS.index("is_fraud"), "is_fraud", frame["reported_at"].notna().astype(np.int8)
    )
    return frame[list(COLUMNS)]
