"""Writes the online store could not take, kept in order until it answers again.

When Redis is unreachable (down, restarting, failing over, or too slow for the decision
timeout) a decision still answers on default features; what it would have recorded — the scored
transaction, a label, storefront events, order lines, stock levels — is appended here instead of
being lost.  A background thread pings the store with a growing pause (``retry_s`` up to
``max_retry_s``) and, once it answers, applies the backlog oldest first through the same write
paths — events one function call each, which claims the id and writes in one atomic step, and a
chunk that batch ingestion had claimed when it was cut off finished under its claim token, each
of its calls once (``features/pipeline.py``).  Replaying is safe: every event and label
carries the id the store dedupes on, and stock levels are absolute values, so a write that did
reach Redis before the failure is not counted twice.

While anything is pending, new writes join the end of the backlog rather than overtaking it, so
the store sees every write in the order it was made.

The backlog is bounded (``capacity`` writes).  Beyond it the oldest writes are dropped and
counted; the store is then missing them until ``cartwise features rebuild`` recomputes it from
the commerce database — the log says so once per outage.  A replica that dies loses its
backlog the same way; the rebuild covers that too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from features.definitions import FeatureEvent, LabelEvent

log = logging.getLogger(__name__)

Kind = Literal["events", "labels", "stock"]
StockRow = tuple[str, str, int]
Item = FeatureEvent | LabelEvent | StockRow


@dataclass(slots=True)
class Batch:
    kind: Kind
    items: list[Item]
    # (token, n): the first items, in groups of n, are chunks that batch ingestion claimed
    # under the token before it was cut off (features/pipeline.py); a group is replayed whole
    claims: list[tuple[str, int]] = field(default_factory=list)

    def drop(self, n: int) -> int:
        """Remove the first ``n`` items, and the rest of a claimed group ``n`` ends inside
        (a part of a group cannot be replayed exactly); returns how many were removed."""
        cut = 0
        while self.claims and cut + self.claims[0][1] <= n:
            cut += self.claims.pop(0)[1]
        if self.claims and cut < n:
            cut += self.claims.pop(0)[1]
        cut = max(cut, min(n, len(self.items)))
        del self.items[:cut]
        return cut


class Unavailable(Exception):
    """The store did not take a replayed batch; ``applied`` of its items were written."""

    def __init__(self, applied: int) -> None:
        super().__init__(f"{applied} applied")
        self.applied = applied


# applies one batch; returns normally when every item was written, else raises Unavailable
Apply = Callable[[Batch], None]


class BacklogObserver(Protocol):
    """Told of every change (metrics: ``serving/metrics.py``); called off the hot path only —
    nothing happens while the store answers."""

    def pending(self, n: int) -> None: ...  # writes waiting now

    def replayed(self, n: int) -> None: ...  # n more writes applied late

    def dropped(self, n: int) -> None: ...  # n more writes lost to the capacity


@dataclass(frozen=True, slots=True)
class BacklogStatus:
    pending: int
    dropped: int
    replayed: int


class Backlog:
    def __init__(
        self,
        apply: Apply,
        ping: Callable[[], bool],
        *,
        capacity: int = 100_000,
        retry_s: float = 0.1,
        max_retry_s: float = 2.0,
        observer: BacklogObserver | None = None,
    ) -> None:
        self._apply = apply
        self._ping = ping
        self.capacity = capacity
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self._batches: deque[Batch] = deque()
        self._size = 0
        self._inflight = False  # the replay thread holds a batch that is not applied yet
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.replayed = 0
        self._warned = False
        self.observer = observer

    # --- the write paths ---------------------------------------------------------------------
    def pending(self) -> bool:
        """Something waits to be replayed: a new write must queue behind it."""
        return self._size > 0 or self._inflight

    def add(
        self, kind: Kind, items: Sequence[Item], claims: Sequence[tuple[str, int]] = ()
    ) -> None:
        if not items or self.capacity <= 0:
            self._count_dropped(len(items))
            return
        with self._lock:
            self._batches.append(Batch(kind, list(items), list(claims)))
            self._size += len(items)
            over = self._size - self.capacity
            while over > 0:
                oldest = self._batches[0]
                cut = oldest.drop(over)
                if not oldest.items:
                    self._batches.popleft()
                self._size -= cut
                over -= cut
                self._count_dropped(cut)
            self._ensure_thread()
        self._observe_pending()

    def status(self) -> BacklogStatus:
        return BacklogStatus(self._size, self.dropped, self.replayed)

    def wait_empty(self, timeout: float) -> bool:
        """Block until everything is replayed (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.pending()

    def close(self, timeout: float = 2.0) -> None:
        """Stop replaying; one last attempt is made if the store answers."""
        if self._thread is not None and self.pending():
            self.wait_empty(timeout)
        self._closed = True
        self._wake.set()
        if self._size:
            log.error(
                "online store: %d writes were never applied (run `cartwise features rebuild`)",
                self._size,
            )

    # --- replay ------------------------------------------------------------------------------
    def _observe_pending(self) -> None:
        if self.observer is not None:
            self.observer.pending(self._size)

    def _count_replayed(self, n: int) -> None:
        self.replayed += n
        if self.observer is not None and n > 0:
            self.observer.replayed(n)

    def _count_dropped(self, n: int) -> None:
        if n <= 0:
            return
        self.dropped += n
        if self.observer is not None:
            self.observer.dropped(n)
        if not self._warned:
            self._warned = True
            log.error(
                "online store backlog full (%d writes): dropping the oldest; the store will "
                "miss them until `cartwise features rebuild`",
                self.capacity,
            )

    def _ensure_thread(self) -> None:  # called with the lock held
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="feature-backlog", daemon=True)
            self._thread.start()

    def _take(self) -> Batch | None:
        with self._lock:
            if not self._batches:
                self._inflight = False
                return None
            self._inflight = True  # first: ``pending()`` reads both without the lock
            batch = self._batches.popleft()
            self._size -= len(batch.items)
            return batch

    def _put_back(self, batch: Batch) -> None:
        with self._lock:
            if batch.items:
                self._batches.appendleft(batch)
                self._size += len(batch.items)
            self._inflight = False
        self._observe_pending()

    def _run(self) -> None:
        pause = self.retry_s
        log.warning("online store unreachable: queueing its writes and retrying")
        while not self._closed:
            if not self._ping():
                self._wake.wait(pause)
                pause = min(pause * 2, self.max_retry_s)
                continue
            batch = self._take()
            if batch is None:
                with self._lock:
                    if self._batches:  # added between the check and the lock
                        continue
                    self._thread = None
                log.warning(
                    "online store back: %d writes replayed, %d dropped",
                    self.replayed,
                    self.dropped,
                )
                self._warned = False
                return
            try:
                self._apply(batch)
            except Unavailable as exc:
                self._count_replayed(exc.applied)
                batch.drop(exc.applied)  # at a group's end: replays report no less
                self._put_back(batch)
                continue
            except Exception:  # a bug must not kill the replay thread and keep the backlog
                log.exception("online store: a replayed batch of %s failed", batch.kind)
                self._count_dropped(len(batch.items))
                batch.items.clear()
                self._put_back(batch)
                continue
            self._count_replayed(len(batch.items))
            pause = self.retry_s
            with self._lock:
                self._inflight = False
            self._observe_pending()
