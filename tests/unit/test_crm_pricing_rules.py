"""The ``rfm`` map of segment pricing rules: validation names the field, and the discount is
the largest of segment, tier and RFM segment."""

from __future__ import annotations

import pytest

from engine.errors import ValidationError
from engine.pricing.config import default_rules
from engine.pricing.rules import PricingRule

pytestmark = pytest.mark.unit


def segment_rule(**params: object) -> PricingRule:
    return PricingRule.from_config("r", {"strategy": "segment", "params": params})


def test_the_discount_is_the_largest_that_applies() -> None:
    rule = segment_rule(segments={"vip": 4}, tiers={"gold": 6}, rfm={"at_risk": 5, "lost": 9})
    assert rule.discount(None, None, "at_risk") == pytest.approx(0.05)
    assert rule.discount("vip", None, "at_risk") == pytest.approx(0.05)
    assert rule.discount("vip", "gold", "at_risk") == pytest.approx(0.06)
    assert rule.discount(None, "gold", "lost") == pytest.approx(0.09)
    assert rule.discount(None, None, "champions") == 0.0
    assert rule.discount("vip", "gold") == pytest.approx(0.06)  # no RFM segment known


def test_an_rfm_only_rule_is_valid_and_round_trips() -> None:
    rule = segment_rule(rfm={"cannot_lose": 8})
    assert rule.params["rfm"] == {"cannot_lose": 8.0}
    assert PricingRule.from_config("r", rule.config()) == rule


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"rfm": {"vip": 5}}, "params.rfm.vip"),
        ({"rfm": {"at_risk": 95}}, "params.rfm.at_risk"),
        ({"rfm": {"at_risk": "lots"}}, "params.rfm.at_risk"),
        ({"rfm": ["at_risk"]}, "params.rfm"),
        ({"rfm": {}}, "params.segments"),
    ],
)
def test_a_bad_rfm_map_names_its_field(params: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        segment_rule(**params)
    assert err.value.field == field


def test_the_shipped_win_back_rule() -> None:
    config = default_rules()["rules"]["win-back"]
    rule = PricingRule.from_config("win-back", config)
    assert rule.strategy == "segment" and rule.enabled
    assert rule.discount(None, None, "at_risk") == pytest.approx(0.05)
    assert rule.discount(None, None, "cannot_lose") == pytest.approx(0.08)
    assert rule.discount(None, "gold", "champions") == 0.0
