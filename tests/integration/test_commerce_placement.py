"""Placing orders: allocation, refusals that write nothing, and the events that go out."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.domain import LineRequest
from engine.commerce.orders import OrderRequest, Orders
from engine.errors import (
    CartwiseError,
    CurrencyMismatch,
    InsufficientStock,
    InvalidQuantity,
    UnknownCurrency,
    UnknownReference,
    UnknownSku,
    ValidationError,
)
from engine.events import Event, OrderLineInfo, OrderPlaced, StockChanged

pytestmark = pytest.mark.integration


def _alloc(order: Any) -> list[tuple[str, str, int, str]]:
    return sorted((a.sku, a.warehouse_id, a.qty, a.state) for a in order.allocations)


def _levels(catalog: Catalog, sku: str) -> dict[str, tuple[int, int, int]]:
    return {
        lvl.warehouse_id: (lvl.on_hand, lvl.allocated, lvl.available)
        for lvl in catalog.stock_levels(sku)
    }


def test_place_allocates_prices_and_totals(orders: Orders, catalog: Catalog, store: Any) -> None:
    placed = orders.place(
        store.request(("TEE", 2), ("MUG", 3), channel="web", merchant_id="m-main")
    )
    order = placed.order
    assert placed.replayed is False
    assert order.status == "placed"
    assert (order.channel_id, order.merchant_id) == ("web", "m-main")
    assert [(ln.line_no, ln.sku, ln.qty, ln.unit_price, ln.line_total) for ln in order.lines] == [
        (1, "TEE", 2, Decimal("19.99"), Decimal("39.98")),
        (2, "MUG", 3, Decimal("8.50"), Decimal("25.50")),
    ]
    assert order.total == Decimal("65.48")
    assert _alloc(order) == [("MUG", "wh-de", 3, "allocated"), ("TEE", "wh-de", 2, "allocated")]
    assert _levels(catalog, "TEE") == {"wh-de": (5, 2, 3), "wh-fr": (3, 0, 3)}
    fetched = orders.get(order.id)
    assert (fetched.total, fetched.status, len(fetched.lines)) == (Decimal("65.48"), "placed", 2)
    assert fetched.created_at.tzinfo is not None


def test_shipping_country_warehouse_is_preferred_and_lines_split(
    orders: Orders, store: Any
) -> None:
    to_fr = orders.place(store.request(("TEE", 2), shipping_country="FR")).order
    assert _alloc(to_fr) == [("TEE", "wh-fr", 2, "allocated")]
    split = orders.place(store.request(("TEE", 4), shipping_country="FR")).order
    assert _alloc(split) == [("TEE", "wh-de", 3, "allocated"), ("TEE", "wh-fr", 1, "allocated")]


def test_pickup_allocates_only_at_the_chosen_store(
    orders: Orders, db_snapshot: Callable[[], Any], store: Any
) -> None:
    order = orders.place(store.request(("TEE", 3), pickup_warehouse_id="wh-fr")).order
    assert order.pickup_warehouse_id == "wh-fr"
    assert _alloc(order) == [("TEE", "wh-fr", 3, "allocated")]
    before = db_snapshot()
    with pytest.raises(InsufficientStock) as err:  # wh-de still has 5
        orders.place(store.request(("TEE", 1), pickup_warehouse_id="wh-fr"))
    assert err.value.items == [
        {"field": "lines[0].qty", "sku": "TEE", "requested": 1, "available": 0}
    ]
    assert db_snapshot() == before


def test_pickup_at_a_warehouse_without_click_and_collect_is_refused(
    orders: Orders, db_snapshot: Callable[[], Any], published: list[Event], store: Any
) -> None:
    """wh-de ships only; it is not a pickup point, so a pickup order there must be refused."""
    before = db_snapshot()
    with pytest.raises(ValidationError) as err:
        orders.place(store.request(("TEE", 1), pickup_warehouse_id="wh-de"))
    assert err.value.field == "pickup_warehouse_id"
    assert db_snapshot() == before
    assert published == []


def test_every_short_line_is_reported_and_nothing_is_written(
    orders: Orders, db_snapshot: Callable[[], Any], published: list[Event], store: Any
) -> None:
    orders.place(store.request(("CAP", 1)))
    published.clear()
    before = db_snapshot()
    with pytest.raises(InsufficientStock) as err:
        orders.place(store.request(("TEE", 9), ("MUG", 1), ("CAP", 2)))
    exc = err.value
    assert exc.code == "insufficient_stock"
    assert exc.field == "lines[0].qty"
    assert exc.items == [
        {"field": "lines[0].qty", "sku": "TEE", "requested": 9, "available": 8},
        {"field": "lines[2].qty", "sku": "CAP", "requested": 2, "available": 1},
    ]
    assert db_snapshot() == before
    assert published == []


@pytest.fixture
def odd_products(catalog: Catalog, store: Any) -> None:
    catalog.create_product(
        sku="OLD",
        title="Old",
        category="misc",
        list_price=Decimal("1.00"),
        currency="EUR",
        active=False,
    )
    catalog.create_product(
        sku="USB", title="Usb", category="misc", list_price=Decimal("5.00"), currency="USD"
    )
    for sku in ("OLD", "USB"):
        catalog.set_stock("wh-de", sku, 5)


REFUSALS: list[tuple[str, dict[str, Any], type[CartwiseError], str, str]] = [
    (
        "unknown-sku",
        {"lines": [("TEE", 1), ("NOPE", 1)]},
        UnknownSku,
        "unknown_sku",
        "lines[1].sku",
    ),
    ("inactive-product", {"lines": [("OLD", 1)]}, UnknownSku, "unknown_sku", "lines[0].sku"),
    (
        "currency-mismatch",
        {"lines": [("TEE", 1), ("USB", 1)]},
        CurrencyMismatch,
        "currency_mismatch",
        "currency",
    ),
    ("unknown-currency", {"currency": "XXX"}, UnknownCurrency, "unknown_currency", "currency"),
    (
        "unknown-customer",
        {"customer_id": "cus-ghost"},
        UnknownReference,
        "unknown_reference",
        "customer_id",
    ),
    ("unknown-channel", {"channel": "tv"}, UnknownReference, "unknown_reference", "channel"),
    (
        "unknown-merchant",
        {"merchant_id": "m-ghost"},
        UnknownReference,
        "unknown_reference",
        "merchant_id",
    ),
    (
        "unknown-pickup-warehouse",
        {"pickup_warehouse_id": "wh-ghost"},
        UnknownReference,
        "unknown_reference",
        "pickup_warehouse_id",
    ),
    (
        "unknown-country",
        {"shipping_country": "XX"},
        ValidationError,
        "unknown_country",
        "shipping_country",
    ),
    ("zero-qty", {"lines": [("TEE", 0)]}, InvalidQuantity, "invalid_quantity", "lines[0].qty"),
    (
        "duplicate-line",
        {"lines": [("TEE", 1), ("TEE", 1)]},
        ValidationError,
        "invalid_request",
        "lines[1].sku",
    ),
    ("no-lines", {"lines": []}, ValidationError, "invalid_request", "lines"),
]


@pytest.mark.usefixtures("odd_products")
@pytest.mark.parametrize(
    ("overrides", "error", "code", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in REFUSALS],
)
def test_bad_requests_get_the_right_error_and_write_nothing(
    orders: Orders,
    db_snapshot: Callable[[], Any],
    published: list[Event],
    store: Any,
    overrides: dict[str, Any],
    error: type[CartwiseError],
    code: str,
    field: str,
) -> None:
    overrides = dict(overrides)
    lines = overrides.pop("lines", [("TEE", 1)])
    published.clear()
    before = db_snapshot()
    with pytest.raises(error) as err:
        orders.place(store.request(*lines, **overrides), idempotency_key="k-bad")
    assert (err.value.code, err.value.field) == (code, field)
    assert db_snapshot() == before
    assert published == []
    # The refused key was not burnt: a good request can use it afterwards.
    assert orders.place(store.request(("MUG", 1)), idempotency_key="k-bad").replayed is False


def test_order_total_beyond_the_money_column_is_a_clean_refusal(
    orders: Orders, catalog: Catalog, db_snapshot: Callable[[], Any], store: Any
) -> None:
    """10 000 x 999 999 999.99 does not fit Numeric(14, 2): a 4xx error, not a driver error."""
    catalog.create_product(
        sku="GOLD", title="Gold", category="lux", list_price=Decimal("999999999.99"), currency="EUR"
    )
    catalog.set_stock("wh-de", "GOLD", 10_000)
    before = db_snapshot()
    with pytest.raises(ValidationError):
        orders.place(store.request(("GOLD", 10_000)))
    assert db_snapshot() == before


def test_events_go_out_after_commit_in_order(
    orders: Orders, published: list[Event], store: Any
) -> None:
    seen_in_db: list[str] = []

    def check(event: Event) -> None:
        assert isinstance(event, OrderPlaced)
        seen_in_db.append(orders.get(event.order_id).status)

    orders.bus.subscribe(OrderPlaced, check)
    order = orders.place(
        store.request(("TEE", 4), ("MUG", 1), shipping_country="FR", channel="web")
    ).order
    assert seen_in_db == ["placed"]  # the order was committed before the event went out
    assert [type(e) for e in published] == [OrderPlaced, StockChanged, StockChanged, StockChanged]
    placed = published[0]
    assert isinstance(placed, OrderPlaced)
    assert (placed.order_id, placed.customer_id, placed.channel, placed.merchant_id) == (
        order.id,
        "cus-ana",
        "web",
        None,
    )
    assert (placed.currency, placed.total, placed.shipping_country) == (
        "EUR",
        Decimal("88.46"),
        "FR",
    )
    assert placed.lines == (
        OrderLineInfo("TEE", 4, Decimal("19.99"), "apparel"),
        OrderLineInfo("MUG", 1, Decimal("8.50"), "kitchen"),
    )
    stock = [
        (e.sku, e.warehouse_id, e.on_hand, e.allocated)
        for e in published[1:]
        if isinstance(e, StockChanged)
    ]
    assert sorted(stock) == [
        ("MUG", "wh-de", 10, 1),
        ("TEE", "wh-de", 5, 1),
        ("TEE", "wh-fr", 3, 3),
    ]


def test_no_event_when_the_transaction_fails_after_planning(
    db: Database,
    bus: Any,
    published: list[Event],
    db_snapshot: Callable[[], Any],
    store: Any,
    breakable_clock: Any,
) -> None:
    failing = Orders(db, bus, clock=breakable_clock)
    breakable_clock.broken = True
    before = db_snapshot()
    with pytest.raises(Exception, match="naive datetime"):
        failing.place(store.request(("TEE", 1)))
    assert published == []
    assert db_snapshot() == before


def test_request_fingerprint_covers_every_field() -> None:
    def req(*lines: tuple[str, int], **kw: Any) -> OrderRequest:
        kw.setdefault("customer_id", "cus-ana")
        kw.setdefault("currency", "EUR")
        return OrderRequest(lines=[LineRequest(s, q) for s, q in lines], **kw)

    base = req(("TEE", 1), ("MUG", 2))
    variants = [
        req(("TEE", 1), ("MUG", 3)),
        req(("MUG", 2), ("TEE", 1)),
        req(("TEE", 1), ("MUG", 2), currency="USD"),
        req(("TEE", 1), ("MUG", 2), customer_id="other"),
        req(("TEE", 1), ("MUG", 2), channel="web"),
        req(("TEE", 1), ("MUG", 2), merchant_id="m-main"),
        req(("TEE", 1), ("MUG", 2), shipping_country="FR"),
        req(("TEE", 1), ("MUG", 2), pickup_warehouse_id="wh-fr"),
    ]
    assert len({base.fingerprint(), *(v.fingerprint() for v in variants)}) == 1 + len(variants)
    same = OrderRequest("cus-ana", "EUR", (LineRequest("TEE", 1), LineRequest("MUG", 2)))
    assert same.fingerprint() == base.fingerprint()
