"""The decision log: every fraud decision persisted, joinable by ``decision_id`` with the
feedback that arrives later.

Writing a row on the request path would cost a SQL round trip (and on SQLite a write lock) on
every checkout, so decisions are written behind: a background thread inserts them in batches
(at most ``flush_interval`` later).  Anything that reads the log (lookups, feedback) flushes
first, so a caller never sees a decision "missing" that it was just given.  If the process dies,
at most the last interval's decisions are lost; their feature-store effects are not.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from engine.commerce.db import Database, insert_ignore
from engine.commerce.ids import new_id
from engine.errors import NotFound, ValidationError
from engine.fraud.decision import Decision, Outcome, RiskLevel
from engine.fraud.explain import Reason
from engine.fraud.schema import FraudDecision, FraudFeedback

log = logging.getLogger(__name__)
LABELS = ("fraud", "legit", "chargeback")


class DecisionNotFound(NotFound):
    code = "decision_not_found"


class DecisionLog:
    def __init__(
        self,
        db: Database,
        *,
        flush_interval: float = 0.05,
        batch: int = 500,
        capacity: int = 50_000,
    ) -> None:
        self.db = db
        self.flush_interval = flush_interval
        self.batch = batch
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[Decision | threading.Event] = queue.Queue(capacity)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    # --- writing -------------------------------------------------------------------------------
    def append(self, decision: Decision) -> None:
        try:
            self._queue.put(decision, timeout=0.05)
        except queue.Full:
            self.dropped += 1
            log.error("decision log full: decision %s not persisted", decision.decision_id)

    def flush(self, timeout: float = 10.0) -> None:
        """Return once every decision appended before the call is in the database."""
        if self._closed or not self._thread.is_alive():
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        if not self._closed:
            self.flush()
            self._closed = True

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            items = [first]
            try:
                while len(items) < self.batch:
                    items.append(self._queue.get(timeout=self.flush_interval))
            except queue.Empty:
                pass
            decisions = [i for i in items if isinstance(i, Decision)]
            if decisions:
                self._write(decisions)
            for i in items:
                if isinstance(i, threading.Event):
                    i.set()

    def _write(self, decisions: list[Decision]) -> None:
        rows = [_row(d) for d in decisions]
        try:
            with self.db.transaction() as session:
                stmt = insert_ignore(self.db.dialect, FraudDecision, rows, ["transaction_id"])
                session.execute(stmt)
            self.written += len(rows)
        except Exception:  # the log must never take the request path down with it
            self.dropped += len(rows)
            log.exception("could not persist %d fraud decisions", len(rows))

    # --- reading -------------------------------------------------------------------------------
    def get(self, decision_id: str) -> Decision:
        self.flush()
        with self.db.transaction(readonly=True) as session:
            row = session.get(FraudDecision, decision_id)
            if row is None:
                raise DecisionNotFound(f"no decision {decision_id!r}", field="decision_id")
            return _decision(row)

    def by_transaction(self, transaction_id: str) -> Decision | None:
        self.flush()
        with self.db.transaction(readonly=True) as session:
            row = session.scalars(
                select(FraudDecision).where(FraudDecision.transaction_id == transaction_id)
            ).first()
            return None if row is None else _decision(row)

    # --- feedback ------------------------------------------------------------------------------
    def add_feedback(
        self, decision: Decision, label: str, reported_at: datetime, note: str | None = None
    ) -> dict[str, Any]:
        if label not in LABELS:
            raise ValidationError(f"label must be one of {', '.join(LABELS)}", field="label")
        row = FraudFeedback(
            id=new_id("fb"),
            decision_id=decision.decision_id,
            transaction_id=decision.transaction_id,
            label=label,
            reported_at=reported_at,
            note=note,
        )
        with self.db.transaction() as session:
            session.add(row)
        return feedback_dict(row)

    def feedback(self, decision_id: str) -> list[dict[str, Any]]:
        with self.db.transaction(readonly=True) as session:
            rows = session.scalars(
                select(FraudFeedback)
                .where(FraudFeedback.decision_id == decision_id)
                .order_by(FraudFeedback.created_at)
            ).all()
            return [feedback_dict(r) for r in rows]


def feedback_dict(row: FraudFeedback) -> dict[str, Any]:
    return {
        "feedback_id": row.id,
        "decision_id": row.decision_id,
        "transaction_id": row.transaction_id,
        "label": row.label,
        "reported_at": row.reported_at,
        "note": row.note,
        "created_at": row.created_at,
    }


def _row(d: Decision) -> dict[str, Any]:
    return {
        "id": d.decision_id,
        "transaction_id": d.transaction_id,
        "customer_id": d.customer_id,
        "merchant_id": d.merchant_id,
        "amount": d.amount,
        "currency": d.currency,
        "tx_at": d.tx_at,
        "probability": d.probability,
        "risk_score": d.risk_score,
        "risk_level": d.risk_level,
        "outcome": d.outcome,
        "rule_id": d.rule_id,
        "matched_rules": list(d.matched_rules),
        "reasons": [asdict(r) for r in d.reasons],
        "model_version": d.model_version,
        "features_degraded": d.features_degraded,
        "attributes": {k: _jsonable(v) for k, v in d.attributes.items()},
        "inputs": list(d.inputs),
        "created_at": d.created_at,
    }


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal | datetime) else value


def _decision(row: FraudDecision) -> Decision:
    level: RiskLevel = row.risk_level  # type: ignore[assignment]
    outcome: Outcome = row.outcome  # type: ignore[assignment]
    return Decision(
        decision_id=row.id,
        transaction_id=row.transaction_id,
        customer_id=row.customer_id,
        merchant_id=row.merchant_id,
        amount=row.amount,
        currency=row.currency,
        tx_at=row.tx_at,
        probability=row.probability,
        risk_score=row.risk_score,
        risk_level=level,
        outcome=outcome,
        reasons=tuple(Reason(**r) for r in row.reasons),
        matched_rules=tuple(row.matched_rules),
        rule_id=row.rule_id,
        model_version=row.model_version,
        features_degraded=row.features_degraded,
        attributes=row.attributes,
        inputs=tuple(row.inputs),
        created_at=row.created_at,
    )
