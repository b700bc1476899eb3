"""The decision log: every fraud decision persisted, joinable by ``decision_id`` with the
feedback that arrives later.  Rows are written behind the request (``engine.writebehind``);
anything that reads the log (lookups, feedback) flushes first.  If the process dies, at most
the last 50 ms of decisions are lost; their feature-store effects are not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import exists, select

from engine.commerce.catalog import decode_cursor, encode_cursor
from engine.commerce.db import Database, insert_ignore
from engine.commerce.ids import new_id
from engine.commerce.schema import utcnow
from engine.errors import Conflict, NotFound, ValidationError
from engine.fraud.decision import Decision, Outcome, RiskLevel
from engine.fraud.explain import Reason
from engine.fraud.schema import FraudDecision, FraudFeedback
from engine.writebehind import WriteBehind

LABELS = ("fraud", "legit", "chargeback")
REVIEW_STATUSES = ("open", "resolved", "all")
RESOLUTIONS = {"approve": "legit", "refuse": "fraud"}  # a reviewer's verdict -> its label


class DecisionNotFound(NotFound):
    code = "decision_not_found"


class ReviewResolved(Conflict):
    code = "review_resolved"


class DecisionLog(WriteBehind[Decision]):
    """Decisions are written behind the request (``engine.writebehind``); reads flush first."""

    def __init__(self, db: Database, *, flush_interval: float = 0.25) -> None:
        super().__init__(
            db,
            FraudDecision,
            ["transaction_id"],
            _row,
            name="decision-log",
            flush_interval=flush_interval,
        )

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

    # --- the review queue ----------------------------------------------------------------------
    def reviews(
        self, status: str = "open", *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Decisions sent to manual review, newest first, and the cursor of the next page.
        ``open``: no label yet; ``resolved``: labelled (by a reviewer, or by a chargeback or
        other feedback that arrived first); ``all``."""
        if status not in REVIEW_STATUSES:
            raise ValidationError(
                f"status must be one of {', '.join(REVIEW_STATUSES)}", field="status"
            )
        if not 1 <= limit <= 500:
            raise ValidationError("limit must be between 1 and 500", field="limit")
        self.flush()
        labelled = exists().where(FraudFeedback.decision_id == FraudDecision.id)
        stmt = select(FraudDecision).where(FraudDecision.outcome == "review")
        if status == "open":
            stmt = stmt.where(~labelled)
        elif status == "resolved":
            stmt = stmt.where(labelled)
        if cursor:  # ids sort by creation
            stmt = stmt.where(FraudDecision.id < decode_cursor(cursor))
        stmt = stmt.order_by(FraudDecision.id.desc()).limit(limit + 1)
        with self.db.transaction(readonly=True) as session:
            rows = list(session.scalars(stmt))
            more, rows = len(rows) > limit, rows[:limit]
            labels: dict[str, list[dict[str, Any]]] = {}
            if rows:
                for fb in session.scalars(
                    select(FraudFeedback)
                    .where(FraudFeedback.decision_id.in_([r.id for r in rows]))
                    .order_by(FraudFeedback.created_at)
                ):
                    labels.setdefault(fb.decision_id, []).append(feedback_dict(fb))
            items = [review_dict(_decision(r), labels.get(r.id, [])) for r in rows]
        return items, encode_cursor(rows[-1].id) if more and rows else None

    # --- feedback ------------------------------------------------------------------------------
    def add_feedback(
        self,
        decision: Decision,
        label: str,
        reported_at: datetime,
        note: str | None = None,
        *,
        only_label: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Store ``label`` for ``decision`` once: (the stored feedback, whether this call
        stored it).  The same label sent again for the same decision (a retry, a replayed
        webhook) answers the feedback stored first and writes nothing.  ``only_label`` (a
        reviewer's verdict): ``ReviewResolved`` if the decision carries another label; the
        decision's row is locked while that is checked, so two reviewers' different verdicts
        cannot both be stored."""
        if label not in LABELS:
            raise ValidationError(f"label must be one of {', '.join(LABELS)}", field="label")
        row = {
            "id": new_id("fb"),
            "decision_id": decision.decision_id,
            "transaction_id": decision.transaction_id,
            "label": label,
            "reported_at": reported_at,
            "note": note,
            "created_at": utcnow(),
        }
        keys = ["decision_id", "label"]
        with self.db.transaction() as session:
            if only_label:  # SQLite: the write transaction (BEGIN IMMEDIATE) is the lock
                session.execute(
                    select(FraudDecision.id)
                    .where(FraudDecision.id == decision.decision_id)
                    .with_for_update()
                )
                other = session.scalars(
                    select(FraudFeedback.label).where(
                        FraudFeedback.decision_id == decision.decision_id,
                        FraudFeedback.label != label,
                    )
                ).first()
                if other is not None:
                    raise ReviewResolved(
                        f"decision {decision.decision_id} is already labelled {other!r}",
                        field="resolution",
                    )
            session.execute(insert_ignore(self.db.dialect, FraudFeedback, [row], keys))
            stored = session.scalars(
                select(FraudFeedback).where(
                    FraudFeedback.decision_id == decision.decision_id,
                    FraudFeedback.label == label,
                )
            ).one()
            return feedback_dict(stored), stored.id == row["id"]

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


def decision_dict(d: Decision) -> dict[str, Any]:
    """A logged decision for an operator: the answer and the request it judged."""
    return {
        **d.public(),
        "customer_id": d.customer_id,
        "merchant_id": d.merchant_id,
        "amount": float(d.amount),
        "currency": d.currency,
        "timestamp": d.tx_at,
        "attributes": d.attributes,
    }


def review_dict(d: Decision, feedback: list[dict[str, Any]]) -> dict[str, Any]:
    """A decision in the review queue: what a reviewer needs to judge it, and its labels (the
    first says how it was resolved: legit is an approval, fraud or a chargeback a refusal)."""
    first = feedback[0]["label"] if feedback else None
    approved = first == RESOLUTIONS["approve"]
    return {
        **decision_dict(d),
        "status": "resolved" if feedback else "open",
        "resolution": None if first is None else "approve" if approved else "refuse",
        "feedback": feedback,
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
        "matched_rules": d.matched_rules,  # JSON columns: orjson takes tuples and mappings
        "reasons": [
            {"feature": r.feature, "value": r.value, "contribution": r.contribution}
            for r in d.reasons
        ],
        "model_version": d.model_version,
        "features_degraded": d.features_degraded,
        "attributes": d.attributes,  # the engine's JSON codec writes Decimal / datetime as text
        "inputs": d.inputs,
        "created_at": d.created_at,
    }


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
