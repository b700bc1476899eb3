"""Commerce domain events -> the online store.

Subscribed to the in-process bus by the bootstrap, so the commerce core never learns about
Redis.  The same converters feed ``rebuild`` from the database's history.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from decimal import Decimal

from engine.events import (
    ChargebackFiled,
    Event,
    InteractionInfo,
    InteractionsRecorded,
    MessageBus,
    OrderPlaced,
    PaymentAttempted,
    StockChanged,
)
from features.definitions import Entity, FeatureEvent, LabelEvent, Source, cents
from features.store import FeatureStore

log = logging.getLogger(__name__)
FRAUD_REASONS = frozenset({"fraudulent"})


def _entities(**ids: str | None) -> dict[Entity, str]:
    return {Entity(k): v for k, v in ids.items() if v}


def transaction_event(
    *,
    event_id: str,
    ts: datetime,
    amount: Decimal | float,
    customer_id: str | None,
    merchant_id: str | None = None,
    card: str | None = None,
    device_id: str | None = None,
    ip: str | None = None,
    email: str | None = None,
    shipping_country: str | None = None,
) -> FeatureEvent:
    return FeatureEvent(
        event_id=event_id,
        source=Source.TRANSACTION,
        type="payment",
        ts=ts.timestamp(),
        entities=_entities(
            customer=customer_id,
            merchant=merchant_id,
            card=card,
            device=device_id,
            ip=ip,
            email=email,
        ),
        values={"amount": cents(float(amount))},
        attrs={"shipping_country": shipping_country} if shipping_country else {},
    )


def payment_event(e: PaymentAttempted) -> FeatureEvent:
    """A payment the checkout scored first (``transaction_id``) is that scored transaction:
    the same event id, so the store counts it once."""
    return transaction_event(
        event_id=f"txn:{e.transaction_id}" if e.transaction_id else f"pay:{e.payment_id}",
        ts=e.occurred_at,
        amount=e.amount,
        customer_id=e.customer_id,
        merchant_id=e.merchant_id,
        card=e.card_fingerprint,
        device_id=e.device_id,
        ip=e.ip,
        email=e.email,
        shipping_country=e.shipping_country,
    )


def label_event(e: ChargebackFiled) -> LabelEvent:
    return LabelEvent(  # one label per transaction, however it arrives (feedback, chargeback)
        label_id=f"txn:{e.transaction_id}" if e.transaction_id else e.chargeback_id,
        tx_ts=e.transaction_at.timestamp(),
        reported_ts=e.occurred_at.timestamp(),
        entities=_entities(customer=e.customer_id, merchant=e.merchant_id, card=e.card_fingerprint),
    )


def interaction_event(i: InteractionInfo) -> FeatureEvent:
    return FeatureEvent(
        event_id=i.event_id,
        source=Source.INTERACTION,
        type=i.type,
        ts=i.occurred_at.timestamp(),
        entities=_entities(
            customer=i.customer_id, session=i.session_id, sku=i.sku, category=i.category
        ),
        values={"qty": 1},
        attrs={"sku": i.sku} if i.sku else {},
    )


def order_line_events(e: OrderPlaced) -> list[FeatureEvent]:
    """Each order line counts as units sold for its SKU and category."""
    return [
        FeatureEvent(
            event_id=f"order:{e.order_id}:{n}",
            source=Source.INTERACTION,
            type="order_line",
            ts=e.occurred_at.timestamp(),
            entities=_entities(customer=e.customer_id, sku=line.sku, category=line.category),
            values={"qty": line.qty},
            attrs={"sku": line.sku},
        )
        for n, line in enumerate(e.lines, start=1)
    ]


class FeatureIngestor:
    """Applies domain events to the online store as they are published.

    The bus calls handlers synchronously in the publishing thread, so ``degraded_in_thread``
    tells the code that published whether the store took the writes it just caused."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self._local = threading.local()

    def degraded_in_thread(self) -> bool:
        return bool(getattr(self._local, "degraded", False))

    def reset_thread(self) -> None:
        self._local.degraded = False

    def _note(self, degraded: bool) -> None:
        if degraded:
            self._local.degraded = True

    def subscribe(self, bus: MessageBus) -> None:
        bus.subscribe(PaymentAttempted, self.handle)
        bus.subscribe(ChargebackFiled, self.handle)
        bus.subscribe(OrderPlaced, self.handle)
        bus.subscribe(StockChanged, self.handle)
        bus.subscribe(InteractionsRecorded, self.handle)

    def handle(self, event: Event) -> None:
        """Single domain events are written on the decision connection (short timeout): an
        unreachable store must not stall an order.  Batches of storefront events use the bulk
        connection."""
        store = self.store
        if isinstance(event, PaymentAttempted):
            self._note(store.record([payment_event(event)], fast=True).degraded)
        elif isinstance(event, ChargebackFiled):
            if event.reason in FRAUD_REASONS:
                self._note(store.record_labels([label_event(event)], fast=True).degraded)
        elif isinstance(event, OrderPlaced):
            self._note(store.record(order_line_events(event), fast=True).degraded)
        elif isinstance(event, StockChanged):
            available = event.on_hand - event.allocated
            self._note(not store.set_stock([(event.sku, event.warehouse_id, available)], fast=True))
        elif isinstance(event, InteractionsRecorded):
            self._note(store.record([interaction_event(i) for i in event.items]).degraded)
