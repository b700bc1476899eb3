"""Stock is never oversold under concurrent placement (the spec's oversell test), on both DBs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.orders import Orders
from engine.errors import InsufficientStock
from engine.events import Event, OrderPlaced

pytestmark = pytest.mark.integration


def _add_product(catalog: Catalog, sku: str, stock: dict[str, int]) -> None:
    catalog.create_product(
        sku=sku, title=sku, category="hot", list_price=Decimal("5.00"), currency="EUR"
    )
    for warehouse_id, on_hand in stock.items():
        catalog.set_stock(warehouse_id, sku, on_hand)


def _allocation_rows(db: Database, sku: str) -> list[tuple[Any, ...]]:
    with db.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT order_id, warehouse_id, qty, state FROM allocations WHERE sku = :s"),
                {"s": sku},
            )
        ]


def _order_count(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM orders")).scalar_one())


def _assert_only_insufficient_stock(outcomes: list[Any]) -> list[Any]:
    """Returns the successes; every failure must be a clean insufficient_stock."""
    others = [o.error for o in outcomes if o.error is not None
              and not isinstance(o.error, InsufficientStock)]  # fmt: skip
    assert others == [], f"unexpected errors: {others!r}"
    assert all(o.error.code == "insufficient_stock" for o in outcomes if o.error is not None)
    return [o for o in outcomes if o.error is None]


def test_64_concurrent_buyers_of_20_units_get_exactly_20_orders(
    db: Database,
    catalog: Catalog,
    orders: Orders,
    store: Any,
    published: list[Event],
    run_concurrently: Callable[..., list[Any]],
) -> None:
    _add_product(catalog, "HOT", {store.warehouse_de: 12, store.warehouse_fr: 8})
    published.clear()

    outcomes = run_concurrently(lambda i: orders.place(store.request(("HOT", 1))), 64)

    won = _assert_only_insufficient_stock(outcomes)
    assert len(won) == 20
    assert sum(o.error is not None for o in outcomes) == 44
    assert len({o.value.order.id for o in won}) == 20
    assert _order_count(db) == 20

    levels = catalog.stock_levels("HOT")
    assert all(lvl.allocated <= lvl.on_hand for lvl in levels)
    assert {lvl.warehouse_id: (lvl.on_hand, lvl.allocated) for lvl in levels} == {
        store.warehouse_de: (12, 12),
        store.warehouse_fr: (8, 8),
    }
    rows = _allocation_rows(db, "HOT")
    assert len(rows) == 20
    assert {r[3] for r in rows} == {"allocated"}
    assert sum(r[2] for r in rows) == 20
    assert Counter(r[1] for r in rows) == {store.warehouse_de: 12, store.warehouse_fr: 8}
    assert sorted(e.order_id for e in published if isinstance(e, OrderPlaced)) == sorted(
        o.value.order.id for o in won
    )


def test_opposite_line_orders_do_not_deadlock_or_oversell(
    db: Database,
    catalog: Catalog,
    orders: Orders,
    store: Any,
    run_concurrently: Callable[..., list[Any]],
) -> None:
    """Half the buyers list X then Y, the other half Y then X: the fixed lock order must hold."""
    _add_product(catalog, "X", {store.warehouse_de: 7, store.warehouse_fr: 5})
    _add_product(catalog, "Y", {store.warehouse_de: 4, store.warehouse_fr: 5})

    def buy(i: int) -> Any:
        pair = [("X", 1), ("Y", 1)]
        return orders.place(store.request(*(pair if i % 2 else pair[::-1])))

    outcomes = run_concurrently(buy, 40)

    won = _assert_only_insufficient_stock(outcomes)
    assert len(won) == 9  # Y (9 units) runs out first; X keeps 3
    assert _order_count(db) == 9
    for sku, on_hand, allocated in (("X", 12, 9), ("Y", 9, 9)):
        levels = catalog.stock_levels(sku)
        assert all(lvl.allocated <= lvl.on_hand for lvl in levels)
        assert sum(lvl.on_hand for lvl in levels) == on_hand
        assert sum(lvl.allocated for lvl in levels) == allocated
        rows = _allocation_rows(db, sku)
        assert sum(r[2] for r in rows) == allocated
        assert {r[3] for r in rows} == {"allocated"}
    for o in won:
        assert sorted((a.sku, a.qty) for a in o.value.order.allocations if a.sku == "Y") == [
            ("Y", 1)
        ]
        assert sum(a.qty for a in o.value.order.allocations if a.sku == "X") == 1


def test_concurrent_multi_unit_orders_never_exceed_stock(
    db: Database,
    catalog: Catalog,
    orders: Orders,
    store: Any,
    run_concurrently: Callable[..., list[Any]],
) -> None:
    """Buyers of 1, 2 and 3 units that force splits across warehouses; no unit is sold twice."""
    _add_product(catalog, "SPLIT", {store.warehouse_de: 10, store.warehouse_fr: 7})

    outcomes = run_concurrently(
        lambda i: orders.place(
            store.request(("SPLIT", 1 + i % 3), shipping_country=("FR", "DE", None)[i % 3])
        ),
        30,
    )

    won = _assert_only_insufficient_stock(outcomes)
    sold = sum(sum(ln.qty for ln in o.value.order.lines) for o in won)
    levels = catalog.stock_levels("SPLIT")
    assert all(lvl.allocated <= lvl.on_hand for lvl in levels)
    assert sum(lvl.allocated for lvl in levels) == sold
    assert sum(r[2] for r in _allocation_rows(db, "SPLIT")) == sold
    assert 17 - sold < 3, "an order of at most 3 units was refused while more were available"
