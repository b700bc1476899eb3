"""Group commit: the writes of concurrent requests done in one transaction.

A writing transaction on SQLite holds the database's one write lock, and every writer queues
for it (``engine.commerce.db.WriterQueue``); what a transaction costs besides its rows — the
lock's hand-over, ``BEGIN``, the commit, and the GIL won back after each statement on a busy
process — is paid once per transaction, not once per row.  Under load, storefront event calls
each paid it for two rows, and the queue for the lock became the latency of every writer.

``GroupCommit`` is the classic leader/follower scheme: a caller that finds no write under way
leads, and writes what is queued (its own submission first) in one call of ``write``; callers
that arrive meanwhile queue and wait; when the leader is done it hands the lead to the oldest
waiter, whose group is everything queued by then.  Nobody waits for a timer: alone, a caller
writes at once, as before; under load, groups grow with the queue.  Each caller still returns
only once its own rows are committed, with its own result, or raises its own error.

A group that fails for a reason other than an unavailable database is written again one
submission at a time, so one bad submission fails alone.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from engine.errors import Unavailable

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class _Entry(Generic[T, R]):
    item: T
    size: int
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # woken to lead the next group, not with a result
    result: R | None = None
    error: BaseException | None = None
    settled: bool = False

    def fail(self, error: BaseException) -> None:
        self.error, self.settled = error, True

    def succeed(self, result: R) -> None:
        self.result, self.settled = result, True

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        write: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_size: int,
        size: Callable[[T], int] = lambda _: 1,
    ) -> None:
        """``write(items)`` writes them in one transaction and returns one result per item,
        in order.  A group holds submissions up to ``max_size`` in all (by ``size``), and at
        least one."""
        self._write = write
        self._max_size = max_size
        self._size = size
        self._mutex = threading.Lock()
        self._queue: deque[_Entry[T, R]] = deque()
        self._leading = False
        self.groups = 0  # transactions written, and the submissions they held
        self.submissions = 0

    def submit(self, item: T) -> R:
        """Write ``item`` (in a group with whatever else is queued); return its result."""
        entry: _Entry[T, R] = _Entry(item, self._size(item))
        with self._mutex:
            self._queue.append(entry)
            lead = not self._leading
            self._leading = True
        if not lead:
            entry.done.wait()
            if not entry.lead:
                return entry.outcome()
        try:
            self._lead()
        finally:
            self._hand_over()
        return entry.outcome()

    def _lead(self) -> None:
        """Take a group from the head of the queue (the leader's own entry is first), write
        it, and give each entry of it its outcome."""
        with self._mutex:
            group = [self._queue.popleft()]
            total = group[0].size
            while self._queue and total + self._queue[0].size <= self._max_size:
                total += self._queue[0].size
                group.append(self._queue.popleft())
        try:
            self._settle(group)
        finally:
            for entry in group:  # whatever happened, nobody is left waiting
                if not entry.settled:
                    entry.fail(RuntimeError("the group's write was interrupted"))
            for entry in group[1:]:
                entry.done.set()

    def _settle(self, group: list[_Entry[T, R]]) -> None:
        try:
            results = self._write([e.item for e in group])
        except Unavailable as exc:
            for entry in group:
                entry.fail(exc)
            return
        except Exception as exc:
            if len(group) == 1:
                group[0].fail(exc)
                return
            for entry in group:  # one bad submission must not fail the others
                self._settle([entry])
            return
        with self._mutex:
            self.groups += 1
            self.submissions += len(group)
        for entry, result in zip(group, results, strict=True):
            entry.succeed(result)

    def _hand_over(self) -> None:
        """The lead passes to the oldest waiter, or lapses when nobody waits."""
        with self._mutex:
            if self._queue:
                nxt = self._queue[0]
                nxt.lead = True
                nxt.done.set()
            else:
                self._leading = False
