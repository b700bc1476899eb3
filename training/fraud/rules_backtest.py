"""Backtest of fraud rules (``engine.fraud.rules``) on a transactions table.

Rules file (YAML or JSON): a list of ``{id?, name, expression, action, priority?, mode?}``
(``id`` defaults to a slug of ``name``; ``priority`` to 100; ``mode`` to ``active``), or a
mapping with that list under ``rules``.  Lists file: ``{list_name: [values, …]}``.

Every row of the table (the import format of ``features/offline.py``) gets the attributes a rule
would see at decision time: the request's (``card_fingerprint`` is the ``card_id`` column;
optional columns ``currency``, ``payment_method``, ``channel``, ``card_bin``, ``card_country``,
``card_last4``, ``billing_country``, ``item_count``) and every model input of
``engine.fraud.inputs.INPUTS`` from the point-in-time features (store features as float64,
derived inputs as the model's float32 values).  No model runs: ``risk_score`` and
``probability`` are missing.  Only the attributes the rules read are built, and features are
computed only if a rule reads one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from engine.errors import ValidationError
from engine.fraud.attributes import (
    MODEL_ATTRIBUTES,
    REQUEST_ATTRIBUTES,
    email_domain,
    known_attributes,
)
from engine.fraud.inputs import INPUTS, STORE_INPUTS, assemble
from engine.fraud.rules import (
    ACTIONS,
    MODES,
    Rule,
    RuleError,
    RuleSet,
    compile_expression,
    rule_id_for,
)
from engine.fraud.rules_parser import valid_list_name
from features.offline import transaction_events, transaction_features

RULE_FIELDS = ("id", "name", "expression", "action", "priority", "mode")
# request attribute -> column of the canonical transaction frame (transaction_events)
_EVENT_COLUMNS = {
    "customer_id": "customer",
    "merchant_id": "merchant",
    "card_fingerprint": "card",
    "device_id": "device",
    "ip": "ip",
    "email": "email",
    "shipping_country": "shipping_country",
}


# --- files --------------------------------------------------------------------------------------


def _read(path: Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
        return json.loads(text) if Path(path).suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ValidationError(f"{path}: {e}", field="path", code="invalid_import") from e


def _rule(entry: Any, known: AbstractSet[str]) -> tuple[Rule | None, list[tuple[str, str]]]:
    """The rule of one entry, or (field, error) of everything wrong with it."""
    if not isinstance(entry, Mapping):
        return None, [("", "expected a mapping with name, expression and action")]
    out = [(str(k), f"unknown field (expected {', '.join(RULE_FIELDS)})") for k in entry]
    out = [p for p in out if p[0] not in RULE_FIELDS]
    name: Any = entry.get("name")
    expression: Any = entry.get("expression")
    action: Any = entry.get("action")
    priority: Any = entry.get("priority", 100)
    mode: Any = entry.get("mode", "active")
    rule_id = entry.get("id", rule_id_for(name) if isinstance(name, str) else "")
    if not isinstance(name, str) or not name.strip():
        out.append(("name", "required: a non-empty string"))
    if not isinstance(rule_id, str) or not rule_id:
        out.append(("id", f"{rule_id!r} is not a non-empty string"))
    if not isinstance(expression, str):
        out.append(("expression", "required: a string"))
    else:
        try:
            compile_expression(expression, known)
        except RuleError as e:
            out.append(("expression", e.message))
    if action not in ACTIONS:
        out.append(("action", f"{action!r} is not one of {', '.join(ACTIONS)}"))
    if type(priority) is not int:
        out.append(("priority", f"{priority!r} is not an integer"))
    if mode not in MODES:
        out.append(("mode", f"{mode!r} is not one of {', '.join(MODES)}"))
    if out:
        return None, out
    return Rule(rule_id, name, expression, action, priority, mode), []


def load_rules(path: Path) -> list[Rule]:
    """The rules of a YAML/JSON file; every bad entry is reported in one ``RuleError`` whose
    field names the first (``rules[2].action``)."""
    data = _read(path)
    if isinstance(data, Mapping) and "rules" in data:
        data = data["rules"]
    if not isinstance(data, list):
        raise RuleError(f"{Path(path).name}: expected a list of rules", field="rules")
    rules: list[Rule] = []
    problems: list[dict[str, str]] = []
    first: dict[str, int] = {}
    known = known_attributes()
    for i, entry in enumerate(data):
        rule, found = _rule(entry, known)
        if rule is not None and rule.id in first:
            found = [("id", f"duplicate id '{rule.id}' (also rules[{first[rule.id]}])")]
        elif rule is not None:
            first[rule.id] = i
            rules.append(rule)
        problems += [
            {"field": f"rules[{i}]" + (f".{f}" if f else ""), "error": e} for f, e in found
        ]
    if problems:
        message = "; ".join(f"{p['field']}: {p['error']}" for p in problems)
        raise RuleError(message, field=problems[0]["field"], items=problems)
    return rules


def _list_value(value: Any) -> str | None:
    """How a list value is written (as the rules look values up), None if not a scalar."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def load_lists(path: Path) -> dict[str, set[str]]:
    """``{list name: values}`` of a YAML/JSON file (numbers become their text)."""
    data = _read(path)
    if not isinstance(data, Mapping):
        raise ValidationError(
            "expected a mapping of list name to values", field="lists", code="invalid_list"
        )
    lists: dict[str, set[str]] = {}
    problems: list[dict[str, str]] = []
    for name, values in data.items():
        field = f"lists.{name}"
        texts = [_list_value(v) for v in values] if isinstance(values, list) else [None]
        if not isinstance(name, str) or not valid_list_name(name):
            problems.append({"field": field, "error": "a name is [A-Za-z_][A-Za-z0-9_.]*"})
        elif values is not None and None in texts:
            problems.append(
                {
                    "field": field,
                    "error": "expected a list of strings or numbers (quote yes/no/on/off)",
                }
            )
        else:
            lists[name] = {t for t in texts if t is not None} if values is not None else set()
    if problems:
        message = "; ".join(f"{p['field']}: {p['error']}" for p in problems)
        raise ValidationError(
            message, field=problems[0]["field"], items=problems, code="invalid_list"
        )
    return lists


# --- attributes ---------------------------------------------------------------------------------


def _text(raw: pd.DataFrame, column: str) -> list[Any]:
    """An optional raw column as text (``12.0`` read from a column with gaps is ``"12"``)."""
    if column not in raw.columns:
        return [None] * len(raw)
    s = raw[column]
    if pd.api.types.is_float_dtype(s.dtype):
        present = s.dropna()
        if bool((present == np.floor(present)).all()):
            s = s.astype("Int64")
    out = s.astype(str).to_numpy(dtype=object)
    out[s.isna().to_numpy() | (out == "")] = None
    return list(out)


def _numbers(values: npt.NDArray[Any]) -> list[Any]:
    return [None if v != v else v for v in values.tolist()]  # NaN: missing


def _request_column(
    name: str, raw: pd.DataFrame, tx: pd.DataFrame, ts: npt.NDArray[Any], amount: npt.NDArray[Any]
) -> list[Any]:
    if name == "amount":
        return list(amount.tolist())
    if name == "hour":  # as request_attributes computes it
        return list((ts % 86_400 // 3_600).astype(np.int64).tolist())
    if name == "currency":
        return [v.upper() if v else v for v in _text(raw, "currency")]
    if name == "email_domain":
        return [email_domain(e) for e in tx["email"].tolist()]
    if name == "item_count" and name in raw.columns:
        return _numbers(pd.to_numeric(raw[name], errors="coerce").to_numpy(dtype=np.float64))
    if name in _EVENT_COLUMNS:
        return list(tx[_EVENT_COLUMNS[name]].tolist())
    return _text(raw, name)


def rule_attributes(
    raw: pd.DataFrame, names: Iterable[str] | None = None
) -> tuple[dict[str, list[Any]], npt.NDArray[np.int8]]:
    """Columns (``attribute -> one value per row``, None = missing) of the rule attributes
    ``names`` (default: all but the model's) of every row of ``raw``, and the fraud labels."""
    wanted = set(known_attributes() - set(MODEL_ATTRIBUTES) if names is None else names)
    tx = transaction_events(raw)
    ts = tx["ts"].to_numpy(dtype=np.float64)
    amount = tx["amount"].to_numpy(dtype=np.float64) / 100
    columns = {
        name: _request_column(name, raw, tx, ts, amount)
        for name in sorted(wanted & set(REQUEST_ATTRIBUTES))
    }
    if wanted - set(columns):
        values = transaction_features(tx)
        store = {n: values[n].to_numpy(dtype=np.float64, na_value=0.0) for n in STORE_INPUTS}
        inputs = assemble(store, amount, ts)
        for j, name in enumerate(INPUTS):
            if name in wanted and name not in columns:
                column = store[name] if name in store else inputs[:, j].astype(np.float64)
                columns[name] = _numbers(column)
    return columns, tx["is_fraud"].to_numpy(dtype=np.int8)


# --- backtest -----------------------------------------------------------------------------------


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def backtest_rules(
    rules: Iterable[Rule],
    raw: pd.DataFrame,
    lists: Mapping[str, AbstractSet[str]] | None = None,
) -> dict[str, Any]:
    """Evaluate the rules on every transaction of ``raw``: per rule, every match (shadow rules
    too); per action, the transactions it decided (the first matching active rule)."""
    given = dict(lists or {})
    ruleset = RuleSet(rules, known_attributes(), set(given))
    columns, labels = rule_attributes(raw, ruleset.attributes)
    n, frauds = len(labels), int(labels.sum())
    at = {r.id: i for i, r in enumerate(ruleset.rules)}
    matches, matched_frauds = [0] * len(at), [0] * len(at)
    outcomes = {a: [0, 0] for a in (*ACTIONS, "none")}  # transactions, frauds
    names = list(columns)
    rows = zip(*columns.values(), strict=True) if names else iter([()] * n)
    for row, fraud in zip(rows, labels.tolist(), strict=True):
        verdict = ruleset.evaluate(dict(zip(names, row, strict=True)), given)
        for match in verdict.matched:
            matches[at[match.rule_id]] += 1
            matched_frauds[at[match.rule_id]] += fraud
        outcome = outcomes[verdict.action or "none"]
        outcome[0] += 1
        outcome[1] += fraud
    return {
        "transactions": n,
        "frauds": frauds,
        "rules": [
            {
                "id": r.id,
                "name": r.name,
                "action": r.action,
                "mode": r.mode,
                "matches": matches[i],
                "match_rate": _ratio(matches[i], n),
                "frauds_matched": matched_frauds[i],
                "precision": _ratio(matched_frauds[i], matches[i]),
                "recall": _ratio(matched_frauds[i], frauds),
            }
            for i, r in enumerate(ruleset.rules)
        ],
        "outcomes": {a: count for a, (count, _) in outcomes.items()},
        "decided": {
            a: {
                "transactions": count,
                "frauds": caught,
                "precision": _ratio(caught, count),
                "recall": _ratio(caught, frauds),
            }
            for a, (count, caught) in outcomes.items()
            if a != "none"
        },
    }
