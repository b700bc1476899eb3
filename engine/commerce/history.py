"""The commerce database's history as the domain events it would have published.

Used to rebuild derived state (the online feature store) after it lost its data: payments,
chargebacks, orders and storefront events, each source in time order, then current stock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select

from engine.commerce.db import Database
from engine.commerce.orders import chargeback_filed, order_placed, payment_attempted
from engine.commerce.schema import (
    Chargeback,
    Customer,
    Interaction,
    Order,
    OrderLine,
    Payment,
    Product,
    Stock,
)
from engine.events import (
    Event,
    InteractionInfo,
    InteractionsRecorded,
    OrderLineInfo,
    StockChanged,
)

CHUNK = 5000


def history(db: Database) -> Iterator[Event]:
    yield from payments(db)
    yield from chargebacks(db)
    yield from orders(db)
    yield from interactions(db)
    yield from stock(db)


def payments(db: Database) -> Iterator[Event]:
    stmt = (
        select(Payment, Order.merchant_id, Order.shipping_country, Customer.email)
        .join(Order, Order.id == Payment.order_id)
        .join(Customer, Customer.id == Payment.customer_id)
        .order_by(Payment.created_at, Payment.id)
    )
    with db.transaction(readonly=True) as s:
        for p, merchant, country, email in s.execute(stmt.execution_options(yield_per=CHUNK)):
            yield payment_attempted(p, merchant, email, country)


def chargebacks(db: Database) -> Iterator[Event]:
    stmt = (
        select(Chargeback, Payment, Order.merchant_id)
        .join(Payment, Payment.id == Chargeback.payment_id)
        .join(Order, Order.id == Chargeback.order_id)
        .order_by(Chargeback.filed_at, Chargeback.id)
    )
    with db.transaction(readonly=True) as s:
        for cb, p, merchant in s.execute(stmt.execution_options(yield_per=CHUNK)):
            yield chargeback_filed(cb, p, merchant)


def orders(db: Database) -> Iterator[Event]:
    stmt = (
        select(
            Order.id,
            Order.customer_id,
            Order.channel_id,
            Order.merchant_id,
            Order.currency,
            Order.total,
            Order.shipping_country,
            Order.created_at,
            OrderLine.sku,
            OrderLine.qty,
            OrderLine.unit_price,
            Product.category,
        )
        .join(OrderLine, OrderLine.order_id == Order.id)
        .join(Product, Product.sku == OrderLine.sku)
        .order_by(Order.created_at, Order.id, OrderLine.line_no)
    )
    with db.transaction(readonly=True) as s:
        current: Any = None
        lines: list[OrderLineInfo] = []
        for row in s.execute(stmt.execution_options(yield_per=CHUNK)):
            if current is not None and current.id != row.id:
                yield order_placed(current, tuple(lines))
                lines = []
            current = row
            lines.append(OrderLineInfo(row.sku, row.qty, row.unit_price, row.category))
        if current is not None:
            yield order_placed(current, tuple(lines))


def interactions(db: Database) -> Iterator[Event]:
    stmt = (
        select(Interaction, Product.category)
        .outerjoin(Product, Product.sku == Interaction.sku)
        .order_by(Interaction.ts, Interaction.event_id)
    )
    batch: list[InteractionInfo] = []
    with db.transaction(readonly=True) as s:
        for ev, category in s.execute(stmt.execution_options(yield_per=CHUNK)):
            batch.append(
                InteractionInfo(
                    ev.event_id,
                    ev.type,
                    ev.customer_id,
                    ev.session_id,
                    ev.sku,
                    category,
                    ev.recommendation_id,
                    ev.ts,
                )
            )
            if len(batch) >= CHUNK:
                yield InteractionsRecorded(tuple(batch))
                batch = []
    if batch:
        yield InteractionsRecorded(tuple(batch))


def stock(db: Database) -> Iterator[Event]:
    with db.transaction(readonly=True) as s:
        for st in s.scalars(select(Stock).order_by(Stock.sku, Stock.warehouse_id)):
            yield StockChanged(
                sku=st.sku,
                warehouse_id=st.warehouse_id,
                on_hand=st.on_hand,
                allocated=st.allocated,
                occurred_at=st.updated_at,
            )
