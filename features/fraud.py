"""The feature store as fraud decisions see it (``engine.fraud.decision.FeaturePort``).

A scored transaction is recorded under ``txn:<transaction_id>``: scoring the same transaction
again reads the same features and is not counted twice.  Labels (feedback) apply to the
transaction's customer, card and merchant label-delayed views, once per transaction.
"""

from __future__ import annotations

from datetime import datetime

from engine.fraud.decision import Decision, FeatureSnapshot, ScoreRequest
from features.definitions import Entity, FeatureEvent, LabelEvent
from features.ingest import transaction_event
from features.store import FeatureStore


def scored_transaction(request: ScoreRequest) -> FeatureEvent:
    """The feature event of a scored payment (``txn:<transaction_id>``)."""
    return transaction_event(
        event_id=f"txn:{request.transaction_id}",
        ts=request.ts,
        amount=request.amount,
        customer_id=request.customer_id,
        merchant_id=request.merchant_id,
        card=request.card.fingerprint if request.card else None,
        device_id=request.device_id,
        ip=request.ip,
        email=request.email,
        shipping_country=request.shipping_country,
    )


class TransactionFeatures:
    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def decide(self, request: ScoreRequest) -> FeatureSnapshot:
        read = self.store.decide(scored_transaction(request))
        return FeatureSnapshot(read.values, degraded=read.degraded, duplicate=read.duplicate)

    def label(self, decision: Decision, *, fraud: bool, reported_at: datetime) -> bool:
        ids = {
            Entity.CUSTOMER: decision.customer_id,
            Entity.MERCHANT: decision.merchant_id,
            Entity.CARD: decision.attributes.get("card_fingerprint"),
        }
        label = LabelEvent(
            label_id=f"txn:{decision.transaction_id}",
            tx_ts=decision.tx_at.timestamp(),
            reported_ts=reported_at.timestamp(),
            entities={k: str(v) for k, v in ids.items() if v},
            fraud=fraud,
        )
        # feedback is not on a checkout's path: the batch connection's timeout (seconds, not
        # the decisions' milliseconds) keeps a busy moment from leaving the label unapplied
        return not self.store.record_labels([label]).degraded
