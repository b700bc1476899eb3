"""The fraud rules language is a safe language: fuzzed with random text, Python-looking text and
random well-formed trees (every operator and function, huge literals, deep nesting), the
compiler only ever raises ``RuleError`` (a 422 naming ``expression`` over the admin API), never
runs Python (an audit hook watches for exec, compile, imports, files and processes while rules
compile and run), keeps its size and depth limits (no ``RecursionError``), and every rule it
accepts evaluates to true or false on any request."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.fraud.attributes import known_attributes
from engine.fraud.rules import Rule, RuleError, RuleSet, _compile_text, compile_expression
from engine.fraud.rules_parser import FUNCTIONS, MAX_DEPTH, MAX_LENGTH, MAX_NESTING

pytestmark = pytest.mark.unit
R = TypeVar("R")

# --- nothing runs Python ------------------------------------------------------------------------

# audit events that would mean an expression reached Python itself (see the audit events table
# of the Python docs); "open" too: no rule reads a file
FORBIDDEN_EVENTS = (
    "exec",
    "compile",
    "import",
    "open",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "subprocess.Popen",
    "ctypes",
    "socket.",
)
_watch = threading.local()
_seen: list[str] = []


def _audit(event: str, _args: tuple[Any, ...]) -> None:
    if getattr(_watch, "on", False) and event.startswith(FORBIDDEN_EVENTS):
        _seen.append(event)


_HOOK_INSTALLED = "cartwise-rules-fuzz-audit"
if not getattr(sys, _HOOK_INSTALLED.replace("-", "_"), False):  # once per process
    sys.addaudithook(_audit)
    setattr(sys, _HOOK_INSTALLED.replace("-", "_"), True)


@contextmanager
def watched() -> Iterator[None]:
    """Fails the test if the code in the block triggers a forbidden audit event."""
    _seen.clear()
    _watch.on = True
    try:
        yield
    finally:
        _watch.on = False
    assert not _seen, f"a rule reached Python: {_seen}"


def test_the_watch_sees_python_running() -> None:
    with pytest.raises(AssertionError, match="reached Python"), watched():
        eval("1 + 1")


KNOWN = known_attributes()
LISTS = {"blocked": {"1", "x", "de"}, "vip": {"a@b.c"}}


def _compile(text: str) -> Callable[[dict[str, Any], Any], bool] | None:
    """The predicate, or None when the text is refused (with a RuleError naming the field)."""
    refused: RuleError | None = None
    with watched():
        try:
            return compile_expression(text, KNOWN | {"a", "b", "s"}, LISTS.keys())
        except RuleError as e:
            refused = e
    assert refused.field == "expression" and refused.code == "invalid_rule"
    assert refused.position is not None
    assert 0 <= refused.position <= max(len(text), MAX_LENGTH)
    assert f"at position {refused.position}" in refused.message
    return None


def _evaluate(predicate: Callable[[dict[str, Any], Any], bool], attributes: dict[str, Any]) -> None:
    started = time.perf_counter()
    with watched():
        assert predicate(attributes, LISTS) in (True, False)
    assert time.perf_counter() - started < 1.0


ATTACKS = [
    "__import__('os').system('touch {sentinel}')",
    ":amount: > 0 and __import__('os').system('touch {sentinel}')",
    "eval(\"__import__('os').system('touch {sentinel}')\")",
    "exec('import os')",
    "open('{sentinel}', 'w')",
    "().__class__.__bases__[0].__subclasses__()",
    ":email:.__class__",
    "lower(:email:).__class__.__mro__",
    "getattr(:amount:, '__class__')",
    ":__class__: = 1",
    ":amount.__class__: = 1",
    "lambda: 1",
    "(lambda x: x)(1) = 1",
    "[x for x in (1, 2)] = 1",
    "{{1: 2}} = 1",
    "{{'a'}} = 1",
    "1 if true else 2",
    ":amount: ** 2 > 1",
    ":amount: // 2 > 1",
    ":amount: % 2 = 1",
    "f'{{1}}' = '1'",
    "b'x' = 'x'",
    "import os",
    "os.system('id')",
    "'x'.join(('a', 'b')) = 'a'",
    ":amount: > 0; import os",
    ":amount: > 0 # comment",
    "`id`",
    "$(id)",
    ":amount: > 0 and __builtins__",
    "globals()",
    "__import__",
    "True and False",  # keywords are case-insensitive: the language's own true and false
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_python_is_refused_and_never_run(attack: str, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    text = attack.format(sentinel=sentinel)
    predicate = _compile(text)
    if predicate is not None:  # accepted only as the language reads it: data, not code
        _evaluate(predicate, {"amount": 5.0, "email": "a@b.c"})
    assert predicate is None or text == "True and False"
    assert not sentinel.exists()


# --- random text ---------------------------------------------------------------------------------

PYTHONISH = (
    *("__import__", "os", "system", "eval", "exec", "lambda", "for", "if", "else", "import"),
    *(".", "[", "]", "{", "}", ":", ";", "**", "//", "%", "~", "^", "|", "&", "<<", "`"),
    *("__class__", "__dict__", "__globals__", "'", '"', "\\", "\\'", "#", "\n", "\t", "\x00"),
    *(":amount:", ":email:", ":a.b:", "@blocked", "@", "(", ")", ",", "=", "!=", "<", ">="),
    *("and", "or", "not", "in", "true", "false", "1", "-1e309", "9" * 40, "1e-400", ".5"),
    *("lower", "upper", "is_missing", "starts_with", "ends_with", "contains", "'\\u00e9'"),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=200),
        st.text(
            alphabet=st.characters(codec="utf-8"), min_size=MAX_LENGTH - 5, max_size=MAX_LENGTH + 5
        ),
        st.lists(st.sampled_from(PYTHONISH), max_size=40).map(" ".join),
        st.lists(st.sampled_from(PYTHONISH), max_size=40).map("".join),
    )
)
def test_any_text_compiles_or_is_a_rule_error(text: str) -> None:
    predicate = _compile(text)
    if predicate is not None:
        _evaluate(predicate, {"amount": 5.0, "email": "a@b.c", "a": 1, "s": "x"})


# --- random well-formed trees ---------------------------------------------------------------


def _quote(s: str) -> str:
    q = "'" if len(s) % 2 else '"'
    return q + s.replace("\\", "\\\\").replace(q, "\\" + q) + q


NUMBERS = st.one_of(  # as a tuple holds them: a negative number is a literal there
    st.integers(-(10**6), 10**6).map(str),
    st.integers(0, 10**400).map(str),  # huge integers
    st.just("9" * 1500),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e308", "1e309", "1e-400", "0.0", ".5", "5.", "1E+3", "0"]),
)
NUM_LITERALS = NUMBERS.map(lambda r: f"({r})" if r.startswith("-") else r)
STR_LITERALS = st.text(max_size=12).map(_quote)
NUM_ATTRS = st.sampled_from(
    [":amount:", ":a:", ":risk_score:", ":item_count:", ":customer_txn.txn_count_1h:"]
)
STR_ATTRS = st.sampled_from([":email:", ":s:", ":card_country:", ":ip:", ":currency:"])
ANY_ATTRS = st.sampled_from([":b:", ":device_id:", ":amount:", ":email:"])


def _num() -> st.SearchStrategy[str]:
    return st.recursive(
        st.one_of(NUM_LITERALS, NUM_ATTRS),
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from("+-*/"), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            st.tuples(inner, st.sampled_from("+-*/"), inner).map(" ".join),  # precedence
            inner.map(lambda x: f"-{x}"),
            inner.map(lambda x: f"({x})"),
        ),
        max_leaves=8,
    )


def _str() -> st.SearchStrategy[str]:
    return st.recursive(
        st.one_of(STR_LITERALS, STR_ATTRS),
        lambda inner: st.one_of(
            inner.map(lambda x: f"lower({x})"),
            inner.map(lambda x: f"UPPER({x})"),
            inner.map(lambda x: f"({x})"),
        ),
        max_leaves=3,
    )


def _tuple() -> st.SearchStrategy[str]:
    literal = st.one_of(NUMBERS, STR_LITERALS, st.sampled_from(["true", "false", "-1", "-2.5"]))
    return st.lists(literal, min_size=1, max_size=5).map(lambda xs: "(" + ", ".join(xs) + ")")


def _cond() -> st.SearchStrategy[str]:
    num, text = _num(), _str()
    ops = st.sampled_from(["=", "==", "!=", "<", "<=", ">", ">="])
    leaf = st.one_of(
        st.tuples(num, ops, num).map(" ".join),
        st.tuples(text, ops, text).map(" ".join),
        st.tuples(
            st.one_of(num, text, ANY_ATTRS),
            st.sampled_from(["in", "not in", "NOT IN"]),
            st.one_of(_tuple(), st.sampled_from(["@blocked", "@vip"])),
        ).map(" ".join),
        st.tuples(
            st.sampled_from(sorted(f for f in FUNCTIONS if FUNCTIONS[f][0] == ("str", "str"))),
            text,
            text,
        ).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.one_of(num, text, ANY_ATTRS).map(lambda x: f"is_missing({x})"),
        st.sampled_from(["true", "false", "TRUE", ":b:", ":is_night:"]),
        st.tuples(
            st.sampled_from(["true", "false", ":b:"]),
            st.sampled_from(["=", "!="]),
            st.sampled_from(["true", "false", ":b:"]),
        ).map(" ".join),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["and", "or", "AND", "Or"]), inner).map(" ".join),
            st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
                lambda t: f"({' '.join(t)})"
            ),
            inner.map(lambda c: f"not {c}"),
            inner.map(lambda c: f"({c})"),
        ),
        max_leaves=10,
    )


REQUEST_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**5000),  # more digits than str() allows
    st.floats(),
    st.decimals(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sampled_from([np.int64(3), np.float32("nan"), np.float64("inf"), np.bool_(True), b"x"]),
    st.sampled_from([object(), Decimal("NaN"), Decimal("1e999999"), float("-inf")]),
)
ATTRIBUTES = st.dictionaries(
    st.sampled_from(
        [
            "amount",
            "a",
            "b",
            "s",
            "email",
            "risk_score",
            "customer_txn.txn_count_1h",
            "item_count",
            "card_country",
            "ip",
            "currency",
            "device_id",
            "is_night",
        ]
    ),
    REQUEST_VALUES,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cond(), st.lists(ATTRIBUTES, min_size=1, max_size=3))
@example(":amount: not in @blocked", [{"amount": 10**5000}])  # too long for str()
@example(":a: * 1e308 * 10 - :a: * 1e308 * 10 > 0", [{"a": 1}, {"a": 10**400}])  # inf - inf
def test_well_formed_rules_compile_and_always_evaluate(
    expression: str, requests: list[dict[str, Any]]
) -> None:
    predicate = _compile(expression)
    if predicate is None:  # only the limits (length, nesting, depth) refuse a well-formed rule
        with pytest.raises(RuleError, match=r"longer than|nested more|operations deep"):
            compile_expression(expression, KNOWN | {"a", "b", "s"}, LISTS.keys())
        return
    for attributes in requests:
        _evaluate(predicate, attributes)
    # and no exception is left for the predicate's safety net to swallow
    fn = _compile_text(expression, None, None)[0]
    with watched():
        for attributes in requests:
            assert fn(attributes, LISTS) in (True, False, None)
    rules = RuleSet([Rule("r", "r", expression, "block")], KNOWN | {"a", "b", "s"}, LISTS.keys())
    with watched():
        for attributes in requests:
            verdict = rules.evaluate(attributes, LISTS)
            assert verdict.action in (None, "block")


# --- limits -----------------------------------------------------------------------------------


def _nest(n: int, opener: str, leaf: str, closer: str) -> str:
    return opener * n + leaf + closer * n


DEEP = [
    *(_nest(n, "(", "1 = 1", ")") for n in (MAX_NESTING, MAX_NESTING + 1, 500)),
    *(_nest(n, "not ", "true", "") for n in (MAX_NESTING, MAX_NESTING + 1, 400)),
    *(_nest(n, "-", "1", "") + " < 0" for n in (MAX_NESTING, 1500)),
    *(_nest(n, "- (", "1", ")") + " < 0" for n in (10, 400)),
    *(_nest(n, "lower(", ":email:", ")") + " = 'a'" for n in (MAX_NESTING - 1, 200)),
    *(_nest(n, "is_missing(", ":email:", ")") for n in (MAX_NESTING, 150)),
    " + ".join(["1"] * (MAX_DEPTH - 1)) + " > 0",
    " + ".join(["1"] * 450) + " > 0",
    " * ".join([":amount:"] * 150) + " > 0",
    " and ".join([":amount: > 1"] * 110),  # flat: one node of many operands
    " or ".join(["(:a: = 1 and not :b:)"] * 70),
    _nest(MAX_NESTING // 2, "(not ", "true", ")"),
    "1" * (MAX_LENGTH + 1),
    "9" * (MAX_LENGTH - 4) + " > 0",
    "'" + "x" * (MAX_LENGTH - 8) + "' = :s:",
    "(" * 10_000,
    ")" * 10_000,
    "'" + "\\" * 1999,
    " " * 5000 + "true",
]


@pytest.mark.parametrize("text", DEEP, ids=lambda t: f"{t[:12]}…{len(t)}")
def test_depth_and_size_limits_hold(text: str) -> None:
    predicate = _compile(text)  # a RecursionError would fail here
    if predicate is not None:
        assert len(text) <= MAX_LENGTH
        big = {"amount": 10**300, "a": 1, "b": True, "email": "a@b.c", "s": "x"}
        _evaluate(predicate, big)
        _evaluate(predicate, {"amount": math.inf})


def test_the_limits_are_enforced_where_python_would_recurse() -> None:
    assert _compile(_nest(MAX_NESTING + 1, "(", "1 = 1", ")")) is None
    assert _compile(_nest(MAX_NESTING, "(", "1 = 1", ")")) is not None
    assert _compile(" + ".join(["1"] * (MAX_DEPTH + 1)) + " > 0") is None
    assert _compile("1" * (MAX_LENGTH + 1)) is None
