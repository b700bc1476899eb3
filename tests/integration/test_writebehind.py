"""The write-behind log through a database outage: rows are kept (bounded) and written when the
database returns; a full buffer drops the oldest and says so once; a refused row is dropped
alone; a flush during the outage fails fast."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.commerce.schema import Interaction
from engine.errors import Unavailable
from engine.writebehind import WriteBehind

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 1, tzinfo=UTC)


class Switchable(Database):
    """SQLite whose statements fail as a lost connection does while ``down``."""

    down = False

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        with super().transaction(readonly=readonly) as session:
            if self.down:
                raise OperationalError(
                    "INSERT", {}, ConnectionError("server closed the connection")
                )
            yield session


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Switchable]:
    database = Switchable(f"sqlite:///{tmp_path / 'log.db'}")
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


def _row(n: int) -> dict[str, Any]:
    if n < 0:
        raise ValueError("a row the database cannot take")
    return {"event_id": f"e{n:03d}", "type": "view", "customer_id": "c", "ts": NOW}


def _log(db: Database, **kwargs: Any) -> WriteBehind[int]:
    return WriteBehind(db, Interaction, ["event_id"], _row, name="test-log", **kwargs)


def _stored(db: Database) -> list[str]:
    with db.transaction(readonly=True) as s:
        return sorted(s.scalars(select(Interaction.event_id)))


def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_rows_kept_during_an_outage_are_written_when_the_database_returns(
    db: Switchable,
) -> None:
    log = _log(db)
    db.down = True
    for n in range(50):
        log.append(n)
    time.sleep(0.3)  # the writer tried, failed, and backs off
    assert log.pending == 50 and log.dropped == 0
    started = time.perf_counter()
    with pytest.raises(Unavailable) as failed:
        log.flush()
    assert time.perf_counter() - started < 0.5
    assert failed.value.code == "database_unavailable"

    db.down = False
    log.flush()  # wakes the writer from its backoff
    assert _stored(db) == [f"e{n:03d}" for n in range(50)]
    assert (log.pending, log.written, log.dropped) == (0, 50, 0)
    log.append(50)
    log.flush()
    assert len(_stored(db)) == 51


def test_without_a_flush_the_writer_retries_on_its_own(db: Switchable) -> None:
    log = _log(db)
    db.down = True
    log.append(1)
    time.sleep(0.5)
    db.down = False
    _wait_for(lambda: log.pending == 0)  # backoff at most RETRY_MAX_S
    assert _stored(db) == ["e001"]


def test_a_full_buffer_drops_the_oldest_and_logs_it_once(
    db: Switchable, caplog: pytest.LogCaptureFixture
) -> None:
    log = _log(db, capacity=10, batch=4)
    db.down = True
    with caplog.at_level(logging.WARNING, logger="engine.writebehind"):
        for n in range(25):
            log.append(n)
        time.sleep(0.2)  # the writer tried, failed, and backs off
        assert (log.pending, log.dropped) == (10, 15)
        db.down = False
        log.flush()
    assert _stored(db) == [f"e{n:03d}" for n in range(15, 25)]
    assert (log.written, log.dropped) == (10, 15)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("buffer full" in m for m in messages) == 1
    assert sum("database unavailable" in m for m in messages) == 1
    assert sum("database back" in m for m in messages) == 1


def test_a_row_the_database_refuses_is_dropped_alone(db: Switchable) -> None:
    log = _log(db)
    for n in (1, 2, -1, 3):
        log.append(n)
    log.flush()
    assert _stored(db) == ["e001", "e002", "e003"]
    assert (log.written, log.dropped) == (3, 1)
