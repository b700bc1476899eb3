"""What a fraud decision takes and gives: the scoring request (validated here, whatever the
transport), the policy that maps a score to an outcome, and the decision itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

from engine.commerce.domain import (
    check_amount,
    check_country,
    check_currency,
    looks_like_pan,
)
from engine.errors import ValidationError
from engine.fraud.explain import Reason

Outcome = Literal["allow", "review", "block", "challenge"]
RiskLevel = Literal["normal", "elevated", "highest"]
OUTCOMES: tuple[Outcome, ...] = ("allow", "review", "block", "challenge")
PAYMENT_METHODS = frozenset({"card", "wallet", "bnpl", "bank_transfer", "other"})
MAX_FUTURE = timedelta(minutes=5)


class CardNumberRefused(ValidationError):
    """A field holds what looks like a full card number (PAN)."""

    code = "card_number_refused"


@dataclass(frozen=True, slots=True)
class Card:
    fingerprint: str | None = None
    bin: str | None = None
    country: str | None = None
    last4: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    sku: str
    qty: int
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    transaction_id: str
    customer_id: str
    amount: Decimal
    currency: str
    ts: datetime
    payment_method: str | None = None
    card: Card | None = None
    device_id: str | None = None
    ip: str | None = None
    email: str | None = None
    billing_country: str | None = None
    shipping_country: str | None = None
    merchant_id: str | None = None
    channel: str | None = None
    items: tuple[Item, ...] = ()

    def validated(self, now: datetime | None = None) -> ScoreRequest:
        """The request with amounts rounded and emails lower-cased, or a ``ValidationError``
        naming the field.  A value that looks like a card number is refused without echoing
        it (it must never reach a log)."""
        for name, value in self._strings():
            if looks_like_pan(value):
                raise CardNumberRefused(
                    f"{name} looks like a full card number; send a fingerprint, BIN or last4",
                    field=name,
                )
        if not self.transaction_id.strip():
            raise ValidationError("transaction_id must not be empty", field="transaction_id")
        if not self.customer_id.strip():
            raise ValidationError("customer_id must not be empty", field="customer_id")
        amount = check_amount(self.amount, "amount", positive=True)
        check_currency(self.currency)
        if self.ts.tzinfo is None:
            raise ValidationError("timestamp needs a time zone", field="timestamp")
        now = now or datetime.now(UTC)
        if self.ts > now + MAX_FUTURE:
            raise ValidationError("timestamp is in the future", field="timestamp")
        if self.payment_method is not None and self.payment_method not in PAYMENT_METHODS:
            raise ValidationError(
                f"payment_method must be one of {', '.join(sorted(PAYMENT_METHODS))}",
                field="payment_method",
            )
        check_country(self.billing_country, "billing_country")
        check_country(self.shipping_country, "shipping_country")
        if self.card is not None:
            check_country(self.card.country, "card.country")
            for name, digits in (("bin", (6, 8)), ("last4", (4, 4))):
                value = getattr(self.card, name)
                if value is not None and not (
                    value.isdigit() and digits[0] <= len(value) <= digits[1]
                ):
                    raise ValidationError(
                        f"card.{name} must be {'-'.join(map(str, sorted(set(digits))))} digits",
                        field=f"card.{name}",
                    )
        for i, item in enumerate(self.items):
            if item.qty <= 0:
                raise ValidationError("qty must be positive", field=f"items[{i}].qty")
            check_amount(item.unit_price, f"items[{i}].unit_price")
        email = self.email.strip().lower() if self.email else None
        return replace(self, amount=amount, email=email, ts=self.ts.astimezone(UTC))

    def _strings(self) -> list[tuple[str, str]]:
        out = [
            (name, value)
            for name in (
                "transaction_id",
                "customer_id",
                "device_id",
                "ip",
                "email",
                "merchant_id",
                "channel",
            )
            if isinstance(value := getattr(self, name), str)
        ]
        if self.card is not None:
            out += [
                (f"card.{name}", value)
                for name in ("fingerprint", "bin", "last4")
                if isinstance(value := getattr(self.card, name), str)
            ]
        out += [(f"items[{i}].sku", item.sku) for i, item in enumerate(self.items)]
        return out

    @property
    def item_count(self) -> int | None:
        return sum(i.qty for i in self.items) if self.items else None


@dataclass(frozen=True, slots=True)
class Policy:
    """Score → level → outcome, when no rule decides.  Set through the deployment's
    ``user_config`` (``fraud:`` section) and applied without a restart."""

    elevated_at: int = 65
    highest_at: int = 75
    elevated_outcome: Outcome = "review"
    highest_outcome: Outcome = "block"
    reasons: int = 5

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Policy:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValidationError(f"unknown fraud policy keys: {unknown}", field=unknown[0])
        policy = cls(**config)
        for name in ("elevated_at", "highest_at"):
            value = getattr(policy, name)
            if not isinstance(value, int) or not 0 <= value <= 100:
                raise ValidationError(f"{name} must be an integer 0 to 100", field=name)
        if policy.elevated_at > policy.highest_at:
            raise ValidationError("elevated_at must not exceed highest_at", field="elevated_at")
        for name in ("elevated_outcome", "highest_outcome"):
            if getattr(policy, name) not in OUTCOMES:
                raise ValidationError(f"{name} must be one of {OUTCOMES}", field=name)
        if not isinstance(policy.reasons, int) or not 0 <= policy.reasons <= 20:
            raise ValidationError("reasons must be an integer 0 to 20", field="reasons")
        return policy

    def level(self, risk_score: int) -> RiskLevel:
        if risk_score >= self.highest_at:
            return "highest"
        return "elevated" if risk_score >= self.elevated_at else "normal"

    def outcome(self, level: RiskLevel) -> Outcome:
        if level == "highest":
            return self.highest_outcome
        return self.elevated_outcome if level == "elevated" else "allow"


def risk_score(probability: float) -> int:
    return max(0, min(100, round(probability * 100)))


@dataclass(frozen=True, slots=True)
class FeatureSnapshot:
    """What the feature store said about a transaction, before recording it."""

    values: Mapping[str, float | str | None]
    degraded: bool = False
    duplicate: bool = False


class FeaturePort(Protocol):
    """The feature store as fraud decisions see it (``features/fraud.py`` implements it)."""

    def decide(self, request: ScoreRequest) -> FeatureSnapshot: ...

    def label(self, decision: Decision, *, fraud: bool, reported_at: datetime) -> bool:
        """Apply a label to the label-delayed features; False when the store was down."""
        ...


@dataclass(frozen=True, slots=True)
class Decision:
    decision_id: str
    transaction_id: str
    customer_id: str
    merchant_id: str | None
    amount: Decimal
    currency: str
    tx_at: datetime
    probability: float
    risk_score: int
    risk_level: RiskLevel
    outcome: Outcome
    reasons: tuple[Reason, ...]
    matched_rules: tuple[dict[str, Any], ...]
    rule_id: str | None
    model_version: str
    features_degraded: bool
    attributes: Mapping[str, Any] = field(repr=False)
    inputs: tuple[float, ...] = field(repr=False)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    replayed: bool = False

    def public(self) -> dict[str, Any]:
        """The response body."""
        return {
            "decision_id": self.decision_id,
            "transaction_id": self.transaction_id,
            "risk_score": self.risk_score,
            "probability": self.probability,
            "risk_level": self.risk_level,
            "outcome": self.outcome,
            "reasons": [asdict(r) for r in self.reasons],
            "matched_rules": list(self.matched_rules),
            "model_version": self.model_version,
            "features_degraded": self.features_degraded,
            "created_at": self.created_at,
        }
