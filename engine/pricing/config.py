"""Pricing configuration in SQL: the rules, the store-wide default guardrails and the FX table.

Read on every quote, edited rarely by any replica: each replica keeps a snapshot and reloads
it when a version stamp moves (``engine.reloading``), within ``poll_s`` seconds of an edit
elsewhere and at once after its own.  Shipped defaults (``rules.yaml``) are inserted at first
start, like the recommendation widgets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.errors import NotFound, ValidationError
from engine.pricing.rules import Guardrails, PricingRule, RuleSet
from engine.pricing.schema import FxRate, PricingRuleRow, PricingSetting
from engine.reloading import Reloading

CURRENCY = re.compile(r"^[A-Z]{3}$")
GUARDRAILS_KEY = "guardrails"


class RuleNotFound(NotFound):
    code = "pricing_rule_not_found"


class UnknownCurrency(ValidationError):
    code = "unknown_currency"


@dataclass(frozen=True)
class Snapshot:
    rules: RuleSet
    fx: Mapping[str, float] = field(default_factory=dict)  # currency -> units per base unit
    base_currency: str = "EUR"

    def rate(self, source: str, target: str, field_name: str = "currency") -> float:
        """Units of ``target`` per unit of ``source``; a ``ValidationError`` naming
        ``field_name`` when either is not in the FX table."""
        rates = {**self.fx, self.base_currency: 1.0}
        for code in (target, source):
            if code not in rates:
                known = ", ".join(sorted(rates))
                raise UnknownCurrency(f"no FX rate for {code!r} (known: {known})", field=field_name)
        return rates[target] / rates[source]


def default_rules() -> dict[str, Any]:
    text = (resources.files("engine.pricing") / "rules.yaml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


class PricingConfig:
    def __init__(self, db: Database, *, base_currency: str = "EUR", poll_s: float = 1.0) -> None:
        self.db = db
        self.base_currency = base_currency
        self._snapshot = Reloading(db, _stamp, self._load, poll_s=poll_s)

    def snapshot(self) -> Snapshot:
        return self._snapshot.get()

    def rules(self) -> RuleSet:
        return self.snapshot().rules

    def seed_defaults(self) -> int:
        """Insert the shipped rules and default guardrails when there are none (first start)."""
        shipped = default_rules()
        with self.db.transaction() as s:
            if s.get(PricingSetting, GUARDRAILS_KEY) is None:
                defaults = Guardrails.from_config(shipped.get("guardrails"), where="guardrails.")
                s.add(PricingSetting(key=GUARDRAILS_KEY, value=defaults.config()))
            if s.scalar(select(func.count()).select_from(PricingRuleRow)):
                self._snapshot.invalidate()
                return 0
            rules = shipped.get("rules") or {}
            for name, config in rules.items():
                rule = PricingRule.from_config(name, config)
                s.add(PricingRuleRow(name=name, config=rule.config()))
        self._snapshot.invalidate()
        return len(rules)

    # --- rules ---------------------------------------------------------------------------------
    def rule(self, name: str) -> PricingRule:
        for r in self.rules().rules:
            if r.name == name:
                return r
        raise RuleNotFound(f"no pricing rule {name!r}", field="name")

    def put_rule(self, name: str, config: Mapping[str, Any]) -> PricingRule:
        rule = PricingRule.from_config(name, config)
        with self.db.transaction() as s:
            _put_rule(s, rule)
        self._snapshot.invalidate()
        return rule

    def put_file(self, content: Mapping[str, Any]) -> list[str]:
        """Apply a rules file (``rules.yaml``'s shape: optional ``guardrails``, ``rules`` by
        name) all or nothing: everything is validated first; an error names
        ``rules.{name}.{field}`` or ``guardrails.{field}``."""
        if not isinstance(content, Mapping) or not set(content) <= {"guardrails", "rules"}:
            raise ValidationError("expected a mapping of guardrails and rules", field="body")
        defaults = None
        if "guardrails" in content:
            defaults = Guardrails.from_config(
                content["guardrails"], self.guardrails(), where="guardrails."
            )
        rules = content.get("rules") or {}
        if not isinstance(rules, Mapping):
            raise ValidationError("rules maps a name to a rule", field="rules")
        parsed = []
        for name, config in rules.items():
            try:
                parsed.append(PricingRule.from_config(str(name), config))
            except ValidationError as exc:
                raise ValidationError(exc.message, field=f"rules.{name}.{exc.field}") from None
        with self.db.transaction() as s:
            if defaults is not None:
                _put_guardrails(s, defaults)
            for rule in parsed:
                _put_rule(s, rule)
        self._snapshot.invalidate()
        return [r.name for r in parsed]

    def delete_rule(self, name: str) -> None:
        with self.db.transaction() as s:
            row = s.get(PricingRuleRow, name)
            if row is None:
                raise RuleNotFound(f"no pricing rule {name!r}", field="name")
            s.delete(row)
        self._snapshot.invalidate()

    # --- default guardrails --------------------------------------------------------------------
    def guardrails(self) -> Guardrails:
        return self.rules().defaults

    def put_guardrails(self, config: Mapping[str, Any]) -> Guardrails:
        """Change the defaults (fields not given keep their current values)."""
        defaults = Guardrails.from_config(config, self.guardrails())
        with self.db.transaction() as s:
            _put_guardrails(s, defaults)
        self._snapshot.invalidate()
        return defaults

    # --- FX ------------------------------------------------------------------------------------
    def fx(self) -> dict[str, Any]:
        snap = self.snapshot()
        return {"base": snap.base_currency, "rates": dict(sorted(snap.fx.items()))}

    def put_fx(self, rates: Mapping[str, Any], actor: str = "admin") -> dict[str, Any]:
        """Set rates (units per one unit of the base currency), all or nothing."""
        if not isinstance(rates, Mapping) or not rates:
            raise ValidationError("rates maps a currency code to a rate", field="rates")
        clean: dict[str, Decimal] = {}
        for code, value in rates.items():
            where = f"rates.{code}"
            if not isinstance(code, str) or not CURRENCY.match(code):
                raise ValidationError("a currency is three capital letters", field=where)
            if code == self.base_currency:
                raise ValidationError(
                    f"{code} is the base currency (rate 1 by definition)", field=where
                )
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValidationError("a rate is a positive number", field=where)
            try:
                rate = Decimal(str(value))
            except InvalidOperation:
                raise ValidationError("a rate is a positive number", field=where) from None
            if not rate.is_finite() or rate <= 0 or rate > Decimal("1e9"):
                raise ValidationError("a rate is a positive number", field=where)
            clean[code] = rate.quantize(Decimal("1e-8"))
        with self.db.transaction() as s:
            for code, rate in clean.items():
                row = s.get(FxRate, code)
                if row is None:
                    s.add(FxRate(currency=code, rate=rate, updated_by=actor))
                else:
                    row.rate, row.updated_by = rate, actor
        self._snapshot.invalidate()
        return self.fx()

    def delete_fx(self, code: str) -> None:
        with self.db.transaction() as s:
            row = s.get(FxRate, code)
            if row is None:
                raise NotFound(f"no FX rate for {code!r}", field="currency")
            s.delete(row)
        self._snapshot.invalidate()

    # --- loading -------------------------------------------------------------------------------
    def _load(self, s: Session, _stamp: tuple[Any, ...]) -> Snapshot:
        row = s.get(PricingSetting, GUARDRAILS_KEY)
        defaults = Guardrails.from_config(row.value if row else None)
        rules = tuple(
            PricingRule.from_config(r.name, r.config) for r in s.scalars(select(PricingRuleRow))
        )
        fx = {r.currency: float(r.rate) for r in s.scalars(select(FxRate))}
        return Snapshot(RuleSet(rules, defaults), fx, base_currency=self.base_currency)


def _put_rule(s: Session, rule: PricingRule) -> None:
    """Insert or replace a rule row; a new version makes every replica reload."""
    row = s.get(PricingRuleRow, rule.name)
    if row is None:
        s.add(PricingRuleRow(name=rule.name, config=rule.config()))
    else:
        row.config, row.version = rule.config(), row.version + 1


def _put_guardrails(s: Session, defaults: Guardrails) -> None:
    row = s.get(PricingSetting, GUARDRAILS_KEY)
    if row is None:
        s.add(PricingSetting(key=GUARDRAILS_KEY, value=defaults.config()))
    else:
        row.value, row.version = defaults.config(), row.version + 1


def _stamp(s: Session) -> tuple[Any, ...]:
    rules = tuple(s.execute(select(PricingRuleRow.name, PricingRuleRow.version)).all())
    settings = tuple(s.execute(select(PricingSetting.key, PricingSetting.version)).all())
    fx: tuple[int, datetime | None] = tuple(  # type: ignore[assignment]
        s.execute(select(func.count(), func.max(FxRate.updated_at))).one()
    )
    return (tuple(sorted(rules)), tuple(sorted(settings)), fx)
