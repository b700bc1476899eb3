"""Payment attempts and chargebacks (the delayed fraud label)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from engine.commerce.db import Database
from engine.commerce.domain import OrderAction
from engine.commerce.orders import CardInfo, Orders, PaymentRequest
from engine.errors import AlreadyExists, InvalidAmount, InvalidTransition, ValidationError
from engine.events import ChargebackFiled, Event, PaymentAttempted

pytestmark = pytest.mark.integration

CARD = CardInfo(fingerprint="fp_visa_1", bin="411111", last4="1111", country="DE")
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


class _Clock:
    """Deterministic time: each call returns the next second after ``T0``."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        return T0 + timedelta(seconds=self.calls)


@pytest.fixture
def timed_orders(db: Database, bus: Any) -> Orders:
    return Orders(db, bus, clock=_Clock())


@pytest.fixture
def order(timed_orders: Orders, store: Any) -> Any:
    """A placed order of 2 TEE + 1 MUG: 48.48 EUR, with merchant m-main."""
    return timed_orders.place(store.request(("TEE", 2), ("MUG", 1), merchant_id="m-main")).order


def test_a_declined_attempt_is_recorded_without_changing_the_status(
    timed_orders: Orders, order: Any, published: list[Event]
) -> None:
    published.clear()
    pay = timed_orders.record_payment(
        order.id,
        PaymentRequest(
            status="declined", amount=Decimal("500"), card=CARD, device_id="dev-1", ip="203.0.113.9"
        ),
    )
    assert timed_orders.get(order.id).status == "placed"
    [stored] = timed_orders.payments(order.id)
    assert (stored.id, stored.status, stored.amount, stored.method) == (
        pay.id,
        "declined",
        Decimal("500.00"),
        "card",
    )
    assert (stored.card_fingerprint, stored.card_bin, stored.card_last4, stored.card_country) == (
        "fp_visa_1",
        "411111",
        "1111",
        "DE",
    )
    assert (stored.device_id, stored.ip, stored.customer_id) == ("dev-1", "203.0.113.9", "cus-ana")
    [event] = published
    assert isinstance(event, PaymentAttempted)
    assert (event.payment_id, event.order_id, event.status, event.card_fingerprint) == (
        pay.id,
        order.id,
        "declined",
        "fp_visa_1",
    )
    assert (event.merchant_id, event.amount, event.currency) == (
        "m-main",
        Decimal("500.00"),
        "EUR",
    )
    assert (event.device_id, event.ip, event.email, event.shipping_country) == (
        "dev-1",
        "203.0.113.9",
        "ana@example.com",
        None,
    )
    assert event.occurred_at == stored.created_at
    assert [e.type for e in timed_orders.history(order.id)] == ["placed", "payment_attempted"]


BAD_PAYMENTS = [
    ("bad-method", PaymentRequest(method="cash"), "invalid_payment_method", "method"),
    ("bad-status", PaymentRequest(status="pending"), "invalid_request", "status"),
    (
        "bad-card-country",
        PaymentRequest(card=CardInfo(country="XX")),
        "unknown_country",
        "card.country",
    ),
    (
        "zero-amount",
        PaymentRequest(status="declined", amount=Decimal(0)),
        "invalid_amount",
        "amount",
    ),
    (
        "negative-amount",
        PaymentRequest(status="declined", amount=Decimal(-5)),
        "invalid_amount",
        "amount",
    ),
    (
        "nan-amount",
        PaymentRequest(status="declined", amount=Decimal("NaN")),
        "invalid_amount",
        "amount",
    ),
    (
        "rounds-to-zero",
        PaymentRequest(status="declined", amount=Decimal("0.001")),
        "invalid_amount",
        "amount",
    ),
    (
        "too-large-for-the-column",
        PaymentRequest(status="declined", amount=Decimal("1e12")),
        "invalid_amount",
        "amount",
    ),
    (
        "authorized-wrong-amount",
        PaymentRequest(amount=Decimal("48.47")),
        "invalid_amount",
        "amount",
    ),
]


@pytest.mark.parametrize(
    ("payment", "code", "field"), [pytest.param(*c[1:], id=c[0]) for c in BAD_PAYMENTS]
)
def test_bad_payment_attempts_are_refused_and_write_nothing(
    timed_orders: Orders,
    order: Any,
    db_snapshot: Callable[[], Any],
    published: list[Event],
    payment: PaymentRequest,
    code: str,
    field: str,
) -> None:
    published.clear()
    before = db_snapshot()
    with pytest.raises(ValidationError) as err:
        timed_orders.record_payment(order.id, payment)
    assert (err.value.code, err.value.field) == (code, field)
    assert db_snapshot() == before
    assert published == []


@pytest.mark.parametrize("attempts", [[], ["declined"]], ids=["no-payment", "only-declined"])
def test_no_chargeback_without_an_authorized_payment(
    timed_orders: Orders, order: Any, db_snapshot: Callable[[], Any], attempts: list[str]
) -> None:
    for status in attempts:
        timed_orders.record_payment(order.id, PaymentRequest(status=status))
    before = db_snapshot()
    with pytest.raises(InvalidTransition) as err:
        timed_orders.file_chargeback(order.id)
    assert (err.value.code, err.value.field) == ("not_paid", "order_id")
    assert db_snapshot() == before


def test_chargeback_event_carries_card_and_transaction_time(
    timed_orders: Orders, order: Any, published: list[Event]
) -> None:
    timed_orders.record_payment(
        order.id, PaymentRequest(status="declined", card=CardInfo(fingerprint="fp_other"))
    )
    timed_orders.transition(order.id, OrderAction.PAY, payment=PaymentRequest(card=CARD))
    authorized = [p for p in timed_orders.payments(order.id) if p.status == "authorized"]
    [payment] = authorized
    filed = T0 + timedelta(minutes=3)  # after the payment, not later than the clock allows
    published.clear()

    cb = timed_orders.file_chargeback(order.id, filed_at=filed, note="cardholder says no")

    assert (cb.payment_id, cb.order_id, cb.amount, cb.reason) == (
        payment.id,
        order.id,
        Decimal("48.48"),
        "fraudulent",
    )
    [event] = published
    assert isinstance(event, ChargebackFiled)
    assert (event.chargeback_id, event.order_id, event.payment_id) == (cb.id, order.id, payment.id)
    assert (event.customer_id, event.merchant_id) == ("cus-ana", "m-main")
    assert event.card_fingerprint == "fp_visa_1"
    assert event.reason == "fraudulent"
    assert event.amount == Decimal("48.48")
    assert event.transaction_at == payment.created_at
    assert event.transaction_at.tzinfo is not None
    assert event.transaction_at < filed
    assert event.occurred_at == filed
    assert timed_orders.history(order.id)[-1].type == "chargeback"


def test_a_second_chargeback_is_refused(
    timed_orders: Orders, order: Any, db_snapshot: Callable[[], Any]
) -> None:
    timed_orders.transition(order.id, OrderAction.PAY)
    timed_orders.file_chargeback(order.id, amount=Decimal("10.00"))
    before = db_snapshot()
    with pytest.raises(AlreadyExists) as err:
        timed_orders.file_chargeback(order.id, amount=Decimal("5.00"))
    assert err.value.code == "already_exists"
    assert db_snapshot() == before


@pytest.mark.parametrize("amount", ["0", "-1", "48.49", "1000", "NaN", "0.001", "0.004"])
def test_chargeback_amount_must_be_positive_and_at_most_the_payment(
    timed_orders: Orders, order: Any, db_snapshot: Callable[[], Any], amount: str
) -> None:
    timed_orders.transition(order.id, OrderAction.PAY)
    before = db_snapshot()
    with pytest.raises(InvalidAmount) as err:
        timed_orders.file_chargeback(order.id, amount=Decimal(amount))
    assert (err.value.code, err.value.field) == ("invalid_amount", "amount")
    assert db_snapshot() == before


@pytest.mark.parametrize(
    ("amount", "stored"),
    [("0.01", "0.01"), ("20", "20.00"), ("48.48", "48.48"), ("48.484", "48.48")],
)
def test_partial_and_full_chargebacks(
    timed_orders: Orders, order: Any, amount: str, stored: str
) -> None:
    timed_orders.transition(order.id, OrderAction.PAY)
    assert timed_orders.file_chargeback(order.id, amount=Decimal(amount)).amount == Decimal(stored)


def test_chargeback_filed_at_needs_a_timezone(
    timed_orders: Orders, order: Any, db_snapshot: Callable[[], Any]
) -> None:
    timed_orders.transition(order.id, OrderAction.PAY)
    before = db_snapshot()
    with pytest.raises(ValidationError) as err:
        timed_orders.file_chargeback(order.id, filed_at=datetime(2026, 4, 2, 9, 30))
    assert err.value.field == "filed_at"
    assert db_snapshot() == before


def test_chargeback_on_a_refunded_order_is_still_possible(timed_orders: Orders, order: Any) -> None:
    """A dispute can arrive after a refund; the payment was authorized, so it is recorded."""
    timed_orders.transition(order.id, OrderAction.PAY)
    timed_orders.transition(order.id, OrderAction.REFUND)
    assert timed_orders.file_chargeback(order.id).amount == Decimal("48.48")


@pytest.mark.parametrize(
    "offset", [timedelta(days=-1), timedelta(days=30)], ids=["before-the-payment", "in-the-future"]
)
def test_chargeback_filed_at_must_lie_between_payment_and_now(
    timed_orders: Orders, order: Any, db_snapshot: Callable[[], Any], offset: timedelta
) -> None:
    timed_orders.transition(order.id, OrderAction.PAY, payment=PaymentRequest(card=CARD))
    before = db_snapshot()
    with pytest.raises(ValidationError) as err:
        timed_orders.file_chargeback(order.id, filed_at=T0 + offset)
    assert err.value.field == "filed_at"
    assert db_snapshot() == before
