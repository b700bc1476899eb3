"""Order lifecycle: pay, fulfil, ship, deliver, cancel, refund; stock, audit log and events."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.domain import OrderAction
from engine.commerce.orders import Orders, PaymentRequest
from engine.errors import InvalidAmount, InvalidTransition, OrderNotFound, ValidationError
from engine.events import (
    Event,
    OrderCancelled,
    OrderStatusChanged,
    PaymentAttempted,
    StockChanged,
)

pytestmark = pytest.mark.integration

PAY, FULFIL, SHIP, DELIVER, CANCEL, REFUND = (
    OrderAction.PAY,
    OrderAction.FULFIL,
    OrderAction.SHIP,
    OrderAction.DELIVER,
    OrderAction.CANCEL,
    OrderAction.REFUND,
)

# How to bring a fresh order to each status.
PATHS = {
    "placed": [],
    "paid": [PAY],
    "fulfilled": [PAY, FULFIL],
    "shipped": [PAY, FULFIL, SHIP],
    "delivered": [PAY, FULFIL, SHIP, DELIVER],
    "cancelled": [CANCEL],
    "refunded": [PAY, REFUND],
}


def _levels(catalog: Catalog, sku: str) -> dict[str, tuple[int, int]]:
    return {lvl.warehouse_id: (lvl.on_hand, lvl.allocated) for lvl in catalog.stock_levels(sku)}


def _states(order: Any) -> list[tuple[str, str, int, str]]:
    return sorted((a.sku, a.warehouse_id, a.qty, a.state) for a in order.allocations)


@pytest.fixture
def bring(orders: Orders, store: Any) -> Callable[[str], Any]:
    """``bring(status)``: a new order of 4 TEE (wh-de) + 2 MUG, walked to ``status``."""

    def make(status: str) -> Any:
        order = orders.place(store.request(("TEE", 4), ("MUG", 2))).order
        for action in PATHS[status]:
            order = orders.transition(order.id, action)
        assert order.status == status
        return order

    return make


def test_pay_with_an_authorized_payment(
    orders: Orders, bring: Callable[[str], Any], published: list[Event]
) -> None:
    order = bring("placed")
    published.clear()
    paid = orders.transition(order.id, PAY, payment=PaymentRequest(amount=Decimal("96.96")))
    assert paid.status == "paid"
    [payment] = orders.payments(order.id)
    assert (payment.status, payment.amount, payment.currency) == (
        "authorized",
        Decimal("96.96"),
        "EUR",
    )
    assert [type(e) for e in published] == [OrderStatusChanged, PaymentAttempted]
    changed = published[0]
    assert isinstance(changed, OrderStatusChanged)
    assert (changed.from_status, changed.to_status) == ("placed", "paid")


@pytest.mark.parametrize("amount", ["96.95", "100.00", "0.01"])
def test_pay_with_the_wrong_amount_changes_nothing(
    orders: Orders,
    bring: Callable[[str], Any],
    db_snapshot: Callable[[], Any],
    published: list[Event],
    amount: str,
) -> None:
    order = bring("placed")
    published.clear()
    before = db_snapshot()
    with pytest.raises(InvalidAmount) as err:
        orders.transition(order.id, PAY, payment=PaymentRequest(amount=Decimal(amount)))
    assert (err.value.code, err.value.field) == ("invalid_amount", "amount")
    assert db_snapshot() == before
    assert published == []
    assert orders.get(order.id).status == "placed"


def test_a_declined_payment_does_not_pay_the_order(
    orders: Orders, bring: Callable[[str], Any], db_snapshot: Callable[[], Any]
) -> None:
    order = bring("placed")
    before = db_snapshot()
    with pytest.raises(ValidationError) as err:
        orders.transition(order.id, PAY, payment=PaymentRequest(status="declined"))
    assert err.value.field == "status"
    assert db_snapshot() == before


def test_fulfil_takes_the_units_out_of_stock(
    orders: Orders, catalog: Catalog, bring: Callable[[str], Any], published: list[Event]
) -> None:
    order = bring("paid")
    assert _levels(catalog, "TEE")["wh-de"] == (5, 4)
    published.clear()
    done = orders.transition(order.id, FULFIL)
    assert _levels(catalog, "TEE") == {"wh-de": (1, 0), "wh-fr": (3, 0)}
    assert _levels(catalog, "MUG") == {"wh-de": (8, 0)}
    assert _states(done) == [("MUG", "wh-de", 2, "fulfilled"), ("TEE", "wh-de", 4, "fulfilled")]
    assert [type(e) for e in published] == [OrderStatusChanged, StockChanged, StockChanged]
    stock = [(e.sku, e.on_hand, e.allocated) for e in published if isinstance(e, StockChanged)]
    assert sorted(stock) == [
        ("MUG", 8, 0),
        ("TEE", 1, 0),
    ]


@pytest.mark.parametrize(
    ("start", "action"), [("placed", CANCEL), ("paid", CANCEL), ("paid", REFUND)]
)
def test_cancel_or_refund_before_fulfilment_releases_the_allocation(
    orders: Orders,
    catalog: Catalog,
    bring: Callable[[str], Any],
    published: list[Event],
    start: str,
    action: OrderAction,
) -> None:
    order = bring(start)
    published.clear()
    done = orders.transition(order.id, action)
    assert _levels(catalog, "TEE") == {"wh-de": (5, 0), "wh-fr": (3, 0)}
    assert _levels(catalog, "MUG") == {"wh-de": (10, 0)}
    assert _states(done) == [("MUG", "wh-de", 2, "released"), ("TEE", "wh-de", 4, "released")]
    kinds = [type(e) for e in published]
    if action is CANCEL:
        assert kinds == [OrderStatusChanged, OrderCancelled, StockChanged, StockChanged]
    else:
        assert kinds == [OrderStatusChanged, StockChanged, StockChanged]
    assert sorted(
        (e.sku, e.on_hand, e.allocated) for e in published if isinstance(e, StockChanged)
    ) == [("MUG", 10, 0), ("TEE", 5, 0)]


@pytest.mark.parametrize("start", ["fulfilled", "shipped", "delivered"])
def test_refund_after_fulfilment_does_not_touch_stock(
    orders: Orders,
    catalog: Catalog,
    bring: Callable[[str], Any],
    published: list[Event],
    start: str,
) -> None:
    order = bring(start)
    before = (_levels(catalog, "TEE"), _levels(catalog, "MUG"))
    published.clear()
    done = orders.transition(order.id, REFUND)
    assert done.status == "refunded"
    assert (_levels(catalog, "TEE"), _levels(catalog, "MUG")) == before
    assert {a.state for a in done.allocations} == {"fulfilled"}
    assert [type(e) for e in published] == [OrderStatusChanged]


FORBIDDEN = [
    ("placed", FULFIL),
    ("placed", SHIP),
    ("placed", DELIVER),
    ("placed", REFUND),
    ("paid", PAY),
    ("paid", SHIP),
    ("fulfilled", CANCEL),
    ("fulfilled", PAY),
    ("shipped", CANCEL),
    ("delivered", CANCEL),
    ("cancelled", PAY),
    ("cancelled", CANCEL),
    ("cancelled", REFUND),
    ("refunded", REFUND),
    ("refunded", FULFIL),
]


@pytest.mark.parametrize(("start", "action"), FORBIDDEN, ids=[f"{s}-{a}" for s, a in FORBIDDEN])
def test_forbidden_transitions_change_nothing(
    orders: Orders,
    bring: Callable[[str], Any],
    db_snapshot: Callable[[], Any],
    published: list[Event],
    start: str,
    action: OrderAction,
) -> None:
    order = bring(start)
    published.clear()
    before = db_snapshot()
    with pytest.raises(InvalidTransition) as err:
        orders.transition(order.id, action)
    assert err.value.code == "invalid_transition"
    assert db_snapshot() == before
    assert published == []


def test_unknown_order(orders: Orders, store: Any) -> None:
    for call in (
        lambda: orders.transition("ord_nope", PAY),
        lambda: orders.get("ord_nope"),
        lambda: orders.history("ord_nope"),
    ):
        with pytest.raises(OrderNotFound) as err:
            call()
        assert (err.value.code, err.value.field) == ("order_not_found", "order_id")


def test_history_lists_every_step_in_order(orders: Orders, bring: Callable[[str], Any]) -> None:
    order = bring("placed")
    orders.record_payment(order.id, PaymentRequest(status="declined"))
    for action in (PAY, FULFIL, SHIP, DELIVER):
        orders.transition(order.id, action, actor="ops")
    orders.transition(order.id, REFUND, actor="support")
    steps = [(e.type, e.from_status, e.to_status, e.actor) for e in orders.history(order.id)]
    assert steps == [
        ("placed", None, "placed", "api"),
        ("payment_attempted", None, None, "api"),
        ("payment_attempted", None, None, "api"),
        ("pay", "placed", "paid", "ops"),
        ("fulfil", "paid", "fulfilled", "ops"),
        ("ship", "fulfilled", "shipped", "ops"),
        ("deliver", "shipped", "delivered", "ops"),
        ("refund", "delivered", "refunded", "support"),
    ]
    first = orders.history(order.id)[0]
    assert sorted(map(tuple, first.data["allocations"])) == [
        ("MUG", "wh-de", 2),
        ("TEE", "wh-de", 4),
    ]


@pytest.mark.parametrize("action", [CANCEL, PAY])
def test_no_event_and_no_change_when_a_transition_fails_at_commit(
    db: Database,
    bus: Any,
    published: list[Event],
    db_snapshot: Callable[[], Any],
    store: Any,
    breakable_clock: Any,
    action: OrderAction,
) -> None:
    orders = Orders(db, bus, clock=breakable_clock)
    order = orders.place(store.request(("TEE", 1))).order
    published.clear()
    before = db_snapshot()
    breakable_clock.broken = True
    with pytest.raises(Exception, match="naive datetime"):
        orders.transition(order.id, action)
    assert published == []
    assert db_snapshot() == before
