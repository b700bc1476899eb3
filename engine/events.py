"""Domain events and the small in-process bus that carries them.

The commerce core publishes these after a transaction commits; other parts (the online feature
store, analytics) subscribe without the commerce core knowing about them.  A failing subscriber
is logged and never undoes the committed business write.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every domain event."""


@dataclass(frozen=True, slots=True)
class OrderLineInfo:
    sku: str
    qty: int
    unit_price: Decimal
    category: str


@dataclass(frozen=True, slots=True)
class OrderPlaced(Event):
    order_id: str
    customer_id: str
    channel: str | None
    merchant_id: str | None
    currency: str
    total: Decimal
    shipping_country: str | None
    lines: tuple[OrderLineInfo, ...]
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class OrderStatusChanged(Event):
    order_id: str
    customer_id: str
    from_status: str
    to_status: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class OrderCancelled(Event):
    order_id: str
    customer_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class StockChanged(Event):
    sku: str
    warehouse_id: str
    on_hand: int
    allocated: int
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentAttempted(Event):
    payment_id: str
    order_id: str
    customer_id: str
    merchant_id: str | None
    method: str
    amount: Decimal
    currency: str
    status: str
    card_fingerprint: str | None
    device_id: str | None
    ip: str | None
    email: str | None
    shipping_country: str | None
    occurred_at: datetime
    transaction_id: str | None = None  # the fraud-scored transaction, when the checkout sent it


@dataclass(frozen=True, slots=True)
class ChargebackFiled(Event):
    chargeback_id: str
    order_id: str
    payment_id: str
    customer_id: str
    merchant_id: str | None
    card_fingerprint: str | None
    amount: Decimal
    reason: str
    transaction_at: datetime
    occurred_at: datetime
    transaction_id: str | None = None  # the fraud-scored transaction of the payment, if any


@dataclass(frozen=True, slots=True)
class InteractionInfo:
    event_id: str
    type: str
    customer_id: str | None
    session_id: str | None
    sku: str | None
    category: str | None
    recommendation_id: str | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class InteractionsRecorded(Event):
    """Storefront events newly stored (replays of a known ``event_id`` are not included)."""

    items: tuple[InteractionInfo, ...]


Handler = Callable[[Event], None]


@dataclass
class MessageBus:
    """Synchronous publish/subscribe by event class (subclasses are delivered too)."""

    _handlers: dict[type[Event], list[Handler]] = field(default_factory=lambda: defaultdict(list))

    def subscribe(self, event_type: type[Event], handler: Handler) -> None:
        self._handlers[event_type].append(handler)

    def publish(self, event: Event) -> None:
        for event_type, handlers in list(self._handlers.items()):
            if isinstance(event, event_type):
                for handler in list(handlers):
                    try:
                        handler(event)
                    except Exception:
                        log.exception(
                            "event handler %r failed for %s", handler, type(event).__name__
                        )

    def publish_all(self, events: list[Event]) -> None:
        for event in events:
            self.publish(event)
