"""Storefront events recorded by concurrent calls (group commit, engine/commerce/groupcommit.py):
every event is stored once and counted as accepted by exactly one call, a call's unknown SKU
fails that call alone, and the transactions are shared."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.interactions import InteractionRequest, Interactions
from engine.commerce.schema import Interaction
from engine.errors import ValidationError
from engine.events import InteractionsRecorded, MessageBus

pytestmark = pytest.mark.integration


def search(event_id: str) -> InteractionRequest:
    return InteractionRequest(
        event_id=event_id,
        type="search",
        timestamp=datetime.now(UTC),
        session_id="s-1",
        query="boots",
    )


def test_concurrent_calls_store_each_event_once(db: Database) -> None:
    bus = MessageBus()
    published: list[str] = []
    bus.subscribe(
        InteractionsRecorded,
        lambda ev: published.extend(i.event_id for i in ev.items),  # type: ignore[attr-defined]
    )
    interactions = Interactions(db, bus)
    shared = [uuid.uuid4().hex for _ in range(30)]  # every call sends these
    accepted: list[int] = []
    duplicates: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(12)

    def call(n: int) -> None:
        own = [f"own-{n}-{i}" for i in range(5)]
        start.wait()
        for round_ in range(3):
            batch = [search(e) for e in shared[round_ * 10 : round_ * 10 + 10] + own]
            recorded = interactions.record(batch)
            with lock:
                accepted.append(len(recorded.accepted))
                duplicates.append(recorded.duplicates)
            own = []  # later rounds send only shared ids

    threads = [threading.Thread(target=call, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with db.transaction(readonly=True) as s:
        stored = s.scalar(select(func.count()).select_from(Interaction))
    assert stored == 30 + 12 * 5
    assert sum(accepted) == stored  # each stored event counted by one call only
    assert sum(accepted) + sum(duplicates) == 12 * (15 + 10 + 10)
    assert sorted(published) == sorted(set(published)) and len(published) == stored
    written = interactions._writes
    assert written.submissions == 36 and written.groups <= 36


def test_an_unknown_sku_fails_its_call_alone(db: Database) -> None:
    interactions = Interactions(db, MessageBus())
    bad = InteractionRequest(
        event_id="bad-1", type="view", timestamp=datetime.now(UTC), session_id="s", sku="NOPE"
    )
    with pytest.raises(ValidationError) as err:
        interactions.record([search("good-0"), bad])
    assert err.value.field == "events[1].sku"
    recorded = interactions.record([search("good-1")])
    assert [i.event_id for i in recorded.accepted] == ["good-1"]
    with db.transaction(readonly=True) as s:
        assert list(s.scalars(select(Interaction.event_id))) == ["good-1"]  # nothing half-written


def test_product_categories_are_queried_once_and_a_new_product_is_found(db: Database) -> None:
    catalog = Catalog(db, MessageBus())
    catalog.create_product(
        sku="CAT-A", title="A", category="boots", list_price=Decimal("10"), currency="EUR"
    )
    interactions = Interactions(db, MessageBus())
    queries: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "products.sku IN" in statement:
            queries.append(statement)

    view = lambda event_id, sku: InteractionRequest(  # noqa: E731
        event_id=event_id, type="view", timestamp=datetime.now(UTC), session_id="s", sku=sku
    )
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        first = interactions.record([view("c-1", "CAT-A")])
        again = interactions.record([view("c-2", "CAT-A"), view("c-3", "CAT-A")])
        assert len(queries) == 1  # the category of a known SKU costs no query
        with pytest.raises(ValidationError):
            interactions.record([view("c-4", "CAT-B")])
        catalog.create_product(
            sku="CAT-B", title="B", category="hats", list_price=Decimal("5"), currency="EUR"
        )
        later = interactions.record([view("c-4", "CAT-B"), view("c-5", "CAT-A")])
        assert len(queries) == 3  # the miss was looked up again, CAT-A still not
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert [i.category for i in first.accepted + again.accepted] == ["boots"] * 3
    assert [i.category for i in later.accepted] == ["hats", "boots"]
