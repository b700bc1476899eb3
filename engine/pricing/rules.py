"""Pricing rules and guardrails: what a store configures, validated, and turned into the kernel's
tables.

A rule has a scope (one SKU, a category, a brand, or all), a priority, a strategy with its
parameters, a mode (``auto`` applies prices; ``suggest`` leaves them for an admin to approve)
and guardrail overrides.  Each SKU is priced by its highest-priority enabled rule whose scope
matches (ties: the narrower scope, then the name).  ``segment`` rules are not base prices: they
discount the current price for a customer's segment, loyalty tier or RFM segment (``rfm``: see
``engine.crm.rfm``) when a quote names the customer.

Guardrails apply to every price: floor = max(cost · (1 + min margin), MAP), a ceiling as a share
of the list price, a maximum change per UTC day, a minimum interval between changes and charm
rounding.  The store-wide defaults live with the rules; a rule overrides any of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Literal

import numpy as np

from engine.crm.rfm import SEGMENTS as RFM_SEGMENTS
from engine.errors import ValidationError
from engine.pricing import kernels as k

Strategy = Literal["demand", "inventory", "competitor", "segment", "elasticity"]
STRATEGIES: dict[str, int] = {
    "demand": k.STRATEGY_DEMAND,
    "inventory": k.STRATEGY_INVENTORY,
    "competitor": k.STRATEGY_COMPETITOR,
    "segment": k.STRATEGY_SEGMENT,
    "elasticity": k.STRATEGY_ELASTICITY,
}
SCOPES = ("sku", "category", "brand", "all")
SPECIFICITY = {"sku": 3, "brand": 2, "category": 1, "all": 0}
MODES = ("auto", "suggest")
CHARMS = {"none": 0, ".99": 99, ".95": 95}
NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


def _number(
    config: Mapping[str, Any], key: str, default: float, lo: float, hi: float, where: str
) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{key} must be a number", field=f"{where}{key}")
    if not lo <= value <= hi:
        raise ValidationError(f"{key} must be between {lo:g} and {hi:g}", field=f"{where}{key}")
    return float(value)


def _unknown(config: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    for key in config:
        if key not in known:
            hint = ", ".join(known) or "none"
            raise ValidationError(f"unknown setting {key!r} (known: {hint})", field=f"{where}{key}")


@dataclass(frozen=True)
class Guardrails:
    min_margin_pct: float = 10.0  # floor = cost · (1 + pct/100), and never below MAP
    ceiling_pct: float = 130.0  # of the list price
    max_change_pct_per_day: float = 10.0  # of the price the UTC day opened with
    min_interval_minutes: float = 60.0  # between two changes of one SKU's price
    charm: str = ".99"  # none | .99 | .95

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any] | None, base: Guardrails | None = None, where: str = ""
    ) -> Guardrails:
        """Guardrails from a mapping; unset fields come from ``base`` (the store defaults)."""
        base = base or cls()
        config = config or {}
        if not isinstance(config, Mapping):
            raise ValidationError("guardrails must be a mapping", field=where.rstrip(".") or None)
        _unknown(config, [f.name for f in fields(cls)], where)
        charm = config.get("charm", base.charm)
        if charm not in CHARMS:
            raise ValidationError("charm must be none, .99 or .95", field=f"{where}charm")
        return cls(
            min_margin_pct=_number(config, "min_margin_pct", base.min_margin_pct, 0, 1000, where),
            ceiling_pct=_number(config, "ceiling_pct", base.ceiling_pct, 1, 1000, where),
            max_change_pct_per_day=_number(
                config, "max_change_pct_per_day", base.max_change_pct_per_day, 0, 100, where
            ),
            min_interval_minutes=_number(
                config, "min_interval_minutes", base.min_interval_minutes, 0, 10_080, where
            ),
            charm=str(charm),
        )

    def config(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def row(self) -> np.ndarray:
        """The kernel's guardrail columns (whole numbers: basis points, seconds, cents)."""
        out = np.zeros(k.N_GUARDS, dtype=np.float64)
        out[k.G_MIN_MARGIN_BP] = round(self.min_margin_pct * 100)
        out[k.G_CEILING_BP] = round(self.ceiling_pct * 100)
        out[k.G_MAX_CHANGE_BP] = round(self.max_change_pct_per_day * 100)
        out[k.G_MIN_INTERVAL_S] = round(self.min_interval_minutes * 60)
        out[k.G_CHARM] = CHARMS[self.charm]
        return out


# strategy parameters: name -> (default, lo, hi); kernel column order as listed
_PARAMS: dict[str, dict[str, tuple[float, float, float]]] = {
    "demand": {
        "velocity_weight": (0.10, 0.0, 1.0),  # price moves this share of the velocity change
        "conversion_weight": (0.05, 0.0, 1.0),
        "prior_units": (1.0, 0.01, 1e6),  # smoothing: slow sellers do not swing on one sale
        "min_views": (20.0, 0.0, 1e9),  # conversion counts only with this many views today
        "max_adjust_pct": (15.0, 0.0, 90.0),
    },
    "inventory": {
        "target_days_cover": (30.0, 0.1, 3650.0),
        "max_discount_pct": (20.0, 0.0, 90.0),
        "max_markup_pct": (5.0, 0.0, 100.0),
        "overstock_slope_pct": (10.0, 0.0, 100.0),  # discount per target of extra cover
        "clearance_discount_pct": (0.0, 0.0, 90.0),  # > 0: clear the stock at this markdown
    },
    "competitor": {"percent": (0.0, 0.0, 90.0), "amount": (0.0, 0.0, 1e6)},
    "elasticity": {"max_std_err": (0.5, 0.0, 10.0)},
    "segment": {},
}
_COMPETITOR_REFERENCE = {"min": 0.0, "average": 1.0}
_COMPETITOR_ACTION = {"match": 0.0, "beat": 1.0, "above": 2.0}


@dataclass(frozen=True)
class PricingRule:
    name: str
    strategy: str
    scope: str = "all"
    scope_value: str | None = None
    priority: int = 0
    mode: str = "auto"
    enabled: bool = True
    params: Mapping[str, Any] = field(default_factory=dict)
    guardrails: Mapping[str, Any] = field(default_factory=dict)  # overrides of the defaults
    description: str = ""

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> PricingRule:
        """A validated rule; a ``ValidationError`` names the offending field."""
        if not isinstance(name, str) or not NAME.match(name):
            raise ValidationError("a rule name is 1 to 64 of a-z, 0-9, - and _", field="name")
        if not isinstance(config, Mapping):
            raise ValidationError("a rule is a mapping", field=name)
        known = [f.name for f in fields(cls) if f.name != "name"]
        _unknown(config, known, "")
        strategy = config.get("strategy")
        if strategy not in STRATEGIES:
            raise ValidationError(
                f"strategy must be one of {', '.join(STRATEGIES)}", field="strategy"
            )
        scope = config.get("scope", "all")
        if scope not in SCOPES:
            raise ValidationError(f"scope must be one of {', '.join(SCOPES)}", field="scope")
        scope_value = config.get("scope_value")
        if scope == "all":
            if scope_value is not None:
                raise ValidationError("scope all takes no scope_value", field="scope_value")
        elif not isinstance(scope_value, str) or not scope_value:
            raise ValidationError(f"scope {scope} needs a scope_value", field="scope_value")
        priority = config.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValidationError("priority must be an integer", field="priority")
        mode = config.get("mode", "auto")
        if mode not in MODES:
            raise ValidationError("mode must be auto or suggest", field="mode")
        if strategy == "segment" and mode != "auto":
            raise ValidationError("a segment rule discounts quotes: mode auto only", field="mode")
        enabled = config.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValidationError("enabled must be true or false", field="enabled")
        params = _params(str(strategy), config.get("params") or {})
        guards = config.get("guardrails") or {}
        Guardrails.from_config(guards, where="guardrails.")  # validate the overrides alone
        description = config.get("description", "")
        if not isinstance(description, str) or len(description) > 500:
            raise ValidationError("description is text of at most 500", field="description")
        return cls(
            name=name,
            strategy=str(strategy),
            scope=str(scope),
            scope_value=scope_value,
            priority=priority,
            mode=str(mode),
            enabled=enabled,
            params=params,
            guardrails=dict(guards),
            description=description,
        )

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "scope": self.scope,
            "priority": self.priority,
            "mode": self.mode,
            "enabled": self.enabled,
            "params": dict(self.params),
            "guardrails": dict(self.guardrails),
        }
        if self.scope_value is not None:
            out["scope_value"] = self.scope_value
        if self.description:
            out["description"] = self.description
        return out

    def row(self) -> np.ndarray:
        """The kernel's parameter columns for this rule's strategy."""
        out = np.zeros(k.N_PARAMS, dtype=np.float64)
        p = self.params
        if self.strategy == "demand":
            out[:] = [
                p["velocity_weight"],
                p["conversion_weight"],
                p["prior_units"],
                p["min_views"],
                p["max_adjust_pct"] / 100,
            ]
        elif self.strategy == "inventory":
            out[:] = [
                p["target_days_cover"],
                p["max_discount_pct"] / 100,
                p["max_markup_pct"] / 100,
                p["overstock_slope_pct"] / 100,
                p["clearance_discount_pct"] / 100,
            ]
        elif self.strategy == "competitor":
            out[:4] = [
                _COMPETITOR_REFERENCE[p["reference"]],
                _COMPETITOR_ACTION[p["action"]],
                p["percent"] / 100,
                p["amount"] * 100,  # currency units -> cents
            ]
        return out

    def discount(self, segment: str | None, tier: str | None, rfm: str | None = None) -> float:
        """A segment rule's discount (a fraction) for a customer: the largest of their
        segment's, their loyalty tier's and their RFM segment's."""
        by_segment = self.params.get("segments", {})
        by_tier = self.params.get("tiers", {})
        by_rfm = self.params.get("rfm", {})
        pct = max(
            by_segment.get(segment or "", 0.0),
            by_tier.get(tier or "", 0.0),
            by_rfm.get(rfm or "", 0.0),
        )
        return float(pct) / 100

    def matches(self, sku: str, category: str | None, brand: str | None) -> bool:
        if self.scope == "all":
            return True
        value = {"sku": sku, "category": category, "brand": brand}[self.scope]
        return value == self.scope_value

    def rank(self) -> tuple[int, int, str]:
        """Higher wins: priority, then the narrower scope; then the name, reversed so that
        the alphabetically first wins a full tie."""
        return (self.priority, SPECIFICITY[self.scope], _reverse(self.name))


def _reverse(name: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in name)


def _params(strategy: str, config: Mapping[str, Any]) -> dict[str, Any]:
    where = "params."
    if not isinstance(config, Mapping):
        raise ValidationError("params must be a mapping", field="params")
    spec = _PARAMS[strategy]
    extra: list[str] = []
    if strategy == "competitor":
        extra = ["reference", "action"]
    if strategy == "segment":
        extra = ["segments", "tiers", "rfm"]
    _unknown(config, [*spec, *extra], where)
    out: dict[str, Any] = {
        key: _number(config, key, default, lo, hi, where) for key, (default, lo, hi) in spec.items()
    }
    if strategy == "competitor":
        reference = config.get("reference", "min")
        if reference not in _COMPETITOR_REFERENCE:
            raise ValidationError("reference must be min or average", field=f"{where}reference")
        action = config.get("action", "match")
        if action not in _COMPETITOR_ACTION:
            raise ValidationError("action must be match, beat or above", field=f"{where}action")
        out |= {"reference": reference, "action": action}
    if strategy == "segment":
        for key in ("segments", "tiers", "rfm"):
            table = config.get(key) or {}
            if not isinstance(table, Mapping):
                raise ValidationError(f"{key} maps a name to a percent", field=f"{where}{key}")
            for name, pct in table.items():
                if key == "rfm" and name not in RFM_SEGMENTS:
                    raise ValidationError(
                        f"unknown RFM segment {name!r} (known: {', '.join(RFM_SEGMENTS)})",
                        field=f"{where}rfm.{name}",
                    )
                _number({str(name): pct}, str(name), 0, 0, 90, f"{where}{key}.")
            out[key] = {str(n): float(v) for n, v in table.items()}
        if not out["segments"] and not out["tiers"] and not out["rfm"]:
            raise ValidationError(
                "a segment rule needs segments, tiers or rfm", field=f"{where}segments"
            )
    return out


@dataclass(frozen=True)
class RuleSet:
    """Every rule and the store defaults, as the kernel and the quotes use them."""

    rules: tuple[PricingRule, ...]
    defaults: Guardrails = Guardrails()

    def base_rules(self) -> list[PricingRule]:
        """Enabled non-segment rules, lowest rank first (later ones win when assigned)."""
        chosen = [r for r in self.rules if r.enabled and r.strategy != "segment"]
        return sorted(chosen, key=PricingRule.rank)

    def segment_rules(self) -> list[PricingRule]:
        chosen = [r for r in self.rules if r.enabled and r.strategy == "segment"]
        return sorted(chosen, key=PricingRule.rank, reverse=True)

    def guardrails(self, rule: PricingRule | None) -> Guardrails:
        if rule is None:
            return self.defaults
        return Guardrails.from_config(rule.guardrails, self.defaults)

    @cached_property
    def by_name(self) -> dict[str, PricingRule]:
        return {r.name: r for r in self.rules}

    @cached_property
    def guard_rows(self) -> dict[str | None, np.ndarray]:
        """Each rule's guardrail columns by name (None: the defaults), computed once."""
        rows: dict[str | None, np.ndarray] = {None: self.defaults.row()}
        for r in self.rules:
            rows[r.name] = self.guardrails(r).row()
        return rows

    def tables(self, rules: Sequence[PricingRule]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(strategies, params, guards) for ``rules`` in that order; guards has one more row,
        the defaults, for SKUs with no rule."""
        strategies = np.array([STRATEGIES[r.strategy] for r in rules], dtype=np.int64)
        params = np.zeros((len(rules), k.N_PARAMS), dtype=np.float64)
        guards = np.zeros((len(rules) + 1, k.N_GUARDS), dtype=np.float64)
        for i, r in enumerate(rules):
            params[i] = r.row()
            guards[i] = self.guardrails(r).row()
        guards[len(rules)] = self.defaults.row()
        return strategies, params, guards

    def assign(
        self,
        skus: Sequence[str],
        categories: Sequence[str | None],
        brands: Sequence[str | None],
        usable: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[list[PricingRule], np.ndarray]:
        """Each SKU's winning base rule: (the rules in table order, row per SKU, -1: none).

        ``usable[strategy]`` (or ``usable[rule name]``) marks the SKUs a strategy has inputs
        for (competitor prices, a usable elasticity, a stock level): a rule that cannot price a
        SKU does not claim it, and the next rule down does."""
        rules = self.base_rules()
        sku_a = np.asarray(skus, dtype=object)
        cat_a = np.asarray(categories, dtype=object)
        brand_a = np.asarray(brands, dtype=object)
        out = np.full(len(sku_a), -1, dtype=np.int32)
        for i, r in enumerate(rules):  # ascending rank: a later match overrides
            if r.scope == "all":
                match = np.ones(len(sku_a), dtype=bool)
            else:
                column = {"sku": sku_a, "category": cat_a, "brand": brand_a}[r.scope]
                match = column == r.scope_value
            if usable is not None:
                key = r.name if r.name in usable else r.strategy
                if key in usable:
                    match &= usable[key]
            out[match] = i
        return rules, out
