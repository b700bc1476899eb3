"""Rows written behind the request path: a background thread inserts them in batches.

A SQL insert per request would cost a round trip (and on SQLite the write lock) on the hot path
of every decision; instead rows are queued and a thread inserts them with one cached
``INSERT … ON CONFLICT DO NOTHING`` executed many times (at most ``flush_interval`` later).
Readers call ``flush`` first, so nobody sees a row "missing" that it was just told about.  If
the process dies, at most the last interval's rows are lost.

When the database is away the rows are kept, not dropped: the thread retries the batch with a
backoff (``RETRY_MIN_S`` doubling up to ``RETRY_MAX_S``), so what was decided during an outage
is in the database once it returns.  The buffer is bounded (``capacity`` rows): when it is full
the oldest rows are dropped and counted (``dropped``), logged once per outage.  A ``flush``
during an outage wakes the thread for an immediate retry and raises ``Unavailable`` if that
fails, so a reader fails fast instead of waiting.  A batch the database refuses for another
reason (a bad row) is written row by row, and only the rows it refuses are dropped.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from engine.commerce.db import Database, DriverInsert, database_unavailable, ignore_conflicts
from engine.errors import Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
CHUNK = 8
RETRY_MIN_S = 0.05
RETRY_MAX_S = 2.0


@dataclass(eq=False)
class _Waiter:
    """A ``flush`` waiting until every row numbered below ``upto`` is settled."""

    upto: int
    done: threading.Event = field(default_factory=threading.Event)
    failed: bool = False


class WriteBehind(Generic[T]):
    def __init__(
        self,
        db: Database,
        model: Any,
        keys: list[str],
        to_row: Callable[[T], dict[str, Any]],
        *,
        name: str,
        flush_interval: float = 0.25,
        batch: int = 500,
        capacity: int = 50_000,
    ) -> None:
        self.db = db
        self.to_row = to_row
        self.name = name
        self.flush_interval = flush_interval
        self.batch = batch
        self.capacity = max(capacity, 1)
        self.dropped = 0  # rows given up: buffer full during an outage, or refused by the DB
        self.written = 0
        self._insert = ignore_conflicts(db.dialect, model, keys)  # a log may set an upsert
        self._driver: DriverInsert | None = None  # made from it at the first write
        # every row not in the database yet, numbered in order of arrival; the batch being
        # written stays in it (the oldest rows) until its transaction commits
        self._rows: deque[tuple[int, T]] = deque()
        self._next = 0
        self._writing = -1  # the newest row of the batch being written (-1: none)
        self._lost_in_flight = 0  # of the dropped rows, those in the batch being written
        self._waiters: list[_Waiter] = []
        self._lock = threading.Condition()
        self._wake = threading.Event()  # a flush cuts a retry's backoff short
        self._down_since: float | None = None  # the database failed a write since then
        self._dropping = False  # the buffer overflowed during this outage (logged once)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Rows not in the database yet."""
        with self._lock:
            return len(self._rows)

    def append(self, item: T) -> None:
        with self._lock:
            if len(self._rows) >= self.capacity:
                self._drop_oldest()
            self._rows.append((self._next, item))
            self._next += 1
            if len(self._rows) == 1 or len(self._rows) == self.batch:
                self._lock.notify()

    def flush(self, timeout: float = 10.0) -> None:
        """Return once every item appended before the call is in the database (or was
        dropped).  Raises ``Unavailable`` when the database cannot take them now."""
        if self._closed or not self._thread.is_alive():
            return
        with self._lock:
            waiter = _Waiter(self._next)
            if self._settled_below() >= waiter.upto:
                return
            self._waiters.append(waiter)
            self._lock.notify()
        self._wake.set()
        waiter.done.wait(timeout)
        if waiter.failed:
            raise database_unavailable()

    def close(self) -> None:
        if not self._closed:
            try:
                self.flush()
            except Unavailable:
                log.error("%s: closing with %d rows not persisted", self.name, self.pending)
            self._closed = True

    # --- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        # Linux nices threads one by one: the log yields the CPU to request threads
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        delay = RETRY_MIN_S
        while True:
            batch = self._next_batch()
            try:
                written = self._persist([item for _, item in batch])
            except Unavailable as exc:
                self._failed(exc)
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self._succeeded(written)
            delay = RETRY_MIN_S

    def _next_batch(self) -> list[tuple[int, T]]:
        """Wait for rows, then up to ``flush_interval`` for a fuller batch (unless a flush is
        waiting or the database is away); the oldest ``batch`` rows."""
        with self._lock:
            while not self._rows:
                self._lock.wait()
            deadline = time.monotonic() + self.flush_interval
            while len(self._rows) < self.batch and not self._waiters and self._down_since is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            batch = list(itertools.islice(self._rows, self.batch))
            self._writing, self._lost_in_flight = batch[-1][0], 0
            return batch

    def _succeeded(self, written: int) -> None:
        with self._lock:
            while self._rows and self._rows[0][0] <= self._writing:
                self._rows.popleft()
            self.dropped -= self._lost_in_flight  # dropped from the buffer, but written
            self._writing = -1
            self.written += written
            if self._down_since is not None:
                log.warning(
                    "%s: database back after %.1f s; the rows kept meanwhile are written "
                    "(%d dropped so far)",
                    self.name,
                    time.monotonic() - self._down_since,
                    self.dropped,
                )
                self._down_since = None
            self._dropping = False  # the next overflow is logged again
            self._settle(failed=False)

    def _failed(self, exc: Unavailable) -> None:
        with self._lock:
            self._writing = -1
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning(
                    "%s: database unavailable (%s); keeping %d rows and retrying",
                    self.name,
                    exc.message,
                    len(self._rows),
                )
            self._settle(failed=True)

    def _drop_oldest(self) -> None:
        """Under the lock, the buffer full: the oldest row is given up."""
        seq, _ = self._rows.popleft()
        self.dropped += 1
        if seq <= self._writing:
            self._lost_in_flight += 1
        if not self._dropping:
            self._dropping = True
            log.error(
                "%s: buffer full (%d rows): dropping the oldest until the database is back",
                self.name,
                self.capacity,
            )

    def _settled_below(self) -> int:
        """Under the lock: every row numbered below this one is written or dropped."""
        return self._rows[0][0] if self._rows else self._next

    def _settle(self, *, failed: bool) -> None:
        """Under the lock: release the flushes that are done; after a failed write, every
        flush (its rows cannot be written now)."""
        below = self._settled_below()
        waiting = []
        for w in self._waiters:
            if failed or w.upto <= below:
                w.failed = w.upto > below
                w.done.set()
            else:
                waiting.append(w)
        self._waiters = waiting

    def _persist(self, items: list[T]) -> int:
        """Write ``items``, return how many were written; raises ``Unavailable`` when the
        database is away (rows written by then are written again: the inserts ignore
        conflicts).  A batch refused for another reason is written row by row, dropping the
        rows refused."""
        try:
            self._write(items)
            return len(items)
        except Unavailable:
            raise
        except Exception:
            if len(items) == 1:
                with self._lock:
                    self.dropped += 1
                log.exception("%s: the database refused a row; it is dropped", self.name)
                return 0
        return sum(self._persist([item]) for item in items)

    def _within(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """What a log also writes in the transaction that inserts ``rows``, before them."""

    def _write(self, items: list[T]) -> None:
        """One transaction, and nothing but the driver's insert in it.  The rows are
        converted and made ready for the driver before it (``DriverInsert``), in small chunks
        with a pause between them: that work holds the GIL, and a request thread waiting for
        it would see the whole batch as latency.  On SQLite a writing transaction holds the
        write lock every other writer queues for, and this thread runs at a lower priority."""
        if self._driver is None:
            self._driver = DriverInsert(self.db.engine, self._insert)
        rows: list[dict[str, Any]] = []
        prepared: dict[str, list[Any]] = {}
        for start in range(0, len(items), CHUNK):
            chunk = [self.to_row(i) for i in items[start : start + CHUNK]]
            rows += chunk
            self._driver.prepare(chunk, into=prepared)
            time.sleep(0)  # let request threads run
        with self.db.transaction() as session:
            self._within(session, rows)
            self._driver.execute(session, prepared)
