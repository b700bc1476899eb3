"""What an experiment may target, and what each target kind's variant config may say.

- ``widget`` (target: a widget name): ``{}`` (the widget as it is), ``{"widget": other}`` (show
  another widget's settings in its place) and/or ``{"overrides": {...widget settings...}}``.
- ``recommender`` (target: ``recs``): ``{}`` (the champion) or ``{"model_version": v}`` (a
  registry version or a model directory, loaded by each replica next to the champion).
- ``price_rule`` (target: a ``segment`` pricing rule): ``{}``, ``{"enabled": false}`` or
  ``{"params": {...}}`` (merged over the rule's own).  Only quote-time rules can be split per
  customer: demand, competitor, elasticity and inventory rules set one shelf price per SKU in
  the batch reprice, which every shopper sees, so their experiments are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from engine.errors import ValidationError
from engine.experiments.assignment import Variant
from engine.pricing.rules import PricingRule
from engine.pricing.schema import PricingRuleRow
from engine.recommend.schema import RecWidget
from engine.recommend.widgets import Widget

KINDS = ("widget", "recommender", "price_rule")
RECS_TARGET = "recs"


def check(s: Session, kind: str, target: str, variants: Sequence[Variant]) -> None:
    """A ``ValidationError`` naming ``target.kind``, ``target`` or ``variants[i].config…``
    unless the target exists and every variant's config applies to it."""
    if kind not in KINDS:
        raise ValidationError(f"target kind is one of {', '.join(KINDS)}", field="target.kind")
    if kind == "widget":
        _widget(s, target, variants)
    elif kind == "recommender":
        _recommender(target, variants)
    else:
        _price_rule(s, target, variants)


def _keys(config: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in config:
        if key not in known:
            raise ValidationError(
                f"unknown setting {key!r} (known: {', '.join(known)})", field=f"{where}.{key}"
            )


def _widget(s: Session, target: str, variants: Sequence[Variant]) -> None:
    base = s.get(RecWidget, target)
    if base is None:
        raise ValidationError(f"no widget {target!r}", field="target")
    for i, v in enumerate(variants):
        where = f"variants[{i}].config"
        _keys(v.config, ("widget", "overrides"), where)
        config = dict(base.config)
        other = v.config.get("widget")
        if other is not None:
            row = s.get(RecWidget, other) if isinstance(other, str) else None
            if row is None:
                raise ValidationError(f"no widget {other!r}", field=f"{where}.widget")
            config = dict(row.config)
        overrides = v.config.get("overrides", {})
        if not isinstance(overrides, Mapping):
            raise ValidationError("overrides are widget settings", field=f"{where}.overrides")
        try:
            Widget.from_config(target, {**config, **overrides})
        except ValidationError as exc:
            raise ValidationError(exc.message, field=f"{where}.overrides.{exc.field}") from None


def _recommender(target: str, variants: Sequence[Variant]) -> None:
    if target != RECS_TARGET:
        raise ValidationError(f"a recommender experiment targets {RECS_TARGET!r}", field="target")
    for i, v in enumerate(variants):
        where = f"variants[{i}].config"
        _keys(v.config, ("model_version",), where)
        version = v.config.get("model_version")
        if version is not None and (not isinstance(version, str) or not 0 < len(version) <= 300):
            raise ValidationError(
                "model_version is a registry version or a model directory",
                field=f"{where}.model_version",
            )


def _price_rule(s: Session, target: str, variants: Sequence[Variant]) -> None:
    row = s.get(PricingRuleRow, target)
    if row is None:
        raise ValidationError(f"no pricing rule {target!r}", field="target")
    rule = PricingRule.from_config(row.name, row.config)
    if rule.strategy != "segment":
        raise ValidationError(
            f"rule {target!r} is a {rule.strategy} rule: the batch reprice sets one shelf "
            "price per SKU that every shopper sees, so it cannot be split per customer; only "
            "segment rules (applied when a quote names the customer) can be tested",
            field="target",
            code="not_experimentable",
        )
    for i, v in enumerate(variants):
        where = f"variants[{i}].config"
        _keys(v.config, ("enabled", "params"), where)
        if not isinstance(v.config.get("enabled", True), bool):
            raise ValidationError("enabled must be true or false", field=f"{where}.enabled")
        variant_rule(rule, v.config, where)


def variant_rule(
    rule: PricingRule, config: Mapping[str, Any], where: str = "config"
) -> PricingRule | None:
    """``rule`` as a variant config changes it (None: disabled for the variant)."""
    if config.get("enabled", True) is False:
        return None
    params = config.get("params")
    if not params:
        return rule
    if not isinstance(params, Mapping):
        raise ValidationError("params must be an object", field=f"{where}.params")
    try:
        return PricingRule.from_config(
            rule.name, {**rule.config(), "params": {**rule.params, **params}}
        )
    except ValidationError as exc:
        raise ValidationError(exc.message, field=f"{where}.{exc.field}") from None


def variant_widget(
    base: Widget, config: Mapping[str, Any], widgets: Mapping[str, Widget]
) -> Widget:
    """The widget a variant shows in ``base``'s place (under ``base``'s name)."""
    source = widgets.get(str(config["widget"])) if "widget" in config else base
    settings = (source or base).config()
    overrides = config.get("overrides") or {}
    if source is base and not overrides:
        return base
    return Widget.from_config(base.name, {**settings, **overrides})
