"""Price changes and suggestions in SQL: every change leaves an audit row, in the same
transaction as the price it changed.

A change is applied only if the SKU's price is still the one it was computed from (checked
under a lock every price writer takes): two reprices racing, or an approval racing a reprice,
cannot both move one price from the same starting point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from engine.commerce.ids import new_id
from engine.errors import NotFound, ValidationError
from engine.pricing.listings import cents, day_of, money
from engine.pricing.schema import PriceChange, PriceSuggestion, SkuPrice

SUGGESTION_STATUSES = ("pending", "approved", "rejected", "superseded")
PRICE_LOCK = 0x63770001  # pg_advisory_xact_lock key of price writers ("cw", 1)


class SuggestionNotFound(NotFound):
    code = "suggestion_not_found"


@dataclass(frozen=True, slots=True)
class Change:
    sku: str
    old_c: int
    new_c: int
    currency: str
    rule: str | None
    strategy: str
    bounded_by: str | None
    reason: str
    open_c: int  # the price today opened with (``Listing.opening``)
    suggestion_id: str | None = None


def apply_changes(s: Session, changes: Sequence[Change], *, actor: str, now: datetime) -> int:
    """Move each price from ``old_c`` to ``new_c`` with its audit row, in bulk; returns how
    many moved.  Writers of prices take one lock (PostgreSQL: a transaction-level advisory
    lock; SQLite: its write lock, taken at BEGIN), then each price is checked against what the
    change was computed from: one moved meanwhile is left alone."""
    if not changes:
        return 0
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PRICE_LOCK})
    skus = [c.sku for c in changes]
    current: dict[str, int] = {}
    for i in range(0, len(skus), 1_000):
        rows = s.execute(
            select(SkuPrice.sku, SkuPrice.price).where(SkuPrice.sku.in_(skus[i : i + 1_000]))
        )
        current.update((sku, cents(price)) for sku, price in rows)
    today = day_of(now)
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    for c in changes:
        have = current.get(c.sku)
        if have is not None and have != c.old_c:
            continue  # moved by someone else since it was read
        values = {
            "sku": c.sku,
            "price": money(c.new_c),
            "currency": c.currency,
            "rule": c.rule,
            "strategy": c.strategy,
            "bounded_by": c.bounded_by,
            "changed_at": now,
            "open_price": money(c.open_c),
            "open_day": today,
            "updated_at": now,
        }
        (inserts if have is None else updates).append(values)
        audits.append(
            {
                "sku": c.sku,
                "old_price": money(c.old_c),
                "new_price": money(c.new_c),
                "currency": c.currency,
                "rule": c.rule,
                "strategy": c.strategy,
                "bounded_by": c.bounded_by,
                "actor": actor,
                "reason": c.reason,
                "suggestion_id": c.suggestion_id,
                "created_at": now,
            }
        )
    if updates:
        s.execute(update(SkuPrice), updates)  # bulk UPDATE by primary key
    if inserts:
        s.execute(insert(SkuPrice), inserts)
    if audits:
        s.execute(insert(PriceChange), audits)
    return len(audits)


def suggest(s: Session, changes: Sequence[Change], *, now: datetime) -> int:
    """Pending suggestions for ``changes``; an SKU's earlier pending one is superseded."""
    skus = [c.sku for c in changes]
    for i in range(0, len(skus), 500):
        s.execute(
            update(PriceSuggestion)
            .where(PriceSuggestion.sku.in_(skus[i : i + 500]), PriceSuggestion.status == "pending")
            .values(status="superseded", decided_at=now, decided_by="reprice")
        )
    s.add_all(
        PriceSuggestion(
            id=new_id("sug"),
            sku=c.sku,
            current_price=money(c.old_c),
            suggested_price=money(c.new_c),
            currency=c.currency,
            rule=c.rule,
            strategy=c.strategy,
            bounded_by=c.bounded_by,
            reason=c.reason,
            status="pending",
            created_at=now,
        )
        for c in changes
    )
    return len(changes)


def history(
    s: Session, sku: str, *, limit: int = 50, before: int | None = None
) -> list[dict[str, Any]]:
    query = select(PriceChange).where(PriceChange.sku == sku)
    if before is not None:
        query = query.where(PriceChange.id < before)
    rows = s.scalars(query.order_by(PriceChange.id.desc()).limit(limit)).all()
    return [_change(r) for r in rows]


def _change(r: PriceChange) -> dict[str, Any]:
    return {
        "id": r.id,
        "sku": r.sku,
        "old": r.old_price,
        "new": r.new_price,
        "currency": r.currency,
        "rule": r.rule,
        "strategy": r.strategy,
        "bounded_by": r.bounded_by,
        "actor": r.actor,
        "reason": r.reason,
        "suggestion_id": r.suggestion_id,
        "at": r.created_at,
    }


def suggestions(
    s: Session, *, status: str | None, sku: str | None, limit: int
) -> list[dict[str, Any]]:
    if status is not None and status not in SUGGESTION_STATUSES:
        raise ValidationError(f"status is one of {', '.join(SUGGESTION_STATUSES)}", field="status")
    query = select(PriceSuggestion)
    if status is not None:
        query = query.where(PriceSuggestion.status == status)
    if sku is not None:
        query = query.where(PriceSuggestion.sku == sku)
    rows = s.scalars(query.order_by(PriceSuggestion.created_at.desc()).limit(limit)).all()
    return [suggestion_dict(r) for r in rows]


def get_suggestion(s: Session, suggestion_id: str) -> PriceSuggestion:
    """A suggestion, locked for the deciding transaction."""
    query = select(PriceSuggestion).where(PriceSuggestion.id == suggestion_id).with_for_update()
    row = s.scalars(query).first()
    if row is None:
        raise SuggestionNotFound(f"no suggestion {suggestion_id!r}", field="suggestion_id")
    return row


def suggestion_dict(r: PriceSuggestion) -> dict[str, Any]:
    return {
        "id": r.id,
        "sku": r.sku,
        "current_price": r.current_price,
        "suggested_price": r.suggested_price,
        "currency": r.currency,
        "rule": r.rule,
        "strategy": r.strategy,
        "bounded_by": r.bounded_by,
        "reason": r.reason,
        "status": r.status,
        "created_at": r.created_at,
        "decided_at": r.decided_at,
        "decided_by": r.decided_by,
        "note": r.note,
    }
