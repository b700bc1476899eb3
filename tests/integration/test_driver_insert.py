"""``DriverInsert`` (engine/commerce/db.py): rows made ready for the database's driver before
the write-behind logs' transactions read back as the ORM writes them, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from engine.commerce.db import Database, DriverInsert, ignore_conflicts
from engine.recommend.schema import Recommendation

pytestmark = pytest.mark.integration


def test_rows_made_ready_for_the_driver_read_back_as_the_orm_writes_them(db: Database) -> None:
    """``DriverInsert``: JSON through the engine's codec, aware UTC datetimes, booleans, and
    the Python-side defaults of the columns a row leaves out."""
    driver = DriverInsert(db.engine, ignore_conflicts(db.dialect, Recommendation, ["id"]))
    at = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    items = [{"sku": "A", "score": 0.5, "reason": "similar"}]
    full = {"id": "r1", "widget": "home", "customer_id": "c", "session_id": None,
            "context_sku": None, "items": items, "model_version": "v1", "degraded": True,
            "created_at": at, "channel_id": "web"}  # fmt: skip
    bare = {"id": "r2", "widget": "cart"}  # items, degraded and created_at have defaults
    before = datetime.now(UTC)
    prepared = driver.prepare([full, bare, {**full, "id": "r1"}])
    with db.transaction() as s:
        driver.execute(s, prepared)  # the repeated r1 is ignored, as the ORM's insert would
    with db.transaction(readonly=True) as s:
        rows = {r.id: r for r in s.scalars(select(Recommendation))}
    assert sorted(rows) == ["r1", "r2"]
    r1, r2 = rows["r1"], rows["r2"]
    assert (r1.items, r1.degraded, r1.created_at, r1.channel_id) == (full["items"], True, at, "web")
    assert (r2.items, r2.degraded, r2.customer_id) == ([], False, None)
    assert before <= r2.created_at <= datetime.now(UTC)
