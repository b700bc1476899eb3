"""Batch ingestion: a batch's writes pre-aggregated per key (see ``features/KEYS.md``).

``plan_batch`` turns the *new* events of a batch (the caller has already claimed their event ids
with ``SET NX``) into operations of ``features/lua/batch.lua``, one per key however many events
hit it: a category viewed 30 times in the batch is one hash update carrying, per counter, the
(bucket, delta) pairs of those views.  The operations leave Redis exactly as the per-event
function calls of ``features/plan.py`` would, applied in the batch's order:

- a counter applies an event only if its bucket is within retention of the newest bucket
  written *before* it (``k > newest - keep``).  The batch's own part of that test is done here
  (``k`` against the largest bucket of the earlier events of the batch), the stored part (the
  counter's ``last``) by the function, which then adds the surviving deltas per bucket;
- a maximum per bucket keeps the largest value, under the same retention test;
- a last value comes from the newest event (the latest of equal times), ``_w`` is the newest
  time;
- an exact distinct count (sorted set) is replayed member by member in order; a member seen
  again is folded into its first entry only when no event in between can have dropped it
  (``newest time so far - keep <= its first time``), so the sorted set ends the same;
- HyperLogLogs take every member at once and the expiry of the last event; recent items keep the
  newest time per member (one ``ZADD GT`` then one trim keeps the same newest 50); trending adds
  the weights per SKU and keeps the expiry of the last event.

A view's hash operation names its *schema* (the view's fields in a fixed order, generated into
the Lua library by ``lua_schemas``) and then gives, field by field, only the values.  Several
events (schema ``"{i}"``) / one event (``"{i}s"``, most keys of a batch):

    count:              m (k d)*m   /  k            m = 0 / "": the field is not written
    sum, maximum:       m (k d)*m   /  k d
    last value:         value ts or ""
    newest time (_w):   ts
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from features.definitions import DAY, VIEWS, Entity, FeatureEvent, FeatureView, Source, views_for
from features.plan import (
    MARKER_TTL,
    PREFIX,
    RECENT_KEEP,
    RECENT_TTL,
    SHOPPER_WEIGHTS,
    TREND_ALL,
    TREND_TTL,
    Op,
    compiled,
    memory_ttl,
    prefix,
    recent_key,
    trend_key,
)

MAX_MEMBERS = 256  # members per sorted-set / HyperLogLog operation (Lua's unpack stays small)

COUNT, SUM, MAX, LAST, NEWEST = range(5)  # field codes of a schema
_LUA_KIND = {COUNT: "C", SUM: "A", MAX: "X", LAST: "V", NEWEST: "M"}
_Attr = tuple[str, Entity | None]  # attribute name, entity of the same name (FeatureEvent.attr)
# (code, hash field, bucket size, keep, value name, when, attribute of a last value)
_Field = tuple[int, str, int, int, str, frozenset[str] | None, _Attr]


@dataclass(frozen=True, slots=True)
class _Writer:
    """One view's write recipe, compiled once."""

    view: FeatureView
    sid: str  # schema id in the Lua library (merged events)
    single: str  # schema id of one event's operation
    entity: Entity
    key_prefix: str  # "cw:v:{view}:"
    ttl: int
    fields: tuple[_Field, ...]
    exact: tuple[tuple[str, _Attr, int], ...]  # (sorted-set key prefix, member, keep seconds)
    approx: tuple[tuple[str, _Attr, int, int], ...]  # (agg, member, bucket, window seconds)


def _attr(name: str) -> _Attr:
    return name, Entity(name) if name in Entity._value2member_map_ else None


_NO_ATTR: _Attr = ("", None)


def _writer(view: FeatureView, sid: str) -> _Writer:
    c = compiled(view)
    fields: list[_Field] = [
        (LAST, name, 0, 0, "", when, _attr(value)) for name, value, when in c.lasts
    ]
    for value, when, p, size, keep, op in c.counter_writes:
        code = MAX if op == "X" else COUNT if value is None else SUM
        fields.append((code, p, size, keep, value or "", when, _NO_ATTR))
    if view.delayed:
        fields.append((COUNT, prefix("dn", DAY), DAY, view.delayed.span_days, "", None, _NO_ATTR))
    fields.append((NEWEST, "_w", 0, 0, "", None, _NO_ATTR))
    exact: dict[str, tuple[str, _Attr, int]] = {}
    approx: list[tuple[str, _Attr, int, int]] = []
    for agg, value, w, is_approx in c.distinct:
        if is_approx:
            approx.append((agg, _attr(value), w.bucket, w.seconds))
        elif agg not in exact:
            zset = f"{PREFIX}:z:{view.name}:{agg}:"
            exact[agg] = (zset, _attr(value), c.distinct_keep[agg])
    return _Writer(
        view,
        sid,
        sid + "s",
        view.entity,
        f"{PREFIX}:v:{view.name}:",
        memory_ttl(view),
        tuple(fields),
        tuple(exact.values()),
        tuple(approx),
    )


_WRITERS: dict[str, _Writer] = {v.name: _writer(v, str(i)) for i, v in enumerate(VIEWS, 1)}
_BY_SOURCE = {s: tuple(_WRITERS[v.name] for v in views_for(s)) for s in Source}
_INTERACTION = Source.INTERACTION
_SHOPPERS = tuple((e, recent_key(e, "")) for e in (Entity.CUSTOMER, Entity.SESSION))
_CATEGORY = Entity.CATEGORY
_SKU: _Attr = ("sku", Entity.SKU)


def lua_schemas() -> str:
    """Lua source of the schemas (SCHEMAS[sid] = {ttl, kinds, hash fields, keeps, single,
    value fields of last values}, for merged and for one-event operations) and the shopper
    constants, loaded ahead of ``features/lua/batch.lua``."""
    lines = ["local SCHEMAS = {}"]
    for w in _WRITERS.values():
        kinds = [_LUA_KIND[f[0]] for f in w.fields]
        names = [f"t|{f[1]}" if f[0] == LAST else f[1] for f in w.fields]
        keeps = [f[3] for f in w.fields]
        values = [f"l|{f[1]}" if f[0] == LAST else "" for f in w.fields]
        schema = [
            json.dumps(str(w.ttl)),
            f"{{{', '.join(map(json.dumps, kinds))}}}",
            f"{{{', '.join(map(json.dumps, names))}}}",
            f"{{{', '.join(map(str, keeps))}}}",
        ]
        lasts = f"{{{', '.join(map(json.dumps, values))}}}"
        for sid, single in ((w.sid, "false"), (w.single, "true")):
            lines.append(
                f"SCHEMAS[{json.dumps(sid)}] = {{{', '.join(schema)}, {single}, {lasts}}}"
                f"  -- {w.view.name}"
            )
    lines.append(f"local RECENT_KEEP, RECENT_TTL = {RECENT_KEEP}, {json.dumps(str(RECENT_TTL))}")
    lines.append(f"local MARKER_TTL = {json.dumps(str(MARKER_TTL))}")
    return "\n".join(lines) + "\n"


def _get(event: FeatureEvent, attr: _Attr) -> str | None:
    """``FeatureEvent.attr`` without building an ``Entity`` per call."""
    name, entity = attr
    attrs = event.attrs
    if name in attrs:
        return attrs[name] or None
    return (event.entities.get(entity) or None) if entity is not None else None


def _stamp(ts: float) -> str:
    """A time as the per-event path sends it (hiredis: ``repr`` of a float)."""
    return repr(ts) if type(ts) is float else str(ts)


def plan_batch(events: Sequence[FeatureEvent]) -> list[Op]:
    """The write operations of ``events`` (every one new, in the order they apply)."""
    stamps = [_stamp(e.ts) for e in events]
    groups: dict[str, tuple[_Writer, str, list[int]]] = {}
    recent: dict[str, dict[str, int]] = {}
    trend: dict[str, tuple[dict[str, int], list[int]]] = {}
    for i, e in enumerate(events):
        entities = e.entities
        for w in _BY_SOURCE[e.source]:
            entity_id = entities.get(w.entity)
            if entity_id:
                key = w.key_prefix + entity_id
                g = groups.get(key)
                if g is None:
                    groups[key] = (w, entity_id, [i])
                else:
                    g[2].append(i)
        if e.source is _INTERACTION:
            _shopper(events, i, recent, trend)
    ops: list[Op] = []
    for key, (w, entity_id, at) in groups.items():
        if len(at) == 1:
            e, stamp = events[at[0]], stamps[at[0]]
            ops.append(_hash_one(w, key, e, stamp))
            for zset, attr, keep in w.exact:
                member = _get(e, attr)
                if member is not None:
                    cutoff = f"({e.ts - keep!r}"
                    ops.append(("Y", zset + entity_id, w.ttl, 1, member, stamp, cutoff))
            evs = [e]
        else:
            evs = [events[i] for i in at]
            ops.append(_hash_many(w, key, evs))
            for zset, attr, keep in w.exact:
                _zset_ops(ops, zset + entity_id, w.ttl, attr, keep, evs)
        for agg, attr, size, seconds in w.approx:
            _hll_ops(ops, w.view.name, agg, entity_id, attr, size, seconds, evs)
    for key, latest in recent.items():
        pairs = [x for member, i in latest.items() for x in (stamps[i], member)]
        for j in range(0, len(pairs), 2 * MAX_MEMBERS):
            part = pairs[j : j + 2 * MAX_MEMBERS]
            ops.append(("R", key, len(part) // 2, *part))
    for key, (weights, ttl) in trend.items():
        incrs = [x for sku, incr in weights.items() for x in (incr, sku)]
        ops.append(("Z", key, ttl[0], len(weights), *incrs))
    return ops


def _hash_one(w: _Writer, key: str, e: FeatureEvent, ts: str) -> Op:
    """One event's hash operation (``ts``: its time as sent)."""
    out: list[str | int | float] = [w.single, key]
    t, kind, values = e.ts, e.type, e.values
    for code, _field, size, _keep, value, when, attr in w.fields:
        if when is not None and kind not in when:
            out.append("")
        elif code == COUNT:
            out.append(int(t // size))
        elif code in (SUM, MAX):
            out += (int(t // size), values.get(value, 0))
        elif code == LAST:
            v = _get(e, attr)
            if v is None:
                out.append("")
            else:
                out += (v, ts)
        else:
            out.append(ts)
    return tuple(out)


def _hash_many(w: _Writer, key: str, evs: list[FeatureEvent]) -> Op:
    out: list[str | int | float] = [w.sid, key]
    for code, _field, size, keep, value, when, attr in w.fields:
        if code == LAST:
            best: str | None = None
            best_ts = 0.0
            for e in evs:
                if when is None or e.type in when:
                    v = _get(e, attr)
                    if v is not None and (best is None or e.ts >= best_ts):
                        best, best_ts = v, e.ts
            if best is None:
                out.append("")
            else:
                out += (best, best_ts)
        elif code == NEWEST:
            out.append(max(e.ts for e in evs))
        else:
            pairs = _buckets(evs, size, keep, code, value, when)
            out.append(len(pairs))
            for k in sorted(pairs):
                out += (k, pairs[k])
    return tuple(out)


def _buckets(
    evs: list[FeatureEvent],
    size: int,
    keep: int,
    code: int,
    value: str,
    when: frozenset[str] | None,
) -> dict[int, int]:
    """bucket -> summed (counts, sums) or largest value (maxima) of the events a counter
    applies, dropping an event whose bucket is out of retention of an earlier event's."""
    out: dict[int, int] = {}
    top: int | None = None
    for e in evs:
        if when is not None and e.type not in when:
            continue
        k = int(e.ts // size)
        if top is None or k > top:
            top = k
        elif k <= top - keep:
            continue
        d = 1 if code == COUNT else e.values.get(value, 0)
        old = out.get(k)
        if old is None:
            out[k] = d
        elif code != MAX:
            out[k] = old + d
        elif d > old:
            out[k] = d
    return out


def _zset_ops(
    ops: list[Op], key: str, ttl: int, attr: _Attr, keep: int, evs: list[FeatureEvent]
) -> None:
    """Exact distinct members in order, one entry per member unless it may have been dropped
    in between: (member, newest time, cutoff from its first time)."""
    members: list[str] = []
    newest: list[float] = []
    first: list[float] = []
    at: dict[str, int] = {}
    hi = -math.inf  # the newest time so far
    for e in evs:
        member = _get(e, attr)
        if member is None:
            continue
        ts = e.ts
        j = at.get(member)
        if j is not None and hi - keep <= first[j]:
            if ts > newest[j]:
                newest[j] = ts
        else:
            at[member] = len(members)
            members.append(member)
            newest.append(ts)
            first.append(ts)
        if ts > hi:
            hi = ts
    args: list[str | int | float] = []
    for member, ts, ts0 in zip(members, newest, first, strict=True):
        args += (member, ts, f"({ts0 - keep!r}")
    for i in range(0, len(args), 3 * MAX_MEMBERS):
        part = args[i : i + 3 * MAX_MEMBERS]
        ops.append(("Y", key, ttl, len(part) // 3, *part))


def _hll_ops(
    ops: list[Op],
    view: str,
    agg: str,
    entity_id: str,
    attr: _Attr,
    size: int,
    seconds: int,
    evs: list[FeatureEvent],
) -> None:
    """HyperLogLog members per bucket key; the expiry is the last event's."""
    keys: dict[int, tuple[dict[str, None], list[int]]] = {}
    for e in evs:
        member = _get(e, attr)
        if member is None:
            continue
        k = int(e.ts // size)
        expiry = int((k + 1) * size + seconds - e.ts) + 60
        got = keys.get(k)
        if got is None:
            keys[k] = ({member: None}, [expiry])
        else:
            got[0][member] = None
            got[1][0] = expiry
    for k, (members, last) in keys.items():
        key = f"{PREFIX}:h:{view}:{agg}:{k}:{entity_id}"
        names = list(members)
        for i in range(0, len(names), MAX_MEMBERS):
            part = names[i : i + MAX_MEMBERS]
            ops.append(("H", key, last[0], len(part), *part))


@functools.lru_cache(maxsize=4096)
def _trend_key(scope: str, day: int) -> str:
    """``trend_key``, built once per category and day rather than per event."""
    return trend_key(scope, day)


def _shopper(
    events: Sequence[FeatureEvent],
    i: int,
    recent: dict[str, dict[str, int]],
    trend: dict[str, tuple[dict[str, int], list[int]]],
) -> None:
    """Recent items (the newest event per member) and trending weights (summed per SKU)."""
    e = events[i]
    weight = SHOPPER_WEIGHTS.get(e.type)
    if weight is None:
        return
    sku = _get(e, _SKU)
    if sku is None:
        return
    member = f"{e.type}|{sku}"
    ts = e.ts
    for entity, key_prefix in _SHOPPERS:
        entity_id = e.entities.get(entity)
        if entity_id:
            latest = recent.setdefault(key_prefix + entity_id, {})
            j = latest.get(member)
            if j is None or ts > events[j].ts:
                latest[member] = i
    day = int(ts // DAY)
    incr = weight * max(1, e.values.get("qty", 1))
    ttl = int((day + 1) * DAY - ts) + TREND_TTL
    category = e.entities.get(_CATEGORY)
    for scope in (TREND_ALL, category) if category else (TREND_ALL,):
        key = _trend_key(scope, day)
        got = trend.get(key)
        if got is None:
            trend[key] = ({sku: incr}, [ttl])
        else:
            got[0][sku] = got[0].get(sku, 0) + incr
            got[1][0] = ttl
