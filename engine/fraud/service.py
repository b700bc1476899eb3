"""A fraud decision from end to end: features (one round trip), model, rules, reasons, log.

``FraudService.score`` is what the checkout endpoint calls.  It reads the transaction's
features and records the attempt in the same round trip (through ``FeaturePort``), scores the
model inputs with ONNX Runtime on one thread, evaluates the rules (challenge → allow → block →
review; shadow rules only recorded), falls back to the policy's score thresholds when no active
rule decides, explains every non-allow outcome, and queues the decision for the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from engine.commerce.ids import new_id
from engine.errors import Conflict, Unavailable, ValidationError
from engine.fraud.attributes import request_attributes
from engine.fraud.config import FraudConfig, Snapshot
from engine.fraud.decision import (
    Decision,
    FeaturePort,
    FeatureSnapshot,
    Outcome,
    Policy,
    RiskLevel,
    ScoreRequest,
    risk_score,
)
from engine.fraud.inputs import INPUTS, assemble
from engine.fraud.log import RESOLUTIONS, DecisionLog, DecisionNotFound
from engine.fraud.model import FraudModel
from engine.fraud.rules import Verdict
from engine.rollout import Rollout
from engine.rollout.log import ShadowLog, ShadowRecord

log = logging.getLogger(__name__)
FRAUD_LABELS = frozenset({"fraud", "chargeback"})


class NotInReview(Conflict):
    code = "not_in_review"


class ModelUnavailable(Unavailable):
    code = "model_unavailable"


class TransactionReused(Conflict):
    code = "transaction_id_reused"


class FraudService:
    def __init__(
        self,
        features: FeaturePort,
        config: FraudConfig,
        decisions: DecisionLog,
        model: FraudModel | None = None,
        policy: Policy | None = None,
        shadow_log: ShadowLog | None = None,
        name: str = "fraud",
    ) -> None:
        self.features = features
        self.config = config
        self.decisions = decisions
        self.shadow_log = shadow_log
        self.rollout: Rollout[FraudModel] = Rollout(name, model)
        self.policy = policy or Policy()

    @property
    def model(self) -> FraudModel | None:
        """The champion."""
        return self.rollout.champion

    def use_model(self, model: FraudModel | None) -> None:
        """A new champion; the challenger and its rollout stay."""
        self.rollout = self.rollout.with_champion(model)

    def use_rollout(self, rollout: Rollout[FraudModel]) -> None:
        # one attribute swap: requests in flight keep the models they read
        self.rollout = rollout

    def use_policy(self, policy: Policy) -> None:
        self.policy = policy

    # --- scoring -------------------------------------------------------------------------------
    def score(self, request: ScoreRequest) -> Decision:
        rollout, policy = self.rollout, self.policy
        model, _ = rollout.answer(request.customer_id)
        if model is None:
            raise ModelUnavailable(
                "no fraud model is loaded; train one with `cartwise fraud train`"
            )
        request = request.validated()
        snapshot = self.features.decide(request)
        if snapshot.duplicate:
            previous = self.decisions.by_transaction(request.transaction_id)
            if previous is not None:
                return self._replay(previous, request)
        store = {k: np.array([v], dtype=np.float64) for k, v in _numbers(snapshot.values)}
        ts = request.ts.timestamp()
        row = assemble(store, np.array([float(request.amount)]), np.array([ts]))
        case = _Case(request, snapshot, row, policy, self.config.snapshot())
        decision = self._decide(case, model)
        self.decisions.append(decision)
        challenger = rollout.shadow()
        if challenger is not None and self.shadow_log is not None:
            self._shadow(case, decision, challenger)
        return decision

    def _judge(self, case: _Case, model: FraudModel) -> _Judgement:
        request, snapshot, row, policy, config = case
        probability = float(model.probabilities(row)[0])
        score = risk_score(probability)
        own = self._request_attributes(request, probability, score)
        # rules read the request's own attributes and every feature and model input
        inputs = row[0].tolist()
        attributes = {**snapshot.values, **dict(zip(INPUTS, inputs, strict=True)), **own}
        verdict = config.rules.evaluate(attributes, config.lists)
        level = policy.level(score)
        outcome: Outcome = verdict.action or policy.outcome(level)
        return _Judgement(probability, score, level, outcome, verdict, own, inputs)

    def _shadow(self, case: _Case, decision: Decision, challenger: FraudModel) -> None:
        """The challenger judges the same inputs; logged, never returned, never failing the
        request."""
        assert self.shadow_log is not None
        try:
            other = self._judge(case, challenger)
            self.shadow_log.append(
                ShadowRecord(
                    model=self.rollout.name,
                    request_id=decision.decision_id,
                    unit=case.request.customer_id,
                    champion_version=decision.model_version,
                    challenger_version=challenger.version,
                    champion={
                        "probability": decision.probability,
                        "risk_score": decision.risk_score,
                        "outcome": decision.outcome,
                    },
                    challenger={
                        "probability": round(other.probability, 6),
                        "risk_score": other.score,
                        "outcome": other.outcome,
                    },
                )
            )
        except Exception:  # a broken challenger must not fail a checkout
            log.exception("shadow scoring with challenger %s failed", challenger.version)

    def _decide(self, case: _Case, model: FraudModel) -> Decision:
        request, snapshot, row, policy, _ = case
        j = self._judge(case, model)
        probability, score, level, outcome, verdict, own, inputs = (
            j.probability,
            j.score,
            j.level,
            j.outcome,
            j.verdict,
            j.own,
            j.inputs,
        )
        reasons = (
            tuple(model.reasons(row[0], policy.reasons))
            if outcome != "allow" and policy.reasons
            else ()
        )
        decisive = verdict.rule.rule_id if verdict.rule else None
        matched = tuple(
            {
                "id": m.rule_id,
                "name": m.name,
                "action": m.action,
                "mode": m.mode,
                "decisive": m.rule_id == decisive,
            }
            for m in verdict.matched
        )
        return Decision(
            decision_id=new_id("dec"),
            transaction_id=request.transaction_id,
            customer_id=request.customer_id,
            merchant_id=request.merchant_id,
            amount=request.amount,
            currency=request.currency,
            tx_at=request.ts,
            probability=round(probability, 6),
            risk_score=score,
            risk_level=level,
            outcome=outcome,
            reasons=reasons,
            matched_rules=matched,
            rule_id=decisive,
            model_version=model.version,
            features_degraded=snapshot.degraded,
            attributes=own,  # the log keeps the request's own (inputs are kept separately)
            inputs=tuple(inputs),
        )

    @staticmethod
    def _request_attributes(
        request: ScoreRequest, probability: float, score: int
    ) -> dict[str, Any]:
        card = request.card
        out = request_attributes(
            amount=float(request.amount),
            currency=request.currency,
            payment_method=request.payment_method,
            customer_id=request.customer_id,
            merchant_id=request.merchant_id,
            channel=request.channel,
            card_fingerprint=card.fingerprint if card else None,
            card_bin=card.bin if card else None,
            card_country=card.country if card else None,
            card_last4=card.last4 if card else None,
            device_id=request.device_id,
            ip=request.ip,
            email=request.email,
            billing_country=request.billing_country,
            shipping_country=request.shipping_country,
            item_count=request.item_count,
            ts=request.ts.timestamp(),
        )
        out["probability"] = probability
        out["risk_score"] = score
        return out

    def _replay(self, previous: Decision, request: ScoreRequest) -> Decision:
        if previous.amount != request.amount or previous.customer_id != request.customer_id:
            raise TransactionReused(
                f"transaction {request.transaction_id!r} was scored with another amount or "
                "customer; send a new transaction_id",
                field="transaction_id",
            )
        return replace(previous, replayed=True)

    # --- feedback ------------------------------------------------------------------------------
    def feedback(
        self,
        *,
        decision_id: str | None,
        transaction_id: str | None,
        label: str,
        reported_at: datetime | None,
        note: str | None = None,
        only_label: bool = False,
    ) -> dict[str, Any]:
        """Store a label with its decision; fraud labels also feed the label-delayed features.
        Idempotent: the same label for the same decision is stored once (``replayed`` says
        this call found it stored).  ``only_label``: refused (``ReviewResolved``) when the
        decision already carries another label."""
        if bool(decision_id) == bool(transaction_id):
            raise ValidationError(
                "send exactly one of decision_id and transaction_id", field="decision_id"
            )
        reported_at = reported_at or datetime.now(UTC)
        if reported_at.tzinfo is None:
            raise ValidationError("reported_at needs a time zone", field="reported_at")
        if decision_id:
            decision = self.decisions.get(decision_id)
        else:
            found = self.decisions.by_transaction(str(transaction_id))
            if found is None:
                raise DecisionNotFound(
                    f"no decision for transaction {transaction_id!r}", field="transaction_id"
                )
            decision = found
        if reported_at < decision.tx_at:
            raise ValidationError("reported_at is before the transaction", field="reported_at")
        stored, created = self.decisions.add_feedback(
            decision, label, reported_at, note, only_label=only_label
        )
        degraded = False
        if label in FRAUD_LABELS:  # again on a replay: it repairs a degraded first attempt,
            # and the feature store applies one label per transaction once
            degraded = not self.features.label(decision, fraud=True, reported_at=reported_at)
        return {**stored, "features_degraded": degraded, "replayed": not created}

    def resolve_review(
        self, decision_id: str, resolution: str, *, note: str | None = None
    ) -> dict[str, Any]:
        """A reviewer's verdict on a decision sent to review: ``approve`` stores the label
        ``legit``, ``refuse`` the label ``fraud`` (which feeds the label-delayed features, as
        any fraud feedback does).  The same verdict again answers the label stored first
        (``replayed``); another verdict on a decision already labelled is a conflict, as is a
        decision that was not sent to review."""
        label = RESOLUTIONS.get(resolution)
        if label is None:
            raise ValidationError(
                f"resolution must be one of {', '.join(RESOLUTIONS)}", field="resolution"
            )
        decision = self.decisions.get(decision_id)
        if decision.outcome != "review":
            raise NotInReview(
                f"decision {decision_id} was {decision.outcome!r}, not sent to review",
                field="decision_id",
            )
        stored = self.feedback(
            decision_id=decision_id,
            transaction_id=None,
            label=label,
            reported_at=max(datetime.now(UTC), decision.tx_at),
            note=note,
            only_label=True,
        )
        return {**stored, "resolution": resolution}


class _Case(NamedTuple):
    """One payment as every model judges it: the same inputs, rules and policy."""

    request: ScoreRequest
    snapshot: FeatureSnapshot
    row: npt.NDArray[np.float32]
    policy: Policy
    config: Snapshot


@dataclass(frozen=True, slots=True)
class _Judgement:
    probability: float
    score: int
    level: RiskLevel
    outcome: Outcome
    verdict: Verdict
    own: dict[str, Any]
    inputs: list[float]


def _numbers(values: Mapping[str, float | str | None]) -> list[tuple[str, float]]:
    return [(k, float(v)) for k, v in values.items() if isinstance(v, float | int)]
