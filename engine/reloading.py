"""Configuration kept in memory and reloaded from the database when it changes.

Rules, lists and widgets are read on every request but edited rarely, by any replica.  Each
replica keeps the loaded value and, at most every ``poll_s`` seconds, runs a cheap ``stamp``
query (a version counter, the rows' versions); only when the stamp differs does it ``load``
again.  The replica that made an edit calls ``invalidate`` after committing, so it sees its own
edit on the next read; the others see it within ``poll_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from engine.commerce.db import Database

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

    def get(self) -> T:
        current = self._value
        if current is not None and time.monotonic() - self._checked < self.poll_s:
            return current[1]
        with self._lock:
            now = time.monotonic()
            if self._value is not None and now - self._checked < self.poll_s:
                return self._value[1]
            with self.db.transaction(readonly=True) as s:
                stamp = self.stamp(s)
                if self._value is None or self._value[0] != stamp:
                    self._value = (stamp, self.load(s, stamp))
            self._checked = now
            return self._value[1]

    def invalidate(self) -> None:
        """Check the stamp on the next ``get`` (call it after committing an edit)."""
        self._checked = -float("inf")
