"""What the decisions know of a customer: their segment, loyalty tier and RFM segment, read from
``customers.attributes`` (``segment``, ``loyalty_tier``, ``rfm_segment``) and cached in memory.

Pricing (segment discounts) and recommendations (widget audiences and promotions) share one
``CustomerSegments``: a replica preloads its newest customers at warm-up, and an entry lives
``ttl_s`` seconds, so a new batch of RFM segments reaches every replica within that time.
While the database is unavailable an expired entry is still used.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from engine.commerce.db import Database
from engine.commerce.schema import Customer
from engine.errors import Unavailable, ValidationError

RFM_ATTRIBUTE = "rfm_segment"


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    segment: str | None = None
    tier: str | None = None
    rfm: str | None = None


NO_PROFILE = CustomerProfile()


def profile_of(attributes: Mapping[str, Any] | None) -> CustomerProfile:
    attributes = attributes or {}

    def text(key: str) -> str | None:
        value = attributes.get(key)
        return str(value) if value else None

    return CustomerProfile(text("segment"), text("loyalty_tier"), text(RFM_ATTRIBUTE))


class CustomerSegments:
    """A customer's profile, cached for ``ttl_s`` seconds (up to ``size`` customers): a
    decision for a known shopper touches no database."""

    def __init__(self, db: Database, *, ttl_s: float = 300.0, size: int = 100_000) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.size = size
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, CustomerProfile | None]] = OrderedDict()

    def warm_up(self) -> str | None:
        """Load the newest ``size`` customers (a replica starts with its likely shoppers
        cached, and the lookup's connection and statement warm); returns one of their ids, to
        warm the rest of a decision path with (None: no customers yet)."""
        now = time.monotonic()
        with self.db.transaction(readonly=True) as s:
            rows = s.execute(
                select(Customer.id, Customer.attributes)
                .order_by(Customer.created_at.desc())
                .limit(self.size)
            ).all()
        with self._lock:
            for customer_id, attributes in reversed(rows):
                self._cache[customer_id] = (now, profile_of(attributes))
        return rows[0][0] if rows else None

    def get(self, customer_id: str) -> CustomerProfile:
        """The customer's profile; an unknown customer is a ``ValidationError`` naming
        ``customer_id`` (a quote for a customer who does not exist is refused)."""
        found = self._lookup(customer_id, trust_unknown=False)
        if found is None:
            raise ValidationError(
                f"unknown customer {customer_id!r}", field="customer_id", code="unknown_customer"
            )
        return found

    def find(self, customer_id: str) -> CustomerProfile | None:
        """The customer's profile, None for an unknown customer (a shopper not registered
        yet, cached like the others)."""
        return self._lookup(customer_id, trust_unknown=True)

    def _lookup(self, customer_id: str, *, trust_unknown: bool) -> CustomerProfile | None:
        """``trust_unknown=False``: a cached "unknown" is looked up again (the customer may
        have registered since; a strict lookup must not refuse them for ``ttl_s``)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(customer_id)
            fresh = hit is not None and now - hit[0] < self.ttl_s
            if hit is not None and fresh and (hit[1] is not None or trust_unknown):
                self._cache.move_to_end(customer_id)
                return hit[1]
        try:
            with self.db.transaction(readonly=True) as s:
                attributes = s.scalar(select(Customer.attributes).where(Customer.id == customer_id))
                exists = attributes is not None or bool(
                    s.scalar(select(func.count()).where(Customer.id == customer_id))
                )
        except Unavailable:
            # the database is away: a profile read before is better than no decision
            if hit is not None and (hit[1] is not None or trust_unknown):
                return hit[1]
            raise
        value = profile_of(attributes) if exists else None
        with self._lock:
            self._cache[customer_id] = (now, value)
            self._cache.move_to_end(customer_id)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return value

    def rfm(self, customer_id: str | None) -> str | None:
        """The customer's RFM segment (None: anonymous, unknown or not scored)."""
        if not customer_id:
            return None
        try:
            found = self.find(customer_id)
        except Unavailable:  # the database is away: widgets answer as for an unscored shopper
            return None
        return found.rfm if found is not None else None

    def invalidate(self) -> None:
        """Forget every cached profile (this replica recomputed the segments)."""
        with self._lock:
            self._cache.clear()
