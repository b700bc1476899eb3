"""Fraud rules: a small expression language like Stripe Radar's, compiled into closures.

    :amount: > 500 and :card_country: not in ('US', 'CA')
    :customer_txn.txn_count_1h: >= 5 or :email_domain: in @disposable_domains
    is_missing(:device_id:) and lower(:email:) = 'test@example.com'

Syntax (grammar in ``engine.fraud.rules_parser``): attributes ``:name:`` (listed in
``engine.fraud.attributes``), numbers, quoted strings, ``true``/``false``, ``= == != < <= > >=``,
``+ - * /``, ``and or not``, ``in``/``not in`` a tuple or an ``@list``, and the functions
``is_missing lower upper starts_with ends_with contains``.

Semantics (three-valued, like SQL's NULL; evaluation never raises):
- An attribute that is absent, None or NaN is *missing*.  A comparison, ``in``, arithmetic or
  function involving a missing value is *unknown*; so is comparing a string with a number,
  ordering booleans, arithmetic on non-numbers, and division by zero.  ``not unknown`` is
  unknown; ``and``/``or`` follow Kleene logic (``false and unknown`` is false, ``true or
  unknown`` is true).  A rule matches only when its expression is *true*: unknown never matches,
  so ``not (:x: = 1)`` and ``:x: != 1`` both fail when ``:x:`` is missing.
  ``is_missing(x)`` is true when ``x`` is missing (or unknown) and is never unknown itself.
- Strings compare exactly (case-sensitive); use ``lower(:email:) = 'a@b.c'`` to ignore case.
  Numbers compare numerically (``1 = 1.0``); booleans compare only with ``=``/``!=``.
- ``x in @list`` is true when ``str(x)`` is in the list's set (integral floats are written
  without ``.0``); a list unknown at evaluation time is empty.
- A bare value used as a condition is true when it is ``true`` or a non-zero number
  (``:is_night:``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Decimal
from numbers import Integral, Real
from operator import add, eq, ge, gt, le, lt, mul, ne, sub, truediv
from typing import Any, Literal

import numpy as np

from engine.fraud.rules_parser import Node, Parsed, parse
from engine.fraud.rules_parser import RuleError as RuleError

Action = Literal["allow", "block", "review", "challenge"]
Mode = Literal["active", "shadow"]
ACTIONS: tuple[Action, ...] = ("challenge", "allow", "block", "review")  # evaluation order
MODES: tuple[Mode, ...] = ("active", "shadow")
Lists = Mapping[str, AbstractSet[str]]
Predicate = Callable[[Mapping[str, Any], Lists], bool]  # (attributes, lists) -> matched
_Fn = Callable[[Mapping[str, Any], Lists], Any]  # a value; None = missing / unknown
_OTHER = object()  # a value of no rule type (a list, a dict, …): every test of it is unknown


# --- values -------------------------------------------------------------------------------------


def _value(v: Any) -> Any:
    """An attribute value as the rules see it: str, int, float, bool, None or ``_OTHER``."""
    t = type(v)
    if t is str or t is int or t is bool:
        return v
    if t is float:
        return v if v == v else None
    return None if v is None else _convert(v)


def _convert(v: Any) -> Any:
    if isinstance(v, str):
        return str(v)
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, Integral):
        return int(v)
    if isinstance(v, Real | Decimal):
        try:
            f = float(v)
        except (ArithmeticError, ValueError):  # too large, a signalling NaN
            return None
        return f if f == f else None
    if type(v).__name__ in ("NAType", "NaTType"):  # pandas' missing values
        return None
    return _OTHER


def _truth(v: Any) -> Any:
    """A value used as a condition: True, False or None (unknown)."""
    t = type(v)
    return v if v is None or t is bool else (v != 0 if t is int or t is float else None)


def _key(x: Any) -> str:
    """How a value is looked up in a list."""
    if type(x) is float and x.is_integer():
        return str(int(x))
    return str(x)


# --- compilation --------------------------------------------------------------------------------

_COMPARE: dict[str, Callable[[Any, Any], bool]] = dict(
    zip(("=", "!=", "<", "<=", ">", ">="), (eq, ne, lt, le, gt, ge), strict=True)
)
_FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {"+": add, "-": sub, "*": mul, "/": truediv}
_STRING_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **{"lower": str.lower, "upper": str.upper, "contains": str.__contains__},
    **{"starts_with": str.startswith, "ends_with": str.endswith},
}
_NUMBER = frozenset({int, float})
_STRING = frozenset({str})


def _compile(node: Node) -> _Fn:
    op = node.op
    if op == "lit":
        constant = node.value
        return lambda a, lists: constant
    if op == "attr":
        name = node.name
        return lambda a, lists: _value(a.get(name))
    if op in _COMPARE:
        return _comparison(node)
    if op in _ARITHMETIC:
        return _arithmetic(node)
    if op in ("in", "not in"):
        return _membership(node)
    if op in ("and", "or"):
        return _logic(node)
    if op == "not":
        inner = _condition(node.args[0])
        return lambda a, lists: None if (r := inner(a, lists)) is None else not r
    if op == "neg":
        inner = _compile(node.args[0])
        return lambda a, lists: -x if type(x := inner(a, lists)) in (int, float) else None
    return _call(node)


def _condition(node: Node) -> _Fn:
    fn = _compile(node)
    if node.kind == "bool":
        return fn
    return lambda a, lists: _truth(fn(a, lists))


def _comparison(node: Node) -> _Fn:
    left, right = node.args
    if left.op == "lit" and right.op == "attr":
        left, right, op = right, left, _FLIP[node.op]
    else:
        op = node.op
    compare, ordered = _COMPARE[op], op not in ("=", "!=")
    if left.op == "attr" and right.op == "lit" and not isinstance(right.value, bool):
        return _attribute_vs_constant(left.name, compare, right.value)
    lf, rf = _compile(left), _compile(right)

    def general(a: Mapping[str, Any], lists: Lists) -> bool | None:
        x, y = lf(a, lists), rf(a, lists)
        tx, ty = type(x), type(y)
        if (tx is int or tx is float) and (ty is int or ty is float):
            return compare(x, y)
        if tx is ty and (tx is str or (tx is bool and not ordered)):
            return compare(x, y)
        return None

    return general


def _attribute_vs_constant(name: str, compare: Callable[[Any, Any], bool], c: Any) -> _Fn:
    """The common case, without a call per operand."""
    types = _STRING if type(c) is str else _NUMBER

    def fast(a: Mapping[str, Any], lists: Lists) -> bool | None:
        v = a.get(name)
        if type(v) not in types or v != v:  # v != v: NaN
            v = _value(v)
            if type(v) not in types:
                return None
        return compare(v, c)

    return fast


def _arithmetic(node: Node) -> _Fn:
    calculate = _ARITHMETIC[node.op]
    lf, rf = (_compile(n) for n in node.args)

    def arithmetic(a: Mapping[str, Any], lists: Lists) -> Any:
        x, y = lf(a, lists), rf(a, lists)
        tx, ty = type(x), type(y)
        if (tx is int or tx is float) and (ty is int or ty is float):
            try:
                r = calculate(x, y)
            except ArithmeticError:  # division by zero, float overflow
                return None
            return r if r == r else None
        return None

    return arithmetic


def _membership(node: Node) -> _Fn:
    negate = node.op == "not in"
    get = _compile(node.args[0])
    if node.name:
        list_name = node.name

        def in_list(a: Mapping[str, Any], lists: Lists) -> bool | None:
            x = get(a, lists)
            if x is None or x is _OTHER:
                return None
            try:
                key = _key(x)
            except ValueError:  # an integer too long to write out: no list can hold it
                return None
            values = lists.get(list_name)
            return (values is not None and key in values) != negate

        return in_list
    values = node.value if isinstance(node.value, tuple) else ()
    by_type: dict[type, frozenset[Any]] = {t: frozenset() for t in (str, bool, int, float)}
    for v in values:  # int and float share one set: 1 in (1.0)
        key = float if type(v) is int else type(v)
        by_type[key] = by_type[key] | {v}
    by_type[int] = by_type[float]

    def in_tuple(a: Mapping[str, Any], lists: Lists) -> bool | None:
        x = get(a, lists)
        found = by_type.get(type(x))
        return None if found is None else (x in found) != negate

    return in_tuple


def _logic(node: Node) -> _Fn:
    decides = node.op == "or"  # or: one true operand decides; and: one false operand
    fns = tuple(_condition(n) for n in node.args)

    def chain(a: Mapping[str, Any], lists: Lists) -> Any:
        unknown = False
        for fn in fns:
            r = fn(a, lists)
            if r is decides:
                return decides
            unknown = unknown or r is None
        return None if unknown else not decides

    return chain


def _call(node: Node) -> _Fn:
    fns = [_compile(n) for n in node.args]
    if node.name == "is_missing":
        f = fns[0]
        return lambda a, lists: f(a, lists) is None
    method = _STRING_FUNCTIONS[node.name]
    if len(fns) == 1:
        f = fns[0]
        return lambda a, lists: method(x) if type(x := f(a, lists)) is str else None
    f, g = fns

    def two(a: Mapping[str, Any], lists: Lists) -> bool | None:
        x, y = f(a, lists), g(a, lists)
        return method(x, y) if type(x) is str and type(y) is str else None

    return two


def _compile_text(
    text: str, known_attributes: Collection[str] | None, known_lists: Collection[str] | None
) -> tuple[_Fn, Parsed]:
    if not isinstance(text, str):
        raise RuleError(f"expression must be a string, not {type(text).__name__}")
    parsed = parse(text, known_attributes, known_lists)
    return _condition(parsed.tree), parsed


def compile_expression(
    text: str,
    known_attributes: Collection[str] | None = None,
    known_lists: Collection[str] | None = None,
) -> Predicate:
    """A predicate ``(attributes, lists) -> matched``; raises ``RuleError`` (field
    ``expression``) naming what is wrong and where.  Names are checked only against the given
    collections (None: any name)."""
    fn = _compile_text(text, known_attributes, known_lists)[0]

    def predicate(attributes: Mapping[str, Any], lists: Lists) -> bool:
        try:
            return fn(attributes, lists) is True
        except Exception:  # a value whose own methods fail: no match, never an error
            return False

    return predicate


def attribute_names(text: str) -> set[str]:
    """The attributes ``text`` reads (raises ``RuleError`` if it does not parse)."""
    return set(parse(text).attributes)


def list_names(text: str) -> set[str]:
    """The lists ``text`` reads (raises ``RuleError`` if it does not parse)."""
    return set(parse(text).lists)


# --- rule sets ----------------------------------------------------------------------------------


def rule_id_for(name: str) -> str:
    """The id a rule gets from its name when none is given: ``"Big basket!"`` → ``big-basket``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    expression: str
    action: Action
    priority: int = 100
    mode: Mode = "active"  # shadow: reported when it matches, never decides


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule_id: str
    name: str
    action: Action
    mode: Mode


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action | None  # of the first matching active rule; None: no active rule matched
    rule: RuleMatch | None
    matched: tuple[RuleMatch, ...]  # every matching rule (shadow too), in evaluation order


_NO_MATCH = Verdict(None, None, ())
_ORDER = {action: i for i, action in enumerate(ACTIONS)}


def _problems(rule: Rule, seen: set[str]) -> list[tuple[str, str]]:
    """(field, error) of everything wrong with ``rule`` but its expression."""
    out: list[tuple[str, str]] = []
    if not isinstance(rule.id, str) or not rule.id:
        out.append(("id", "the id must be a non-empty string"))
    elif rule.id in seen:
        out.append(("id", f"duplicate rule id '{rule.id}'"))
    if rule.action not in ACTIONS:
        out.append(("action", f"action {rule.action!r} is not one of {', '.join(ACTIONS)}"))
    if rule.mode not in MODES:
        out.append(("mode", f"mode {rule.mode!r} is not one of {', '.join(MODES)}"))
    if type(rule.priority) is not int:
        out.append(("priority", f"priority {rule.priority!r} is not an integer"))
    return out


class RuleSet:
    """Rules compiled once, evaluated in order: by action (``ACTIONS``), then priority
    (ascending), then id.  Every rule is evaluated; the first matching active rule decides."""

    def __init__(
        self,
        rules: Iterable[Rule],
        known_attributes: Collection[str] | None = None,
        known_lists: Collection[str] | None = None,
    ) -> None:
        given = list(rules)
        problems: list[dict[str, str]] = []
        compiled: dict[str, tuple[_Fn, Parsed]] = {}
        seen: set[str] = set()
        for rule in given:
            found = _problems(rule, seen)
            seen.add(rule.id)
            try:
                compiled[rule.id] = _compile_text(rule.expression, known_attributes, known_lists)
            except RuleError as e:
                found.append(("expression", e.message))
            problems += [
                {"rule": rule.id, "field": f"rules[{rule.id}].{field}", "error": error}
                for field, error in found
            ]
        if problems:
            raise RuleError(
                "; ".join(f"rule '{p['rule']}': {p['error']}" for p in problems),
                field=problems[0]["field"],
                items=problems,
            )
        self.rules: tuple[Rule, ...] = tuple(
            sorted(given, key=lambda r: (_ORDER[r.action], r.priority, r.id))
        )
        self._compiled = tuple(
            (compiled[r.id][0], RuleMatch(r.id, r.name, r.action, r.mode), r.mode == "active")
            for r in self.rules
        )
        parsed = [p for _, p in compiled.values()]
        self.attributes = frozenset[str]().union(*(p.attributes for p in parsed))  # read by rules
        self.lists = frozenset[str]().union(*(p.lists for p in parsed))

    def evaluate(self, attributes: Mapping[str, Any], lists: Lists) -> Verdict:
        matched: list[RuleMatch] = []
        decisive: RuleMatch | None = None
        for fn, match, active in self._compiled:
            try:
                hit = fn(attributes, lists) is True
            except Exception:  # see compile_expression
                hit = False
            if hit:
                matched.append(match)
                if active and decisive is None:
                    decisive = match
        if not matched:
            return _NO_MATCH
        return Verdict(decisive.action if decisive else None, decisive, tuple(matched))
