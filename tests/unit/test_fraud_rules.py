"""The fraud rules language: parsing, three-valued semantics, errors, rule-set evaluation.
(Its fuzz tests are in test_fraud_rules_fuzz.py.)"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from engine.errors import ValidationError
from engine.fraud.attributes import known_attributes, request_attributes
from engine.fraud.rules import (
    ACTIONS,
    Rule,
    RuleError,
    RuleMatch,
    RuleSet,
    Verdict,
    _compile_text,
    attribute_names,
    compile_expression,
    list_names,
)

pytestmark = pytest.mark.unit
LISTS = {"risky": {"NG", "RU"}, "bins": {"411111", "42"}}


def match(expression: str, lists: dict[str, set[str]] | None = None, **attributes: Any) -> bool:
    return compile_expression(expression)(attributes, LISTS if lists is None else lists)


def error(expression: str, attrs: set[str] | None = None, lists: set[str] | None = None) -> str:
    with pytest.raises(RuleError) as info:
        compile_expression(expression, attrs, lists)
    assert isinstance(info.value, ValidationError)
    assert info.value.code == "invalid_rule"
    assert info.value.field == "expression"
    return info.value.message


# --- parsing and operators ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (":a: = 5", True),
        (":a: == 5", True),
        (":a: = 5.0", True),
        (":a: != 5", False),
        (":a: != 6", True),
        (":a: < 6", True),
        (":a: < 5", False),
        (":a: <= 5", True),
        (":a: > 4.5", True),
        (":a: > 5", False),
        (":a: >= 5", True),
        ("6 > :a:", True),
        ("5 >= :a:", True),
        (":a: + 1 = 6", True),
        (":a: - 1 = 4", True),
        (":a: * 2 = 10", True),
        (":a: / 2 = 2.5", True),
        (":a: + 2 * 3 = 11", True),
        ("(:a: + 2) * 3 = 21", True),
        (":a: - 2 - 1 = 2", True),
        (":a: / 5 / 2 = 0.5", True),  # left-associative
        ("-:a: = -5", True),
        ("- -:a: = 5", True),
        (":a: * 2 > :b:", True),
        (":a: = :b: - 4", True),
    ],
)
def test_numeric_operators(expression: str, expected: bool) -> None:
    assert match(expression, a=5, b=9) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("true or true and false", True),  # and binds tighter than or
        ("(true or true) and false", False),
        ("not false and false", False),  # not binds tighter than and
        ("not (false and false)", True),
        ("not true or true", True),
        ("not (true or true)", False),
        ("false or false or true", True),
        ("true and true and false", False),
        ("not not true", True),
        ("NOT :a: = 1 AnD :a: IN (5) Or FALSE", True),  # keywords are case-insensitive
        ("TRUE", True),
        (":a: = 5 = true", None),  # comparisons do not chain: a syntax error
    ],
)
def test_logic_precedence(expression: str, expected: bool | None) -> None:
    if expected is None:
        assert "at position" in error(expression)
    else:
        assert match(expression, a=5) is expected


def test_strings_with_escaped_quotes() -> None:
    assert match(r":s: = 'it\'s'", s="it's")
    assert match(r':s: = "say \"hi\""', s='say "hi"')
    assert match(r":s: = 'back\\slash'", s="back\\slash")
    assert match(""":s: = "it's" and :s: = 'it\\'s'""", s="it's")
    assert not match(":s: = 'US'", s="us")  # exact, case-sensitive
    assert match(":s: < 'b' and :s: >= 'a'", s="abc")


def test_tuples() -> None:
    assert match(":c: in ('US', 'CA', 'GB')", c="CA")
    assert not match(":c: in ('US', 'CA')", c="FR")
    assert match(":c: not in ('US', 'CA')", c="FR")
    assert match(":c: NOT IN ('US',)", c="FR")
    assert match(":c: in ('US')", c="US")
    assert match(":n: in (1, 2.5, -3)", n=-3)
    assert match(":n: in (1, 2)", n=1.0)
    assert not match(":n: in ('1', '2')", n=1)  # a number is not a string
    assert not match(":s: in (1, 2)", s="1")
    assert match(":b: in (true)", b=True)
    assert not match(":b: in (1)", b=True)  # a boolean is not a number
    assert match("lower(:c:) in ('us', 'ca')", c="US")
    assert match(":c: in ('(', ')')", c=")")  # a string ')' after a comma is not the end


def test_lists() -> None:
    assert match(":c: in @risky", c="NG")
    assert not match(":c: in @risky", c="US")
    assert match(":c: not in @risky", c="US")
    assert match(":bin: in @bins", bin=411111)  # str(value) is looked up
    assert match(":bin: in @bins", bin=42.0)  # an integral float without .0
    assert not match(":c: in @unknown_now", c="NG")  # a list absent at evaluation is empty
    assert match(":c: not in @unknown_now", c="NG")
    assert match(":c: in @risky", lists={"risky": frozenset({"XX"})}, c="XX")


def test_functions() -> None:
    assert match("is_missing(:x:)")
    assert not match("is_missing(:x:)", x=0)
    assert match("IS_MISSING(:x:) and not is_missing(:y:)", y="")
    assert match("lower(:e:) = 'a@b.com'", e="A@B.com")
    assert match("upper(:c:) = 'US'", c="us")
    assert match("starts_with(:bin:, '4111')", bin="411111")
    assert not match("starts_with(:bin:, '5')", bin="411111")
    assert match("ends_with(lower(:e:), '@mailinator.com')", e="x@MAILINATOR.com")
    assert match("contains(:e:, '+')", e="a+b@c.d")
    assert not match("lower(:n:) = '5'", n=5)  # lower of a number is unknown


def test_a_bare_value_is_a_condition() -> None:
    assert match(":is_night:", is_night=1.0)
    assert not match(":is_night:", is_night=0.0)
    assert match(":flag: and :a: > 1", flag=True, a=2)
    assert not match(":s:", s="yes")  # a string is never true
    assert not match(":missing:")


# --- missing values and type mismatches ---------------------------------------------------------


@pytest.mark.parametrize("missing", [None, math.nan, np.nan, np.float32("nan"), Decimal("NaN")])
@pytest.mark.parametrize(
    "expression",
    [
        ":x: = 1",
        ":x: != 1",
        ":x: < 1",
        ":x: >= 1",
        ":x: = 'a'",
        ":x: != 'a'",
        ":x: in (1, 'a')",
        ":x: not in (1, 'a')",
        ":x: in @risky",
        ":x: not in @risky",
        "not (:x: = 1)",
        "not (:x: in (1))",
        ":x: + 1 > 0",
        "-:x: < 0",
        "lower(:x:) = 'a'",
        "starts_with(:x:, 'a')",
        ":x: = 1 and true",
        ":x: = 1 or false",
        "not (:x: = 1 or false)",
        "not (:x: = 1 and true)",
        ":x:",
        "not :x:",
    ],
)
def test_missing_attributes_never_match(missing: Any, expression: str) -> None:
    assert not match(expression, x=missing)
    assert not match(expression)
    assert match("is_missing(:x:)", x=missing)


def test_kleene_logic_with_unknowns() -> None:
    assert match(":x: = 1 or true")  # true or unknown = true
    assert match("not (:x: = 1 and false)")  # false and unknown = false
    assert match("is_missing(:x:) or :x: > 5")
    assert match("not is_missing(:x:) and :x: > 5", x=6)


@pytest.mark.parametrize(
    ("expression", "attributes"),
    [
        (":s: > 5", {"s": "10"}),
        (":s: = 5", {"s": "5"}),
        (":n: = '5'", {"n": 5}),
        ("not (:s: > 5)", {"s": "10"}),
        (":s: != 5", {"s": "10"}),
        (":s: + 1 > 0", {"s": "1"}),
        (":a: / :b: > 1", {"a": 1, "b": 0}),
        ("not (:a: / :b: > 1)", {"a": 1, "b": 0}),
        (":a: / 0 = 0", {"a": 0}),
        (":b: < true", {"b": False}),
        (":b: = 1", {"b": True}),
        (":a: = :b:", {"a": [1], "b": [1]}),
        (":a: in (1)", {"a": {"x": 1}}),
        (":a: in @risky", {"a": object()}),
        (":a: * :a: > 0", {"a": 1e308}),
        (":a: - :a: = 0", {"a": math.inf}),  # inf - inf is NaN: unknown
        (":a: / 3 > 0", {"a": 10**400}),  # too large for a float
    ],
)
def test_type_mismatch_and_arithmetic_errors_are_false_not_exceptions(
    expression: str, attributes: dict[str, Any]
) -> None:
    expected = expression == ":a: * :a: > 0"  # inf is a number
    assert match(expression, **attributes) is expected
    # false because unknown, not because an exception was swallowed
    assert (_compile_text(expression, None, None)[0](attributes, LISTS) is True) is expected


def test_numpy_and_decimal_values() -> None:
    assert match(":a: = 5", a=np.int64(5))
    assert match(":a: > 4.5", a=np.float32(4.75))
    assert match(":a: = true", a=np.bool_(True))
    assert match(":a: = 12.5", a=Decimal("12.5"))
    assert match(":a: in @bins", a=np.int64(42))


# --- errors -------------------------------------------------------------------------------------


def test_error_messages_name_the_problem_and_its_position() -> None:
    known = {"amount", "card_country"}
    assert error(":amount: > 1 and :foo: = 2", known) == "unknown attribute ':foo:' at position 17"
    assert error(":amonut: > 1", known).startswith(
        "unknown attribute ':amonut:' (did you mean ':amount:'?) at position 0"
    )
    assert (
        error(":card_country: in @nope", known, {"risky"}) == "unknown list '@nope' at position 18"
    )
    assert error(":amount: > > 1") == "expected a value, found '>' at position 11"
    assert (
        error(":amount: > 1 and")
        == "expected a value, found the end of the expression at position 16"
    )
    assert error("(:amount: > 1") == "expected ')', found the end of the expression at position 13"
    assert error(":amount: > 1)") == "unexpected ')' at position 12"
    assert error(":a: = @risky") == "list '@risky' can only follow 'in' or 'not in' at position 6"
    assert error("@risky") == "list '@risky' can only follow 'in' or 'not in' at position 0"
    assert error(":a: = 'abc") == "unterminated string at position 6"
    assert error(":a: = 1 $") == "unexpected character '$' at position 8"
    assert error(":A: = 1").startswith("malformed attribute")
    assert error("amount > 1").startswith("unknown word 'amount'")
    assert error(":a: not (1)") == "expected 'in' after 'not', found '(' at position 8"
    assert error(":a: in (:b:)").startswith("expected a literal value in the tuple")
    assert error("(1, 2) = :a:") == "a tuple can only follow 'in' or 'not in' at position 2"
    assert error("'a' + 1 > 0") == "'+' needs a number, found a string at position 0"
    assert error("'a' < 1") == "cannot compare a string with a number at position 4"
    assert error("'a'") == "expected a condition, found a string at position 0"
    assert error("lower(1) = 'a'") == "lower() needs a string, found a number at position 6"
    assert error("starts_with(:a:) ") == "starts_with() takes 2 argument(s), got 1 at position 0"
    assert error("") == "empty expression at position 0"
    assert error("  \n ") == "empty expression at position 0"
    too_long = ":amount: > 1" + " " * 2_000
    assert error(too_long) == "expression longer than 2000 characters (2012) at position 2000"
    assert "nested more than" in error("(" * 40 + "true" + ")" * 40)
    assert "operations deep" in error(" + ".join(["1"] * 80) + " > 0")
    with pytest.raises(RuleError, match="must be a string"):
        compile_expression(5)  # type: ignore[arg-type]


def test_names_an_expression_reads() -> None:
    text = ":a.b: > 1 and (:c: in @l1 or lower(:d:) not in @l2) and :a.b: < 9"
    assert attribute_names(text) == {"a.b", "c", "d"}
    assert list_names(text) == {"l1", "l2"}
    with pytest.raises(RuleError):
        attribute_names(":a: >")


def test_every_documented_attribute_is_known() -> None:
    known = known_attributes()
    assert {"amount", "email_domain", "risk_score", "probability"} <= known
    assert {"customer_txn.txn_count_1h", "amount_vs_customer_7d", "is_night"} <= known
    compile_expression(":customer_txn.txn_count_1h: > 3 and :risk_score: > 80", known)


def test_request_attributes() -> None:
    attrs = request_attributes(
        amount=12.5, currency="usd", email="Ann@Example.COM", ts=1_530_000_000.0, card_bin=None
    )
    assert attrs == {
        "amount": 12.5,
        "currency": "USD",
        "email": "Ann@Example.COM",
        "email_domain": "example.com",
        "hour": 8,  # 2018-06-26 08:00 UTC
    }
    assert compile_expression(":email_domain: = 'example.com' and :hour: = 8")(attrs, {})


# --- rule sets ----------------------------------------------------------------------------------


def rule(id: str, action: str, expression: str = "true", **more: Any) -> Rule:
    return Rule(id, f"rule {id}", expression, action, **more)  # type: ignore[arg-type]


def test_evaluation_order_is_challenge_allow_block_review_then_priority_then_id() -> None:
    rules = [
        rule("r1", "review"),
        rule("b2", "block", priority=5),
        rule("b1", "block", priority=5),
        rule("b0", "block", priority=50),
        rule("a1", "allow", ":vip: = true"),
        rule("c1", "challenge", ":amount: > 100"),
    ]
    rs = RuleSet(rules)
    assert [r.id for r in rs.rules] == ["c1", "a1", "b1", "b2", "b0", "r1"]
    assert ACTIONS == ("challenge", "allow", "block", "review")
    verdict = rs.evaluate({"amount": 500, "vip": True}, {})
    assert verdict.action == "challenge"
    assert verdict.rule == RuleMatch("c1", "rule c1", "challenge", "active")
    assert [m.rule_id for m in verdict.matched] == ["c1", "a1", "b1", "b2", "b0", "r1"]
    assert rs.evaluate({"amount": 5, "vip": True}, {}).action == "allow"
    assert rs.evaluate({"amount": 5}, {}).rule == RuleMatch("b1", "rule b1", "block", "active")


def test_shadow_rules_are_reported_but_never_decide() -> None:
    rs = RuleSet(
        [
            rule("s", "block", ":amount: > 100", mode="shadow", priority=1),
            rule("b", "block", ":amount: > 1000"),
            rule("r", "review", ":amount: > 50"),
        ]
    )
    verdict = rs.evaluate({"amount": 500}, {})
    assert verdict.action == "review"
    assert verdict.rule is not None and verdict.rule.rule_id == "r"
    assert verdict.matched == (
        RuleMatch("s", "rule s", "block", "shadow"),
        RuleMatch("r", "rule r", "review", "active"),
    )
    assert rs.evaluate({"amount": 20}, {}) == Verdict(None, None, ())
    alone = RuleSet([rule("s", "block", mode="shadow")]).evaluate({}, {})
    assert alone.action is None and alone.rule is None and len(alone.matched) == 1


def test_rule_set_errors_name_every_bad_rule() -> None:
    with pytest.raises(RuleError) as info:
        RuleSet(
            [
                rule("ok", "block", ":amount: > 1"),
                rule("bad", "block", ":amount: >"),
                rule("ok", "blok"),
                rule("unknown", "review", ":nope: = 1"),
            ],
            known_attributes={"amount"},
        )
    e = info.value
    assert e.field == "rules[bad].expression"
    assert (
        "rule 'bad': expected a value, found the end of the expression at position 10" in e.message
    )
    assert [item["field"] for item in e.items] == [
        "rules[bad].expression",
        "rules[ok].id",
        "rules[ok].action",
        "rules[unknown].expression",
    ]
    assert "unknown attribute ':nope:' at position 0" in e.message


def test_rule_set_attributes_and_lists() -> None:
    rs = RuleSet([rule("a", "block", ":x: in @l"), rule("b", "review", ":y: > 1")])
    assert rs.attributes == {"x", "y"}
    assert rs.lists == {"l"}
