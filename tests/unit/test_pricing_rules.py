"""Pricing rules: validation names the field at fault; each SKU gets the right rule."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ValidationError
from engine.pricing import kernels as k
from engine.pricing.config import default_rules
from engine.pricing.rules import Guardrails, PricingRule, RuleSet

pytestmark = pytest.mark.unit


def rule(name: str, **config: object) -> PricingRule:
    return PricingRule.from_config(name, {"strategy": "demand", **config})


@pytest.mark.parametrize(
    ("name", "config", "field"),
    [
        ("Bad Name", {"strategy": "demand"}, "name"),
        ("r", {"strategy": "surge"}, "strategy"),
        ("r", {"strategy": "demand", "scope": "planet"}, "scope"),
        ("r", {"strategy": "demand", "scope": "category"}, "scope_value"),
        ("r", {"strategy": "demand", "scope_value": "x"}, "scope_value"),
        ("r", {"strategy": "demand", "priority": "high"}, "priority"),
        ("r", {"strategy": "demand", "mode": "maybe"}, "mode"),
        ("r", {"strategy": "demand", "colour": "red"}, "colour"),
        ("r", {"strategy": "demand", "params": {"velocity_weight": 7}}, "params.velocity_weight"),
        ("r", {"strategy": "demand", "params": {"speed": 1}}, "params.speed"),
        ("r", {"strategy": "competitor", "params": {"action": "crush"}}, "params.action"),
        ("r", {"strategy": "competitor", "params": {"percent": -1}}, "params.percent"),
        ("r", {"strategy": "segment", "params": {}}, "params.segments"),
        ("r", {"strategy": "segment", "params": {"tiers": {"gold": 95}}}, "params.tiers.gold"),
        ("r", {"strategy": "segment", "mode": "suggest", "params": {"tiers": {"g": 5}}}, "mode"),
        ("r", {"strategy": "demand", "guardrails": {"charm": ".49"}}, "guardrails.charm"),
        (
            "r",
            {"strategy": "demand", "guardrails": {"max_change_pct_per_day": 150}},
            "guardrails.max_change_pct_per_day",
        ),
        ("r", {"strategy": "demand", "guardrails": {"floor": 1}}, "guardrails.floor"),
    ],
)
def test_a_bad_rule_names_its_field(name: str, config: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        PricingRule.from_config(name, config)
    assert err.value.field == field


def test_shipped_rules_are_valid_and_round_trip() -> None:
    shipped = default_rules()
    Guardrails.from_config(shipped["guardrails"])
    for name, config in shipped["rules"].items():
        r = PricingRule.from_config(name, config)
        assert PricingRule.from_config(name, r.config()) == r


def test_guardrail_rows_are_whole_basis_points() -> None:
    g = Guardrails.from_config({"min_margin_pct": 12.5, "charm": ".95", "min_interval_minutes": 5})
    row = g.row()
    assert row[k.G_MIN_MARGIN_BP] == 1_250
    assert row[k.G_CHARM] == 95
    assert row[k.G_MIN_INTERVAL_S] == 300
    # a rule's override starts from the store defaults, field by field
    base = Guardrails(min_margin_pct=20)
    assert Guardrails.from_config({"ceiling_pct": 110}, base).min_margin_pct == 20


def test_the_highest_priority_matching_rule_wins() -> None:
    rules = RuleSet(
        (
            rule("all", priority=0),
            rule("shoes", scope="category", scope_value="shoes", priority=5),
            rule("brand", scope="brand", scope_value="acme", priority=5),  # same priority,
            rule("one", scope="sku", scope_value="S3", priority=1),  # narrower scope wins ties
            rule("off", scope="sku", scope_value="S4", priority=99, enabled=False),
            PricingRule.from_config(
                "seg", {"strategy": "segment", "priority": 100, "params": {"tiers": {"g": 5}}}
            ),
        )
    )
    skus = ["S1", "S2", "S3", "S4"]
    table, assigned = rules.assign(
        skus, ["shoes", "shoes", "hats", "hats"], [None, "acme", None, None]
    )
    names = [table[i].name for i in assigned]
    assert names == ["shoes", "brand", "one", "all"]
    assert "seg" not in [r.name for r in table]  # segment rules price quotes, not the catalogue


def test_a_rule_without_inputs_for_a_sku_lets_the_next_one_price_it() -> None:
    rules = RuleSet(
        (
            rule("demand", priority=0),
            PricingRule.from_config("comp", {"strategy": "competitor", "priority": 10}),
        )
    )
    usable = {"competitor": np.array([True, False])}
    table, assigned = rules.assign(["A", "B"], ["c", "c"], [None, None], usable)
    assert [table[i].name for i in assigned] == ["comp", "demand"]
    table, assigned = RuleSet(()).assign(["A"], ["c"], [None])
    assert assigned.tolist() == [-1]


def test_segment_discount_is_the_larger_of_segment_and_tier() -> None:
    seg = PricingRule.from_config(
        "seg",
        {"strategy": "segment", "params": {"segments": {"vip": 4}, "tiers": {"gold": 6}}},
    )
    assert seg.discount("vip", None) == pytest.approx(0.04)
    assert seg.discount("vip", "gold") == pytest.approx(0.06)
    assert seg.discount(None, None) == 0.0
