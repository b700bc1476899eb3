"""Catalogue side of the commerce core: customers, warehouses, products, stock."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from engine.commerce.catalog import Catalog, encode_cursor
from engine.commerce.orders import Orders
from engine.errors import (
    AlreadyExists,
    Conflict,
    CustomerNotFound,
    InvalidAmount,
    InvalidQuantity,
    ProductNotFound,
    UnknownCurrency,
    ValidationError,
    WarehouseNotFound,
)
from engine.events import Event, StockChanged

pytestmark = pytest.mark.integration


def _product(catalog: Catalog, sku: str, **kw: Any) -> Any:
    kw.setdefault("list_price", Decimal("9.99"))
    kw.setdefault("category", "misc")
    return catalog.create_product(sku=sku, title=f"Product {sku}", currency="EUR", **kw)


# --- customers, channels, warehouses ----------------------------------------------------------


def test_customers(catalog: Catalog) -> None:
    made = catalog.create_customer(email="bo@example.com", country="FR", attributes={"vip": True})
    assert made.id.startswith("cus_")
    got = catalog.get_customer(made.id)
    assert (got.email, got.country, got.attributes) == ("bo@example.com", "FR", {"vip": True})
    assert got.created_at.tzinfo is not None
    catalog.create_customer(id="cus-x", email="x@example.com")
    with pytest.raises(AlreadyExists) as dup:
        catalog.create_customer(id="cus-x", email="other@example.com")
    assert (dup.value.code, dup.value.field) == ("already_exists", "id")
    assert catalog.get_customer("cus-x").email == "x@example.com"
    with pytest.raises(CustomerNotFound) as missing:
        catalog.get_customer("cus-ghost")
    assert (missing.value.code, missing.value.field) == ("customer_not_found", "customer_id")
    with pytest.raises(ValidationError) as bad:
        catalog.create_customer(email="z@example.com", country="ZZ")
    assert (bad.value.code, bad.value.field) == ("unknown_country", "country")


def test_channels_merchants_warehouses(catalog: Catalog, db_snapshot: Callable[[], Any]) -> None:
    catalog.create_channel(id="web", name="Web", currency="EUR", country="DE")
    catalog.create_merchant(id="m1", name="M1")
    catalog.create_warehouse(id="wh-b", name="B", country="FR", click_and_collect=True)
    catalog.create_warehouse(id="wh-a", name="A", country="DE")
    assert [w.id for w in catalog.list_warehouses()] == ["wh-a", "wh-b"]
    assert [(c.id, c.currency) for c in catalog.list_channels()] == [("web", "EUR")]
    assert [m.id for m in catalog.list_merchants()] == ["m1"]
    before = db_snapshot()
    for call, error, code in [
        (
            lambda: catalog.create_warehouse(id="wh-a", name="A2", country="DE"),
            AlreadyExists,
            "already_exists",
        ),
        (
            lambda: catalog.create_channel(id="web", name="W", currency="EUR"),
            AlreadyExists,
            "already_exists",
        ),
        (lambda: catalog.create_merchant(id="m1", name="again"), AlreadyExists, "already_exists"),
        (
            lambda: catalog.create_channel(id="tv", name="TV", currency="EURO"),
            UnknownCurrency,
            "unknown_currency",
        ),
        (
            lambda: catalog.create_warehouse(id="wh-c", name="C", country="XX"),
            ValidationError,
            "unknown_country",
        ),
    ]:
        with pytest.raises(error) as err:
            call()
        assert err.value.code == code
    assert db_snapshot() == before


# --- products ---------------------------------------------------------------------------------


def test_create_and_get_product(catalog: Catalog) -> None:
    _product(
        catalog,
        "P1",
        list_price=Decimal("19.999"),
        cost=Decimal("7.005"),
        brand="Acme",
        map_price=Decimal("15"),
        attributes={"color": "red"},
    )
    p = catalog.get_product("P1")
    assert (p.list_price, p.cost, p.map_price) == (
        Decimal("20.00"),
        Decimal("7.01"),
        Decimal("15.00"),
    )
    assert (p.brand, p.attributes, p.active, p.hidden) == ("Acme", {"color": "red"}, True, False)
    with pytest.raises(ProductNotFound) as err:
        catalog.get_product("P404")
    assert (err.value.code, err.value.field) == ("product_not_found", "sku")


def test_duplicate_sku_is_refused(catalog: Catalog) -> None:
    _product(catalog, "P1", list_price=Decimal("1.00"))
    with pytest.raises(AlreadyExists) as err:
        _product(catalog, "P1", list_price=Decimal("2.00"))
    assert (err.value.code, err.value.field) == ("already_exists", "sku")
    assert catalog.get_product("P1").list_price == Decimal("1.00")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"list_price": Decimal("-0.01")}, "list_price"),
        ({"list_price": Decimal("NaN")}, "list_price"),
        ({"list_price": Decimal("Infinity")}, "list_price"),
        ({"cost": Decimal("-1")}, "cost"),
        ({"map_price": Decimal("-5")}, "map_price"),
        ({"list_price": Decimal("1e12")}, "list_price"),  # does not fit Numeric(14, 2)
    ],
    ids=[
        "negative-price",
        "nan-price",
        "infinite-price",
        "negative-cost",
        "negative-map",
        "price-too-large",
    ],
)
def test_bad_amounts_are_refused(
    catalog: Catalog, db_snapshot: Callable[[], Any], kwargs: dict[str, Any], field: str
) -> None:
    before = db_snapshot()
    with pytest.raises(InvalidAmount) as err:
        _product(catalog, "BAD", **kwargs)
    assert (err.value.code, err.value.field) == ("invalid_amount", field)
    assert db_snapshot() == before


def test_unknown_product_currency(catalog: Catalog) -> None:
    with pytest.raises(UnknownCurrency):
        catalog.create_product(
            sku="P", title="P", category="c", list_price=Decimal(1), currency="eur"
        )


def test_pagination_walks_every_visible_product_once(catalog: Catalog) -> None:
    skus = [f"SKU-{i:03d}" for i in range(23)]
    for i, sku in enumerate(reversed(skus)):
        _product(catalog, sku, category="even" if i % 2 == 0 else "odd")
    _product(catalog, "SKU-HIDDEN", hidden=True)
    _product(catalog, "SKU-GONE", active=False)

    pages, cursor = [], None
    while True:
        page = catalog.list_products(limit=10, cursor=cursor)
        pages.append([p.sku for p in page.items])
        cursor = page.next_cursor
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [sku for page in pages for sku in page] == skus


def test_exact_multiple_of_the_limit_has_no_empty_last_page(catalog: Catalog) -> None:
    for i in range(20):
        _product(catalog, f"S{i:02d}")
    first = catalog.list_products(limit=10)
    second = catalog.list_products(limit=10, cursor=first.next_cursor)
    assert len(second.items) == 10
    assert second.next_cursor is None


def test_category_filter_and_hidden_or_inactive_products(catalog: Catalog) -> None:
    _product(catalog, "A", category="toys")
    _product(catalog, "B", category="toys", hidden=True)
    _product(catalog, "C", category="toys", active=False)
    _product(catalog, "D", category="books")
    assert [p.sku for p in catalog.list_products().items] == ["A", "D"]
    assert [p.sku for p in catalog.list_products(category="toys").items] == ["A"]
    assert catalog.list_products(category="garden").items == []
    assert catalog.get_product("B").hidden is True  # hidden from lists, still readable


@pytest.mark.parametrize("cursor", ["a", "zzzz", "not-a-cursor", "!!!!", "%%%", "@@@@@@@@"])
def test_a_bad_cursor_is_a_validation_error(catalog: Catalog, cursor: str) -> None:
    _product(catalog, "A")
    with pytest.raises(ValidationError) as err:
        catalog.list_products(cursor=cursor)
    assert err.value.field == "cursor"


def test_a_returned_cursor_round_trips(catalog: Catalog) -> None:
    for sku in ("A", "B", "C"):
        _product(catalog, sku)
    assert [p.sku for p in catalog.list_products(cursor=encode_cursor("A")).items] == ["B", "C"]


@pytest.mark.parametrize("limit", [0, -1, 501])
def test_limit_bounds(catalog: Catalog, limit: int) -> None:
    with pytest.raises(ValidationError) as err:
        catalog.list_products(limit=limit)
    assert err.value.field == "limit"


# --- stock ------------------------------------------------------------------------------------


def test_set_stock_creates_then_updates(
    catalog: Catalog, published: list[Event], store: Any
) -> None:
    _product(catalog, "NEW")
    level = catalog.set_stock("wh-fr", "NEW", 4)
    assert (level.warehouse_id, level.country, level.click_and_collect) == ("wh-fr", "FR", True)
    assert (level.on_hand, level.allocated, level.available) == (4, 0, 4)
    catalog.set_stock("wh-fr", "NEW", 9)
    catalog.set_stock("wh-de", "NEW", 0)
    levels = catalog.stock_levels("NEW")
    assert [(lv.warehouse_id, lv.on_hand, lv.allocated, lv.available) for lv in levels] == [
        ("wh-de", 0, 0, 0),
        ("wh-fr", 9, 0, 9),
    ]
    assert all(isinstance(e, StockChanged) for e in published)
    changes = [
        (e.sku, e.warehouse_id, e.on_hand, e.allocated)
        for e in published
        if isinstance(e, StockChanged)
    ]
    assert changes == [("NEW", "wh-fr", 4, 0), ("NEW", "wh-fr", 9, 0), ("NEW", "wh-de", 0, 0)]


def test_stock_levels_show_what_is_available(catalog: Catalog, orders: Orders, store: Any) -> None:
    orders.place(store.request(("TEE", 6)))
    levels = {lv.warehouse_id: lv for lv in catalog.stock_levels("TEE")}
    assert (levels["wh-de"].on_hand, levels["wh-de"].allocated, levels["wh-de"].available) == (
        5,
        5,
        0,
    )
    assert (levels["wh-fr"].on_hand, levels["wh-fr"].allocated, levels["wh-fr"].available) == (
        3,
        1,
        2,
    )
    assert catalog.stock_levels("CAP")[0].click_and_collect is True


def test_on_hand_cannot_go_below_allocated(
    catalog: Catalog,
    orders: Orders,
    db_snapshot: Callable[[], Any],
    published: list[Event],
    store: Any,
) -> None:
    orders.place(store.request(("MUG", 4)))
    published.clear()
    before = db_snapshot()
    with pytest.raises(Conflict) as err:
        catalog.set_stock("wh-de", "MUG", 3)
    assert (err.value.code, err.value.field) == ("stock_below_allocated", "on_hand")
    assert db_snapshot() == before
    assert published == []
    assert catalog.set_stock("wh-de", "MUG", 4).available == 0


@pytest.mark.parametrize(
    ("args", "error", "code", "field"),
    [
        (("wh-ghost", "TEE", 1), WarehouseNotFound, "warehouse_not_found", "warehouse_id"),
        (("wh-de", "GHOST", 1), ProductNotFound, "product_not_found", "sku"),
        (("wh-de", "TEE", -1), InvalidQuantity, "invalid_quantity", "on_hand"),
    ],
    ids=["unknown-warehouse", "unknown-product", "negative"],
)
def test_set_stock_refusals(
    catalog: Catalog,
    db_snapshot: Callable[[], Any],
    published: list[Event],
    store: Any,
    args: tuple[str, str, int],
    error: type[Exception],
    code: str,
    field: str,
) -> None:
    before = db_snapshot()
    with pytest.raises(error) as err:
        catalog.set_stock(*args)
    assert (err.value.code, err.value.field) == (code, field)  # type: ignore[attr-defined]
    assert db_snapshot() == before
    assert published == []


def test_stock_levels_of_an_unknown_product(catalog: Catalog) -> None:
    with pytest.raises(ProductNotFound):
        catalog.stock_levels("GHOST")


# --- concurrent writes to the same key ----------------------------------------------------------


def test_concurrent_creation_of_one_sku_gives_one_product_and_already_exists(
    catalog: Catalog, run_concurrently: Callable[..., list[Any]]
) -> None:
    n = 16
    outcomes = run_concurrently(lambda i: _product(catalog, "RACE", list_price=Decimal(i + 1)), n)
    errors = [o.error for o in outcomes if o.error is not None]
    assert [repr(e) for e in errors if not isinstance(e, AlreadyExists)] == []
    assert len(errors) == n - 1
    [winner] = [o for o in outcomes if o.error is None]
    assert catalog.get_product("RACE").list_price == Decimal(winner.index + 1)


def test_concurrent_first_counts_of_one_stock_slot_all_succeed(
    catalog: Catalog, store: Any, run_concurrently: Callable[..., list[Any]]
) -> None:
    """Sixteen stock counts for a slot that has no row yet: no driver error, the last one wins."""
    _product(catalog, "FRESH")
    outcomes = run_concurrently(lambda i: catalog.set_stock("wh-de", "FRESH", 10 + i), 16)
    assert [repr(o.error) for o in outcomes if o.error is not None] == []
    [level] = catalog.stock_levels("FRESH")
    assert level.on_hand in {10 + i for i in range(16)}
    assert level.allocated == 0
