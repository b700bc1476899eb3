"""Storefront events (view, add_to_cart, remove_from_cart, purchase, search): validated, stored
once per ``event_id``, then announced on the bus for the feature store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.commerce.db import Database, ignore_conflicts
from engine.commerce.groupcommit import GroupCommit
from engine.commerce.schema import Channel, Interaction, Product, utcnow
from engine.errors import ValidationError
from engine.events import InteractionInfo, InteractionsRecorded, MessageBus

TYPES = ("view", "add_to_cart", "remove_from_cart", "purchase", "search")
NEEDS_SKU = frozenset({"view", "add_to_cart", "remove_from_cart", "purchase"})
MAX_BATCH = 1000
MAX_FUTURE = timedelta(minutes=5)
GROUP_ROWS = 2 * MAX_BATCH  # rows of concurrent calls inserted in one transaction, at most


@dataclass(frozen=True, slots=True)
class InteractionRequest:
    event_id: str
    type: str
    timestamp: datetime
    customer_id: str | None = None
    session_id: str | None = None
    sku: str | None = None
    query: str | None = None
    recommendation_id: str | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    accepted: tuple[InteractionInfo, ...]
    duplicates: int


class KnownChannels:
    """The ids of the ``channels`` table, cached; a miss reloads them once (a channel added
    since is found), so validating a known channel costs no query."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ids: frozenset[str] = frozenset()

    def unknown(self, wanted: Iterable[str | None]) -> set[str]:
        """The channels of ``wanted`` that are not in the table (``None`` is no channel)."""
        missing = {c for c in wanted if c is not None} - self._ids
        if missing:
            with self.db.transaction(readonly=True) as s:
                self._ids = frozenset(s.scalars(select(Channel.id)))
            missing -= self._ids
        return missing

    def check(self, channel: str | None, field: str = "channel") -> None:
        if self.unknown([channel]):
            raise ValidationError(
                f"unknown channel {channel!r}", field=field, code="unknown_channel"
            )


class ProductCategories:
    """Each SKU's category, cached: a product is never deleted and its category is set once,
    at creation, so an entry never goes stale.  Only the SKUs not seen yet are queried, so an
    event batch about known products costs no query; an unknown SKU is looked up again on
    every call (a product created since is found).  Past ``capacity`` SKUs the cache starts
    over."""

    def __init__(self, db: Database, capacity: int = 200_000) -> None:
        self.db = db
        self.capacity = capacity
        self._known: dict[str, str] = {}

    def of(self, skus: Iterable[str]) -> dict[str, str]:
        """The category of each of ``skus`` that exists; unknown SKUs are left out."""
        wanted = set(skus)
        out = {sku: self._known[sku] for sku in wanted if sku in self._known}
        missing = sorted(wanted - out.keys())
        if missing:
            with self.db.transaction(readonly=True) as s:
                stmt = select(Product.sku, Product.category).where(Product.sku.in_(missing))
                found = dict(s.execute(stmt).tuples().all())
            if len(self._known) + len(found) > self.capacity:
                self._known = {}
            self._known.update(found)
            out.update(found)
        return out


class Interactions:
    def __init__(
        self,
        db: Database,
        bus: MessageBus,
        clock: Callable[[], datetime] = utcnow,
        *,
        within_insert: Sequence[Callable[[Session, list[dict[str, Any]]], None]] = (),
    ) -> None:
        """``within_insert``: what else to write in the transaction that inserts events,
        given the rows it inserted (new events only)."""
        self.db = db
        self.within_insert = tuple(within_insert)
        self.bus = bus
        self.clock = clock
        self.channels = KnownChannels(db)
        self.categories = ProductCategories(db)
        # one statement executed with many rows: compiled once and cached, where a statement
        # carrying its rows (.values(rows)) was compiled afresh on every call (~1.5 ms)
        self._insert = ignore_conflicts(db.dialect, Interaction, ["event_id"]).returning(
            Interaction.event_id
        )
        # concurrent calls' rows in one writing transaction (engine/commerce/groupcommit.py)
        self._writes: GroupCommit[list[dict[str, Any]], set[str]] = GroupCommit(
            self._insert_rows, max_size=GROUP_ROWS, size=len
        )

    def record(self, events: Sequence[InteractionRequest]) -> Recorded:
        """Store new events (all or none); a known ``event_id`` counts as a duplicate."""
        self._validate(events)
        unique: dict[str, InteractionRequest] = {}
        for ev in events:
            unique.setdefault(ev.event_id, ev)
        in_batch_dups = len(events) - len(unique)
        # The SKUs are looked up before the writing transaction, not inside it: on SQLite a
        # writing transaction holds the one write lock every other writer queues for, so it
        # holds nothing but the insert (a product is never deleted, only deactivated).
        categories = self.categories.of(ev.sku for ev in unique.values() if ev.sku)
        unknown = [
            {"field": f"events[{i}].sku", "sku": ev.sku}
            for i, ev in enumerate(events)
            if ev.sku and ev.sku not in categories
        ]
        if unknown:
            raise ValidationError(
                "unknown sku: " + ", ".join(str(u["sku"]) for u in unknown),
                field=str(unknown[0]["field"]),
                items=unknown,
                code="unknown_sku",
            )
        inserted = self._writes.submit([_row(ev) for ev in unique.values()])
        accepted = tuple(
            InteractionInfo(
                ev.event_id,
                ev.type,
                ev.customer_id,
                ev.session_id,
                ev.sku,
                categories.get(ev.sku) if ev.sku else None,
                ev.recommendation_id,
                ev.timestamp,
            )
            for ev in unique.values()
            if ev.event_id in inserted
        )
        if accepted:
            self.bus.publish(InteractionsRecorded(accepted))
        return Recorded(accepted, in_batch_dups + len(unique) - len(accepted))

    def _insert_rows(self, calls: Sequence[list[dict[str, Any]]]) -> list[set[str]]:
        """The rows of concurrent calls in one transaction; per call, the event ids it
        inserted.  An event id sent by two of the calls belongs to the first; the second
        finds it a duplicate, as it would have a moment later."""
        owner: dict[str, int] = {}
        rows = []
        for n, call in enumerate(calls):
            for row in call:
                if owner.setdefault(row["event_id"], n) == n:
                    rows.append(row)
        with self.db.transaction() as s:
            inserted = set(s.connection().execute(self._insert, rows).scalars())
            if self.within_insert and inserted:
                new = [row for row in rows if row["event_id"] in inserted]
                for also in self.within_insert:
                    also(s, new)
            out: list[set[str]] = [set() for _ in calls]
            for event_id in inserted:
                out[owner[event_id]].add(event_id)
        return out

    def _validate(self, events: Sequence[InteractionRequest]) -> None:
        if not events:
            raise ValidationError("send at least one event", field="events")
        if len(events) > MAX_BATCH:
            raise ValidationError(f"at most {MAX_BATCH} events per call", field="events")
        latest = self.clock() + MAX_FUTURE
        problems: list[dict[str, object]] = []
        for i, ev in enumerate(events):
            if ev.type not in TYPES:
                problems.append({"field": f"events[{i}].type", "reason": f"one of {TYPES}"})
            if not (ev.customer_id or ev.session_id):
                problems.append(
                    {
                        "field": f"events[{i}].customer_id",
                        "reason": "customer_id or session_id is required",
                    }
                )
            if ev.type in NEEDS_SKU and not ev.sku:
                problems.append(
                    {"field": f"events[{i}].sku", "reason": f"a {ev.type} event needs a sku"}
                )
            if ev.timestamp.tzinfo is None:
                problems.append({"field": f"events[{i}].timestamp", "reason": "needs a timezone"})
            elif ev.timestamp > latest:
                problems.append({"field": f"events[{i}].timestamp", "reason": "in the future"})
        unknown = self.channels.unknown(ev.channel for ev in events)
        problems += [
            {"field": f"events[{i}].channel", "reason": f"unknown channel {ev.channel!r}"}
            for i, ev in enumerate(events)
            if ev.channel in unknown
        ]
        if problems:
            raise ValidationError(
                "; ".join(f"{p['field']}: {p['reason']}" for p in problems),
                field=str(problems[0]["field"]),
                items=problems,
                code="invalid_event",
            )

    def history(self, since: datetime | None = None) -> list[Interaction]:
        with self.db.transaction(readonly=True) as s:
            stmt = select(Interaction).order_by(Interaction.ts, Interaction.event_id)
            if since is not None:
                stmt = stmt.where(Interaction.ts >= since)
            return list(s.scalars(stmt))


def _row(ev: InteractionRequest) -> dict[str, Any]:
    return {
        "event_id": ev.event_id,
        "type": ev.type,
        "customer_id": ev.customer_id,
        "session_id": ev.session_id,
        "sku": ev.sku,
        "query": ev.query,
        "recommendation_id": ev.recommendation_id,
        "ts": ev.timestamp,
        "channel_id": ev.channel,
    }
