"""Score the seeded store's most recent payment attempts through the real fraud service, so the
demo's decision log (and the dashboard's fraud section) is not empty.

The seed writes payments that were never scored.  ``hold_back`` gives the newest day of them a
``transaction_id`` (their payment id: "the checkout scored it under this id") *before* the
online store is rebuilt, and the rebuild skips them (``replayable``).  ``score_held_back`` then
scores them in time order, as the checkout would have: each decision reads the features as of
its payment and records the attempt as ``txn:<transaction_id>`` — the very event a rebuild
derives from that payment, so the store ends exactly as a full rebuild leaves it.  Scoring
dedupes on the transaction id (``cw:seen:txn:…``): a payment recorded before (by a rebuild,
or an earlier run) is read, never counted twice.  Last, every held-back payment is applied
through the batch path, which skips those already recorded: a payment the scoring could not
record (no model yet, Redis busy) still reaches the store, once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import timedelta

from sqlalchemy import func, select, update

from engine.commerce.db import Database
from engine.commerce.history import payments
from engine.commerce.schema import Customer, Order, Payment
from engine.errors import CartwiseError
from engine.events import Event, PaymentAttempted
from engine.fraud.decision import Card, ScoreRequest
from engine.fraud.service import FraudService
from features.ingest import payment_event
from features.store import FeatureStore

log = logging.getLogger(__name__)
HOLD_BACK = timedelta(days=1)


def hold_back(db: Database, span: timedelta = HOLD_BACK) -> frozenset[str]:
    """Give the payments of the newest ``span`` of history their payment id as transaction id
    (those without one); returns their ids."""
    with db.transaction() as s:
        newest = s.scalar(select(func.max(Payment.created_at)))
        if newest is None:
            return frozenset()
        recent = (Payment.created_at > newest - span, Payment.transaction_id.is_(None))
        ids = frozenset(s.scalars(select(Payment.id).where(*recent)))
        s.execute(update(Payment).where(*recent).values(transaction_id=Payment.id))
    return ids


def replayable(events: Iterable[Event], held: frozenset[str]) -> Iterator[Event]:
    """The history without the held-back payments (they are scored instead)."""
    return (e for e in events if not (isinstance(e, PaymentAttempted) and e.payment_id in held))


def score_held_back(
    db: Database, fraud: FraudService | None, store: FeatureStore, held: frozenset[str]
) -> Counter[str]:
    """Decisions by outcome (none without a fraud model); the held-back payments end up in
    the online store once either way."""
    outcomes: Counter[str] = Counter()
    if fraud is not None and fraud.model is not None:
        for request in score_requests(db, held):
            try:
                outcomes[fraud.score(request).outcome] += 1
            except CartwiseError as exc:  # recorded below all the same
                log.warning("payment %s not scored: %s", request.transaction_id, exc.message)
        fraud.decisions.flush()
    store.record(
        [
            payment_event(e)
            for e in payments(db)
            if isinstance(e, PaymentAttempted) and e.payment_id in held
        ]
    )
    return outcomes


def score_requests(db: Database, held: frozenset[str]) -> list[ScoreRequest]:
    """The checkout's scoring request of each held-back payment, oldest first."""
    stmt = (
        select(Payment, Order.merchant_id, Order.shipping_country, Order.channel_id, Customer.email)
        .join(Order, Order.id == Payment.order_id)
        .join(Customer, Customer.id == Payment.customer_id)
        .where(Payment.id.in_(sorted(held)))
        .order_by(Payment.created_at, Payment.id)
    )
    with db.transaction(readonly=True) as s:
        return [_request(*row) for row in s.execute(stmt)]


def _request(
    p: Payment, merchant: str | None, country: str | None, channel: str | None, email: str | None
) -> ScoreRequest:
    card = (
        Card(p.card_fingerprint, p.card_bin, p.card_country, p.card_last4)
        if p.card_fingerprint
        else None
    )
    return ScoreRequest(
        transaction_id=p.transaction_id or p.id,
        customer_id=p.customer_id,
        amount=p.amount,
        currency=p.currency,
        ts=p.created_at,
        payment_method=p.method,
        card=card,
        device_id=p.device_id,
        ip=p.ip,
        email=email,
        shipping_country=country,
        merchant_id=merchant,
        channel=channel,
    )
