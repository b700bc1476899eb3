"""Rules and lists: stored in SQL, edited through the admin API, evaluated from memory.

Every change bumps one version counter in the same transaction.  Each replica keeps a compiled
snapshot (``RuleSet`` + list contents) and checks the counter at most every ``poll_s`` seconds,
so an edit made through one replica reaches all of them within that time without a restart;
the replica that made the edit sees it at once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.commerce.domain import COUNTRIES, looks_like_pan
from engine.errors import AlreadyExists, Conflict, NotFound, ValidationError
from engine.fraud.attributes import known_attributes
from engine.fraud.decision import CardNumberRefused
from engine.fraud.rules import (
    ACTIONS,
    Rule,
    RuleSet,
    compile_expression,
    list_names,
    rule_id_for,
)
from engine.fraud.schema import (
    FraudConfigVersion,
    FraudList,
    FraudListItem,
    FraudRule,
)
from engine.reloading import Reloading

LIST_KINDS = ("card_fingerprint", "email", "ip", "device_id", "country", "customer_id", "bin")
MODES = ("active", "shadow")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_LIST_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_LIST_ITEMS_PER_CALL = 1000


class RuleNotFound(NotFound):
    code = "rule_not_found"


class ListNotFound(NotFound):
    code = "list_not_found"


@dataclass(frozen=True)
class Snapshot:
    version: int
    rules: RuleSet
    lists: Mapping[str, frozenset[str]]


def normalize(kind: str, value: str, field: str = "value") -> str:
    """A list value in its canonical form (emails lower-case, countries upper-case, IPs
    compressed), or a ``ValidationError`` naming ``field``."""
    value = value.strip()
    if not value or len(value) > 320:
        raise ValidationError("value must be 1 to 320 characters", field=field)
    if looks_like_pan(value):
        raise CardNumberRefused(
            "value looks like a full card number; list card fingerprints", field=field
        )
    if kind == "email":
        return value.lower()
    if kind == "country":
        code = value.upper()
        if code not in COUNTRIES:
            raise ValidationError(f"unknown country {value!r}", field=field, code="unknown_country")
        return code
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValidationError(f"{value!r} is not an IP address", field=field) from None
    return value


class FraudConfig:
    def __init__(self, db: Database, *, poll_s: float = 1.0) -> None:
        self.db = db
        self._snapshot = Reloading(db, _version, _load, poll_s=poll_s)

    # --- evaluation side -----------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return self._snapshot.get()

    @contextmanager
    def _edit(self) -> Iterator[Session]:
        """One change: its transaction also moves the version counter every replica polls;
        this replica reloads on its next decision."""
        with self.db.transaction() as s:
            yield s
            s.execute(
                update(FraudConfigVersion)
                .where(FraudConfigVersion.id == 1)
                .values(version=FraudConfigVersion.version + 1)
            )
        self._snapshot.invalidate()

    # --- rules ---------------------------------------------------------------------------------
    def rules(self) -> list[dict[str, Any]]:
        with self.db.transaction(readonly=True) as s:
            rows = s.scalars(select(FraudRule)).all()
            ordered = RuleSet([_rule(r) for r in rows]).rules
            by_id = {r.id: r for r in rows}
            return [_rule_dict(by_id[r.id]) for r in ordered]

    def rule(self, rule_id: str) -> dict[str, Any]:
        with self.db.transaction(readonly=True) as s:
            return _rule_dict(self._get_rule(s, rule_id))

    def create_rule(self, data: Mapping[str, Any]) -> dict[str, Any]:
        rule_id = data.get("id") or rule_id_for(str(data.get("name", "")))
        if not _SLUG.match(rule_id):
            raise ValidationError("id must be 1 to 64 of a-z, 0-9, - and _", field="id")
        with self._edit() as s:
            if s.get(FraudRule, rule_id) is not None:
                raise AlreadyExists(f"rule {rule_id!r} exists", field="id")
            row = FraudRule(id=rule_id)
            self._apply_rule(s, row, data, creating=True)
            s.add(row)
            s.flush()
            return _rule_dict(row)

    def update_rule(self, rule_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        with self._edit() as s:
            row = self._get_rule(s, rule_id)
            self._apply_rule(s, row, data, creating=False)
            s.flush()
            return _rule_dict(row)

    def delete_rule(self, rule_id: str) -> None:
        with self._edit() as s:
            s.delete(self._get_rule(s, rule_id))

    def _get_rule(self, s: Session, rule_id: str) -> FraudRule:
        row = s.get(FraudRule, rule_id)
        if row is None:
            raise RuleNotFound(f"no rule {rule_id!r}", field="rule_id")
        return row

    def _apply_rule(
        self, s: Session, row: FraudRule, data: Mapping[str, Any], *, creating: bool
    ) -> None:
        required = ("name", "expression", "action") if creating else ()
        for name in required:
            if not data.get(name):
                raise ValidationError(f"{name} is required", field=name)
        for name in ("name", "expression", "action", "priority", "mode"):
            if name in data and data[name] is None:  # a PATCH may only clear the description
                raise ValidationError(f"{name} cannot be null", field=name)
        if "action" in data and data["action"] not in ACTIONS:
            raise ValidationError(f"action must be one of {', '.join(ACTIONS)}", field="action")
        if "mode" in data and data["mode"] not in MODES:
            raise ValidationError(f"mode must be one of {', '.join(MODES)}", field="mode")
        if "expression" in data:
            known_lists = set(s.scalars(select(FraudList.name)))
            compile_expression(str(data["expression"]), known_attributes(), known_lists)
        for name in ("name", "expression", "action", "priority", "mode", "description"):
            if name in data:
                setattr(row, name, data[name])
        if creating:
            row.priority = row.priority if row.priority is not None else 100
            row.mode = row.mode or "active"

    # --- lists ---------------------------------------------------------------------------------
    def lists(self) -> list[dict[str, Any]]:
        with self.db.transaction(readonly=True) as s:
            counts = dict(
                s.execute(
                    select(FraudListItem.list_name, func.count()).group_by(FraudListItem.list_name)
                ).all()
            )
            rows = s.scalars(select(FraudList).order_by(FraudList.name)).all()
            return [_list_dict(r, counts.get(r.name, 0)) for r in rows]

    def create_list(self, name: str, kind: str, description: str | None = None) -> dict[str, Any]:
        if not _LIST_NAME.match(name):
            raise ValidationError("name must be 1 to 64 of a-z, 0-9 and _", field="name")
        if kind not in LIST_KINDS:
            raise ValidationError(f"kind must be one of {', '.join(LIST_KINDS)}", field="kind")
        with self._edit() as s:
            if s.get(FraudList, name) is not None:
                raise AlreadyExists(f"list {name!r} exists", field="name")
            row = FraudList(name=name, kind=kind, description=description)
            s.add(row)
            s.flush()
            return _list_dict(row, 0)

    def delete_list(self, name: str) -> None:
        with self._edit() as s:
            row = self._get_list(s, name)
            users = [r.id for r in s.scalars(select(FraudRule)) if name in list_names(r.expression)]
            if users:
                raise Conflict(
                    f"list {name!r} is used by rules {', '.join(users)}",
                    field="name",
                    code="list_in_use",
                )
            s.query(FraudListItem).filter(FraudListItem.list_name == name).delete()
            s.delete(row)

    def items(self, name: str, *, limit: int = 100, after: str | None = None) -> dict[str, Any]:
        with self.db.transaction(readonly=True) as s:
            row = self._get_list(s, name)
            q = select(FraudListItem).where(FraudListItem.list_name == name)
            if after is not None:
                q = q.where(FraudListItem.value > after)
            items = s.scalars(q.order_by(FraudListItem.value).limit(limit)).all()
            return {
                "list": row.name,
                "kind": row.kind,
                "items": [_item_dict(i) for i in items],
                "next_after": items[-1].value if len(items) == limit else None,
            }

    def add_items(self, name: str, values: list[tuple[str, str | None]]) -> dict[str, Any]:
        """Add (value, note) pairs; values already listed are left as they are."""
        if not values or len(values) > MAX_LIST_ITEMS_PER_CALL:
            raise ValidationError(f"send 1 to {MAX_LIST_ITEMS_PER_CALL} items", field="items")
        with self._edit() as s:
            row = self._get_list(s, name)
            clean = {
                normalize(row.kind, v, f"items[{i}].value"): note
                for i, (v, note) in enumerate(values)
            }
            existing = set(
                s.scalars(
                    select(FraudListItem.value).where(
                        FraudListItem.list_name == name, FraudListItem.value.in_(list(clean))
                    )
                )
            )
            added = [v for v in clean if v not in existing]
            s.add_all(FraudListItem(list_name=name, value=v, note=clean[v]) for v in added)
            return {"list": name, "added": len(added), "already_listed": len(existing)}

    def remove_item(self, name: str, value: str) -> None:
        with self._edit() as s:
            row = self._get_list(s, name)
            item = s.get(FraudListItem, (name, normalize(row.kind, value)))
            if item is None:
                raise NotFound(f"{value!r} is not in list {name!r}", field="value")
            s.delete(item)

    def _get_list(self, s: Session, name: str) -> FraudList:
        row = s.get(FraudList, name)
        if row is None:
            raise ListNotFound(f"no list {name!r}", field="name")
        return row


def _version(s: Session) -> int:
    return int(s.scalar(select(FraudConfigVersion.version).where(FraudConfigVersion.id == 1)) or 0)


def _load(s: Session, version: int) -> Snapshot:
    lists: dict[str, set[str]] = {name: set() for name in s.scalars(select(FraudList.name))}
    for name, value in s.execute(select(FraudListItem.list_name, FraudListItem.value)):
        lists[name].add(value)
    rules = [_rule(r) for r in s.scalars(select(FraudRule))]
    ruleset = RuleSet(rules, known_attributes(), lists.keys())
    return Snapshot(version, ruleset, {k: frozenset(v) for k, v in lists.items()})


def _rule(r: FraudRule) -> Rule:
    return Rule(r.id, r.name, r.expression, r.action, r.priority, r.mode)  # type: ignore[arg-type]


def _rule_dict(r: FraudRule) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "expression": r.expression,
        "action": r.action,
        "priority": r.priority,
        "mode": r.mode,
        "description": r.description,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }


def _list_dict(r: FraudList, count: int) -> dict[str, Any]:
    return {"name": r.name, "kind": r.kind, "description": r.description, "items": count}


def _item_dict(i: FraudListItem) -> dict[str, Any]:
    return {"value": i.value, "note": i.note, "created_at": i.created_at}
