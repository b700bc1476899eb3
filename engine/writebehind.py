"""Rows written behind the request path: a background thread inserts them in batches.

A SQL insert per request would cost a round trip (and on SQLite the write lock) on the hot path
of every decision; instead rows are queued and a thread inserts them with one cached
``INSERT … ON CONFLICT DO NOTHING`` executed many times (at most ``flush_interval`` later).
Readers call ``flush`` first, so nobody sees a row "missing" that it was just told about.  If
the process dies, at most the last interval's rows are lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from engine.commerce.db import Database, ignore_conflicts

log = logging.getLogger(__name__)
T = TypeVar("T")
CHUNK = 8


class WriteBehind(Generic[T]):
    def __init__(
        self,
        db: Database,
        model: Any,
        keys: list[str],
        to_row: Callable[[T], dict[str, Any]],
        *,
        name: str,
        flush_interval: float = 0.05,
        batch: int = 500,
        capacity: int = 50_000,
    ) -> None:
        self.db = db
        self.to_row = to_row
        self.name = name
        self.flush_interval = flush_interval
        self.batch = batch
        self.dropped = 0
        self.written = 0
        self._insert = ignore_conflicts(db.dialect, model, keys)
        self._queue: queue.Queue[T | threading.Event] = queue.Queue(capacity)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def append(self, item: T) -> None:
        try:
            self._queue.put(item, timeout=0.05)
        except queue.Full:
            self.dropped += 1
            log.error("%s full: a row was not persisted", self.name)

    def flush(self, timeout: float = 10.0) -> None:
        """Return once every item appended before the call is in the database."""
        if self._closed or not self._thread.is_alive():
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        if not self._closed:
            self.flush()
            self._closed = True

    def _run(self) -> None:
        # Linux nices threads one by one: the log yields the CPU to request threads
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            items = [self._queue.get()]
            try:
                while len(items) < self.batch:
                    items.append(self._queue.get(timeout=self.flush_interval))
            except queue.Empty:
                pass
            rows = [i for i in items if not isinstance(i, threading.Event)]
            if rows:
                self._write(rows)
            for i in items:
                if isinstance(i, threading.Event):
                    i.set()

    def _write(self, items: list[T]) -> None:
        """One transaction, executed in small chunks with a pause between them: converting
        and binding rows holds the GIL, and a request thread waiting for it would see the
        whole batch as latency."""
        try:
            with self.db.transaction() as session:
                for start in range(0, len(items), CHUNK):
                    # executemany of one cached statement (a multi-VALUES insert would be
                    # compiled afresh for every batch)
                    session.execute(
                        self._insert, [self.to_row(i) for i in items[start : start + CHUNK]]
                    )
                    time.sleep(0)  # let request threads run
            self.written += len(items)
        except Exception:  # the log must never take the request path down with it
            self.dropped += len(items)
            log.exception("%s: could not persist %d rows", self.name, len(items))
