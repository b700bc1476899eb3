"""The online feature store: what decisions call.

``decide`` reads every feature of an event's entities and records the event in one round trip;
``read`` only reads; ``record`` ingests a batch (pre-aggregated per key, ``features/batch.py``);
``record_labels`` applies fraud labels.  When the backend is unreachable or slow, reads return
defaults flagged ``degraded`` and nothing raises into the caller; the writes it did not take wait
in a bounded backlog and are replayed, in order, once it answers (``features/backlog.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from features.backends import Backend, BackendUnavailable
from features.backlog import (
    Backlog,
    BacklogObserver,
    BacklogStatus,
    Batch,
    Item,
    Kind,
    StockRow,
    Unavailable,
)
from features.definitions import (
    Entity,
    FeatureEvent,
    FeatureValues,
    FeatureView,
    LabelEvent,
    derive,
    views_of,
)
from features.pipeline import Claimed
from features.plan import Plan, as_dict, decode, plan_event, plan_label, plan_read

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeatureRead:
    values: FeatureValues
    degraded: bool = False
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class IngestResult:
    """``accepted`` + ``duplicates`` writes were applied now; ``deferred`` wait in the backlog
    (``degraded``)."""

    accepted: int
    duplicates: int
    degraded: bool = False
    deferred: int = 0


class FeatureStore:
    def __init__(
        self,
        backend: Backend,
        *,
        bulk: Backend | None = None,
        batch_size: int = 500,
        backlog_capacity: int = 100_000,
        backlog_observer: BacklogObserver | None = None,
    ) -> None:
        """``backend`` serves decisions (short timeouts); ``bulk`` takes batch writes and may
        wait longer (defaults to ``backend``).  Up to ``backlog_capacity`` writes are kept
        while the store is unreachable (0: none, they are lost)."""
        self.backend = backend
        self.bulk = bulk or backend
        self.batch_size = batch_size
        self.backlog = Backlog(
            self._replay, self.bulk.ping, capacity=backlog_capacity, observer=backlog_observer
        )

    # --- decisions -----------------------------------------------------------------------------
    def decide(self, event: FeatureEvent, *, record: bool = True) -> FeatureRead:
        """Features of the event's entities as of ``event.ts`` (before the event), and the
        event recorded (once per ``event_id``) — one round trip.  While a backlog is pending
        the event joins it (and only the reads go out), so it is not applied before older
        writes."""
        queued = record and self.backlog.pending()
        read = self._read_plan(plan_event(event, read=True, record=record and not queued))
        if queued or (record and read.degraded):
            self.backlog.add("events", [event])
        return read

    def read(
        self,
        entities: dict[Entity, str],
        now: float | None = None,
        views: Sequence[FeatureView] | None = None,
    ) -> FeatureRead:
        now = time.time() if now is None else now
        chosen = [
            (v, entities[v.entity])
            for e in entities
            for v in views_of(e)
            if entities.get(v.entity) and (views is None or v in views)
        ]
        return self._read_plan(plan_read(chosen, now))

    def _read_plan(self, plan: Plan) -> FeatureRead:
        try:
            ((duplicate, results),) = self.backend.run([plan])
        except BackendUnavailable as exc:
            log.warning("feature store unavailable, serving defaults: %s", exc)
            return FeatureRead(derive(decode(plan, [None] * len(plan.reads))), degraded=True)
        return FeatureRead(derive(decode(plan, results)), duplicate=duplicate)

    # --- ingestion -----------------------------------------------------------------------------
    def record(self, events: Sequence[FeatureEvent], *, fast: bool = False) -> IngestResult:
        """Apply events (once per ``event_id``).  ``fast``: a few events, on the decision
        connection (short timeout), one function call per event in one round trip.  Otherwise
        the batch path on the bulk connection: ``batch_size`` events at a time, their ids
        claimed first, their writes pre-aggregated per key (``features/batch.py``); Redis ends
        in the same state either way."""
        if self.backlog.pending():
            return self._defer("events", events, 0, 0)
        claimed: Claimed = []
        result = self._record_now(events, fast=fast, claimed=claimed)
        if result.degraded:
            return self._defer("events", events, result.accepted, result.duplicates, claimed)
        return result

    def record_labels(self, labels: Sequence[LabelEvent], *, fast: bool = False) -> IngestResult:
        if self.backlog.pending():
            return self._defer("labels", labels, 0, 0)
        result = self._labels_now(labels, fast=fast)
        if result.degraded:
            return self._defer("labels", labels, result.accepted, result.duplicates)
        return result

    def _record_now(
        self, events: Sequence[FeatureEvent], *, fast: bool, claimed: Claimed
    ) -> IngestResult:
        if fast:
            return self._write_events(events, self.backend)
        return _tally(self.bulk.ingest(events, self.batch_size, claimed), len(events))

    def _labels_now(self, labels: Sequence[LabelEvent], *, fast: bool) -> IngestResult:
        plans = [plan_label(label) for label in labels]
        return self._write_plans(plans, self.backend if fast else self.bulk)

    def _defer(
        self,
        kind: Kind,
        items: Sequence[Item],
        accepted: int,
        duplicates: int,
        claimed: Sequence[tuple[str, int]] = (),
    ) -> IngestResult:
        """What was not applied (everything after the first ``accepted + duplicates``, which
        the store took in order) joins the backlog, with the chunks among it that batch
        ingestion had claimed before it was cut off."""
        rest = items[accepted + duplicates :]
        self.backlog.add(kind, rest, claimed)
        return IngestResult(accepted, duplicates, degraded=True, deferred=len(rest))

    def _write_plans(self, plans: list[Plan], backend: Backend) -> IngestResult:
        def counts() -> Iterator[tuple[int, int]]:
            for i in range(0, len(plans), self.batch_size):
                for duplicate, _ in backend.run(plans[i : i + self.batch_size]):
                    yield int(not duplicate), int(duplicate)

        return _tally(counts(), len(plans))

    # --- stock mirror --------------------------------------------------------------------------
    def set_stock(self, entries: Sequence[StockRow], *, fast: bool = False) -> bool:
        """(sku, warehouse, available units) per row; False when the store is unreachable (the
        rows not written wait in the backlog)."""
        if self.backlog.pending():
            self.backlog.add("stock", entries)
            return False
        done = self._stock_now(entries, fast=fast)
        if done < len(entries):
            self.backlog.add("stock", entries[done:])
            return False
        return True

    def _stock_now(self, entries: Sequence[StockRow], *, fast: bool) -> int:
        """How many rows were written (all, unless the store became unreachable)."""
        backend = self.backend if fast else self.bulk
        done = 0
        try:
            for i in range(0, len(entries), self.batch_size):
                backend.set_stock(entries[i : i + self.batch_size])
                done = min(i + self.batch_size, len(entries))
        except BackendUnavailable as exc:
            log.warning("stock mirror not updated: %s", exc)
        return done

    # --- the backlog ---------------------------------------------------------------------------
    def _replay(self, batch: Batch) -> None:
        """Apply one backlog batch on the bulk connection; raise ``Unavailable`` with how many
        of its items were applied when the store fails again."""
        if batch.kind == "stock":
            rows: list[StockRow] = batch.items  # type: ignore[assignment]
            done = self._stock_now(rows, fast=False)
            if done < len(rows):
                raise Unavailable(done)
            return
        if batch.kind == "events":
            events: list[FeatureEvent] = batch.items  # type: ignore[assignment]
            # Chunks that batch ingestion claimed before it was cut off: their writes are
            # finished under their tokens, each call once (features/pipeline.py).
            done = 0
            for token, n in list(batch.claims):
                try:
                    fresh = self.bulk.replay_claimed(events[done : done + n], token)
                except BackendUnavailable:
                    raise Unavailable(done) from None
                if fresh and self._write_events(fresh, self.bulk).degraded:
                    raise Unavailable(done)  # the chunk again: what it applied is not repeated
                done += n
            # The rest one function call per event, each claiming its id and writing in one
            # atomic step, never the batch path: a store that failed again between a chunk's
            # claims and its writes would leave claims to finish as above.
            result = self._write_events(events[done:], self.bulk)
            if result.degraded:
                raise Unavailable(done + result.accepted + result.duplicates)
            return
        result = self._labels_now(batch.items, fast=False)  # type: ignore[arg-type]
        if result.degraded:
            raise Unavailable(result.accepted + result.duplicates)

    def _write_events(self, events: Sequence[FeatureEvent], backend: Backend) -> IngestResult:
        """One function call per event, each claiming its id and writing in one atomic step."""
        plans = [plan_event(e, read=False, record=True) for e in events]
        return self._write_plans(plans, backend)

    def backlog_status(self) -> BacklogStatus:
        return self.backlog.status()

    def available(self, skus: Sequence[str]) -> tuple[dict[str, int], bool]:
        """Available units per SKU from the mirror (missing: unknown), and a degraded flag."""
        try:
            return self.backend.get_stock(skus), False
        except BackendUnavailable:
            return {}, True

    # --- operations ----------------------------------------------------------------------------
    def inspect(
        self, entity: Entity, entity_id: str, now: float | None = None
    ) -> dict[str, object]:
        """Every view of one entity: the values a decision would read now (means and ratios
        included), last write time, TTL."""
        now = time.time() if now is None else now
        views = views_of(entity)
        plan = plan_read([(v, entity_id) for v in views], now)
        try:
            ((_, results),) = self.backend.run([plan])
        except BackendUnavailable:
            return {"degraded": True, "views": {}}
        values = derive(decode(plan, results))
        out: dict[str, object] = {}
        reads = [o[3] for o in plan.outputs if o[1] == "gate"]
        for view, read in zip(views, reads, strict=True):
            last = as_dict(results[read]).get(b"_w")
            last_write = None if last is None else float(last)
            out[view.name] = {
                "updated_at": last_write,
                "ttl_s": view.ttl,
                "expired": last_write is None or now - last_write > view.ttl,
                "features": {k: v for k, v in values.items() if k.startswith(view.name + ".")},
            }
        return {"degraded": False, "views": out}

    def ping(self) -> bool:
        return self.backend.ping()

    def clear(self) -> int:
        return self.bulk.clear()

    def close(self) -> None:
        self.backlog.close()
        self.backend.close()
        if self.bulk is not self.backend:
            self.bulk.close()


def _tally(counts: Iterable[tuple[int, int]], total: int) -> IngestResult:
    """Sum (accepted, duplicates) as the writes go; when the store becomes unreachable midway,
    what was written so far, flagged degraded."""
    accepted = duplicates = 0
    try:
        for new, repeated in counts:
            accepted += new
            duplicates += repeated
    except BackendUnavailable as exc:
        log.warning(
            "feature store unavailable, %d writes not applied: %s",
            total - accepted - duplicates,
            exc,
        )
        return IngestResult(accepted, duplicates, degraded=True)
    return IngestResult(accepted, duplicates)
