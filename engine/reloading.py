"""Configuration kept in memory and reloaded from the database when it changes.

Rules, lists and widgets are read on every request but edited rarely, by any replica.  Each
replica keeps the loaded value and, at most every ``poll_s`` seconds, runs a cheap ``stamp``
query (a version counter, the rows' versions); only when the stamp differs does it ``load``
again.  The replica that made an edit calls ``invalidate`` after committing, so it sees its own
edit on the next read; the others see it within ``poll_s``.

While the database is unavailable a replica keeps deciding with what it loaded: ``get``
answers the last value (and checks again ``poll_s`` later) instead of failing the request;
only a replica that never loaded the value raises ``Unavailable``.  A request never waits for
another one's check: while one runs, the others answer the current value.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.errors import Unavailable

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Hashable)
T = TypeVar("T")


class Reloading(Generic[S, T]):
    def __init__(
        self,
        db: Database,
        stamp: Callable[[Session], S],
        load: Callable[[Session, S], T],
        *,
        poll_s: float = 1.0,
    ) -> None:
        self.db = db
        self.stamp = stamp
        self.load = load
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._value: tuple[S, T] | None = None
        self._checked = 0.0
        self._stale = False  # the last check failed: the value may be out of date

    def get(self) -> T:
        current = self._value
        if current is not None and time.monotonic() - self._checked < self.poll_s:
            return current[1]
        # another request is checking: answer what is loaded (unless it was invalidated)
        if not self._lock.acquire(blocking=current is None or self._checked == -float("inf")):
            assert current is not None
            return current[1]
        try:
            now = time.monotonic()
            if self._value is not None and now - self._checked < self.poll_s:
                return self._value[1]
            try:
                with self.db.transaction(readonly=True) as s:
                    stamp = self.stamp(s)
                    if self._value is None or self._value[0] != stamp:
                        self._value = (stamp, self.load(s, stamp))
            except Unavailable as exc:
                if self._value is None:
                    raise
                if not self._stale:
                    log.warning(
                        "%s: %s; serving what was loaded", self.load.__module__, exc.message
                    )
                self._stale = True
            else:
                self._stale = False
            self._checked = now
            return self._value[1]
        finally:
            self._lock.release()

    def invalidate(self) -> None:
        """Check the stamp on the next ``get`` (call it after committing an edit)."""
        self._checked = -float("inf")
