"""Turn feature definitions into store operations: the one code path both backends execute.

A *plan* is a flat list of operations.  Read operations run first (so a decision sees the state
before its own event), then — unless the event id was seen before — the writes.  The Redis
backend ships the whole plan to one Lua script (one round trip); the in-memory backend runs the
same plan over dicts.  Key and field names are documented in ``features/KEYS.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from features.definitions import (
    DAY,
    Entity,
    FeatureEvent,
    FeatureValues,
    FeatureView,
    Kind,
    LabelEvent,
    Source,
    bucket,
    views_for,
)

PREFIX = "cw"
SEEN_TTL = 7 * DAY
VALUE_SCALE = {"amount": 0.01}  # stored integer units -> feature units


def view_key(view: FeatureView, entity_id: str) -> str:
    return f"{PREFIX}:v:{view.name}:{entity_id}"


def hll_key(view: FeatureView, agg: str, k: int, entity_id: str) -> str:
    return f"{PREFIX}:h:{view.name}:{agg}:{k}:{entity_id}"


def seen_key(event_id: str) -> str:
    return f"{PREFIX}:seen:{event_id}"


def stock_key(sku: str) -> str:
    return f"{PREFIX}:stock:{sku}"


STOCK_TOTAL_KEY = f"{PREFIX}:stock:available"


def prefix(name: str, size: int) -> str:
    return f"{name}@{size}"


# --- operations -------------------------------------------------------------------------------
# Reads:  ("S", key, prefix, k_from, k_to)   sum of integer fields prefix|k for k in range
#         ("C", key1, key2, ...)             PFCOUNT over the keys (0 when none)
#         ("L", key, name)                   last value and its timestamp (l|name, t|name)
#         ("G", key, field)                  one raw field
# Writes: ("I", key, field, delta)           HINCRBY
#         ("T", key, prefix, k, keep, kw)    advance prefix's horizon to k, drop fields older than
#                                            horizon-keep+1; skip the next I if kw is that old
#         ("H", key, member, ttl_s)          PFADD and EXPIRE
#         ("V", key, name, value, ts)        set last value if ts >= stored ts
#         ("M", key, field, value)           field = max(field, value)
#         ("E", key, ttl_s)                  EXPIRE
Op = tuple[str | int | float, ...]


@dataclass
class Plan:
    dedupe_key: str | None = None
    reads: list[Op] = field(default_factory=list)
    writes: list[Op] = field(default_factory=list)
    # one per read op: (feature name, how to decode, scale); "gate" rows carry (view, now, ttl)
    outputs: list[tuple[str, str, float]] = field(default_factory=list)
    gates: list[tuple[str, float, int]] = field(default_factory=list)


def _ttl(view: FeatureView) -> int:
    return view.ttl + DAY  # memory outlives the logical TTL a little; reads gate on event time


def plan_reads(plan: Plan, view: FeatureView, entity_id: str, now: float) -> None:
    key = view_key(view, entity_id)
    plan.reads.append(("G", key, "_w"))
    plan.outputs.append((view.name, "gate", 1.0))
    plan.gates.append((view.name, now, view.ttl))
    for agg in view.aggregations:
        if agg.kind is Kind.LAST:
            plan.reads.append(("L", key, agg.name))
            plan.outputs.append((f"{view.name}.{agg.name}", "last", 1.0))
            continue
        scale = VALUE_SCALE.get(agg.value or "", 1.0)
        for w in agg.windows:
            k = bucket(now, w.bucket)
            name = f"{view.name}.{agg.name}_{w.name}"
            if agg.kind is Kind.DISTINCT:
                keys = [hll_key(view, agg.name, b, entity_id) for b in range(k - w.n + 1, k + 1)]
                plan.reads.append(("C", *keys))
            else:
                plan.reads.append(("S", key, prefix(agg.name, w.bucket), k - w.n + 1, k))
            plan.outputs.append((name, "num", scale))
    if view.delayed:
        d = view.delayed
        k = bucket(now, DAY)
        for n in d.days:
            lo, hi = k - d.delay_days - n + 1, k - d.delay_days
            base = f"{view.name}.{d.name}_{n}d_delay{d.delay_days}d"
            plan.reads.append(("S", key, prefix("dn", DAY), lo, hi))
            plan.outputs.append((f"{base}_count", "num", 1.0))
            plan.reads.append(("S", key, prefix("df", DAY), lo, hi))
            plan.outputs.append((f"{base}_frauds", "num", 1.0))
    if view.labels_known:
        plan.reads.append(("G", key, "fk"))
        plan.outputs.append((f"{view.name}.frauds_known", "num", 1.0))


def plan_writes(plan: Plan, view: FeatureView, event: FeatureEvent, entity_id: str) -> None:
    key = view_key(view, entity_id)
    ts = event.ts
    for agg in view.aggregations:
        if not agg.applies(event.type):
            continue
        if agg.kind is Kind.LAST:
            value = event.attr(agg.value or "")
            if value is not None:
                plan.writes.append(("V", key, agg.name, value, ts))
            continue
        if agg.kind is Kind.DISTINCT:
            member = event.attr(agg.value or "")
            if member is None:
                continue
            for w in agg.windows:
                k = bucket(ts, w.bucket)
                ttl = int((k + 1) * w.bucket + w.seconds - ts) + 60
                plan.writes.append(("H", hll_key(view, agg.name, k, entity_id), member, ttl))
            continue
        delta = 1 if agg.kind is Kind.COUNT else event.values.get(agg.value or "", 0)
        for size, keep in _retention(agg.windows).items():
            k = bucket(ts, size)
            p = prefix(agg.name, size)
            plan.writes.append(("T", key, p, k, keep, k))
            if delta:
                plan.writes.append(("I", key, f"{p}|{k}", delta))
    if view.delayed:
        k = bucket(ts, DAY)
        plan.writes.append(("T", key, prefix("dn", DAY), k, view.delayed.span_days, k))
        plan.writes.append(("I", key, f"{prefix('dn', DAY)}|{k}", 1))
    plan.writes.append(("M", key, "_w", ts))
    plan.writes.append(("E", key, _ttl(view)))


def _retention(windows: Iterable[object]) -> dict[int, int]:
    keep: dict[int, int] = {}
    for w in windows:
        size, n = w.bucket, w.n  # type: ignore[attr-defined]
        keep[size] = max(keep.get(size, 0), n)
    return keep


def entity_views(source: Source, entities: dict[Entity, str]) -> list[tuple[FeatureView, str]]:
    return [(v, entities[v.entity]) for v in views_for(source) if entities.get(v.entity)]


def plan_event(event: FeatureEvent, *, read: bool, record: bool, dedupe: bool = True) -> Plan:
    plan = Plan(dedupe_key=seen_key(event.event_id) if record and dedupe else None)
    for view, entity_id in entity_views(event.source, event.entities):
        if read:
            plan_reads(plan, view, entity_id, event.ts)
        if record:
            plan_writes(plan, view, event, entity_id)
    return plan


def plan_read(views: Sequence[tuple[FeatureView, str]], now: float) -> Plan:
    plan = Plan()
    for view, entity_id in views:
        plan_reads(plan, view, entity_id, now)
    return plan


def plan_label(label: LabelEvent) -> Plan:
    """A fraud label: counted by transaction day on views with a delayed ratio, and in the
    per-entity known-fraud counters."""
    plan = Plan(dedupe_key=seen_key(f"label:{label.label_id}"))
    if not label.fraud:
        return plan
    for view, entity_id in entity_views(Source.TRANSACTION, label.entities):
        key = view_key(view, entity_id)
        touched = False
        if view.delayed:
            k_tx, k_now = bucket(label.tx_ts, DAY), bucket(label.reported_ts, DAY)
            if k_tx > k_now - view.delayed.span_days:
                span = view.delayed.span_days
                plan.writes.append(("T", key, prefix("df", DAY), k_now, span, k_tx))
                plan.writes.append(("I", key, f"{prefix('df', DAY)}|{k_tx}", 1))
                touched = True
        if view.labels_known:
            plan.writes.append(("I", key, "fk", 1))
            touched = True
        if touched:
            plan.writes.append(("E", key, _ttl(view)))
    return plan


def decode(plan: Plan, results: Sequence[object]) -> FeatureValues:
    """Read results -> feature values; a view whose last event is older than its TTL reads as
    all defaults (0, or None for last values)."""
    out: FeatureValues = {}
    gates = iter(plan.gates)
    now, stale = 0.0, False
    for (name, how, scale), raw in zip(plan.outputs, results, strict=True):
        if how == "gate":
            _view, now, ttl = next(gates)
            stale = raw is None or now - _num(raw) > ttl
        elif how == "last":
            pair: Sequence[object] = (None, None) if stale or not raw else raw  # type: ignore[assignment]
            value, ts = pair[0], pair[1]
            out[name] = value.decode() if isinstance(value, bytes) else _str(value)
            out[f"{name}_age_s"] = -1.0 if ts is None else max(0.0, now - _num(ts))
        else:
            out[name] = 0.0 if stale else _num(raw) * scale
    return out


def _str(raw: object) -> str | None:
    return None if raw is None else str(raw)


def _num(raw: object) -> float:
    if raw is None:
        return 0.0
    if isinstance(raw, bytes):
        raw = raw.decode()
    return float(raw)  # type: ignore[arg-type]
