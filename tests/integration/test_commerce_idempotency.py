"""Idempotency-Key on order placement: a replay is the same order and allocates once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.orders import Orders
from engine.errors import IdempotencyKeyReused
from engine.events import Event, OrderPlaced

pytestmark = pytest.mark.integration


def _count(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def _allocated(catalog: Catalog, sku: str) -> int:
    return sum(lvl.allocated for lvl in catalog.stock_levels(sku))


def test_sequential_replay_returns_the_same_order_and_allocates_once(
    db: Database, orders: Orders, catalog: Catalog, published: list[Event], store: Any
) -> None:
    req = store.request(("TEE", 2), ("MUG", 1), shipping_country="DE")
    first = orders.place(req, idempotency_key="key-1")
    again = orders.place(req, idempotency_key="key-1")
    third = orders.place(
        store.request(("TEE", 2), ("MUG", 1), shipping_country="DE"), idempotency_key="key-1"
    )
    assert first.replayed is False
    assert (again.replayed, third.replayed) == (True, True)
    assert first.order.id == again.order.id == third.order.id
    assert again.order.total == first.order.total
    assert [(ln.sku, ln.qty) for ln in again.order.lines] == [("TEE", 2), ("MUG", 1)]
    assert len(again.order.allocations) == len(first.order.allocations)
    assert _count(db, "orders") == 1
    assert _count(db, "allocations") == 2
    assert (_allocated(catalog, "TEE"), _allocated(catalog, "MUG")) == (2, 1)
    assert sum(isinstance(e, OrderPlaced) for e in published) == 1


def test_without_a_key_the_same_body_places_two_orders(
    db: Database, orders: Orders, store: Any
) -> None:
    req = store.request(("MUG", 1))
    assert orders.place(req).order.id != orders.place(req).order.id
    assert _count(db, "orders") == 2


def test_different_keys_are_different_orders(orders: Orders, store: Any) -> None:
    req = store.request(("MUG", 1))
    a = orders.place(req, idempotency_key="a").order
    b = orders.place(req, idempotency_key="b").order
    assert a.id != b.id


@pytest.mark.parametrize(
    "changed",
    [
        {"lines": [("TEE", 3)]},
        {"lines": [("MUG", 2)]},
        {"shipping_country": "FR"},
        {"channel": "web"},
        {"pickup_warehouse_id": "wh-fr"},
    ],
    ids=["other-qty", "other-sku", "other-country", "other-channel", "pickup"],
)
def test_same_key_with_a_different_body_is_refused_and_writes_nothing(
    orders: Orders,
    db_snapshot: Callable[[], Any],
    published: list[Event],
    store: Any,
    changed: dict[str, Any],
) -> None:
    original = orders.place(store.request(("TEE", 2)), idempotency_key="key-x").order
    published.clear()
    before = db_snapshot()
    changed = dict(changed)
    lines = changed.pop("lines", [("TEE", 2)])
    with pytest.raises(IdempotencyKeyReused) as err:
        orders.place(store.request(*lines, **changed), idempotency_key="key-x")
    assert err.value.code == "idempotency_key_reused"
    assert err.value.field == "Idempotency-Key"
    assert db_snapshot() == before
    assert published == []
    assert orders.place(store.request(("TEE", 2)), idempotency_key="key-x").order.id == original.id


@pytest.mark.parametrize("on_hand", [50, 2], ids=["ample-stock", "last-units"])
def test_16_concurrent_replays_make_one_order(
    db: Database,
    orders: Orders,
    catalog: Catalog,
    published: list[Event],
    store: Any,
    run_concurrently: Callable[..., list[Any]],
    on_hand: int,
) -> None:
    """A client retrying in parallel gets one order, whether or not the stock would cover two.

    With ``last-units`` the first request takes the last 2 units; a retry that already missed
    the key must still answer with that order, not with insufficient_stock.
    """
    catalog.set_stock("wh-de", "MUG", on_hand)
    published.clear()
    req = store.request(("MUG", 2))

    outcomes = run_concurrently(lambda i: orders.place(req, idempotency_key="retry-1"), 16)

    errors = [o.error for o in outcomes if o.error is not None]
    assert errors == [], f"replays failed: {[getattr(e, 'code', repr(e)) for e in errors]}"
    ids = {o.value.order.id for o in outcomes}
    assert len(ids) == 1
    assert sum(not o.value.replayed for o in outcomes) == 1
    assert _count(db, "orders") == 1
    assert _count(db, "allocations") == 1
    assert _allocated(catalog, "MUG") == 2
    assert [e.order_id for e in published if isinstance(e, OrderPlaced)] == list(ids)


def test_concurrent_requests_with_one_key_and_different_bodies(
    db: Database,
    orders: Orders,
    catalog: Catalog,
    store: Any,
    run_concurrently: Callable[..., list[Any]],
) -> None:
    """Exactly one body wins; the others get idempotency_key_reused or replay the same body."""
    bodies = [store.request(("MUG", 1 + i % 4)) for i in range(16)]

    outcomes = run_concurrently(lambda i: orders.place(bodies[i], idempotency_key="race"), 16)

    won = [o for o in outcomes if o.error is None]
    assert {type(o.error) for o in outcomes if o.error is not None} <= {IdempotencyKeyReused}
    assert len({o.value.order.id for o in won}) == 1
    winner = won[0].value.order
    assert all(bodies[o.index].lines == bodies[won[0].index].lines for o in won)
    assert _count(db, "orders") == 1
    assert _allocated(catalog, "MUG") == winner.lines[0].qty
