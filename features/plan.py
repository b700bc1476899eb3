"""Turn feature definitions into store operations: the one code path both backends execute.

A *plan* holds, for one event or read time, the read commands (plain ``HMGET``/``ZCOUNT``/
``PFCOUNT``), how each feature is computed from their replies, and the write operations that a
small Redis function applies — unless the event id was applied before.  The Redis backend sends
a decision's reads in one request and the write call right behind them on the same connection,
unanswered, so a decision sees the state before its own event and waits for one round trip
(``features/KEYS.md``); batches go through ``features/pipeline.py``.  The in-memory backend
executes the same plan over dicts.  Key and
field names are documented in ``features/KEYS.md``.

Counters are prefix sums per bucket size, one hash field each: ``"total;last;w:s,w:s,…"`` —
the running total, the last written bucket, and the total ``s`` before each bucket ``w`` written
within retention.  A window ``lo..hi`` is then ``before(hi + 1) - before(lo)``, where
``before(j)`` is the ``s`` of the first written bucket ``>= j`` (or the running total): one field
per counter is read however many buckets a window spans, and writes never walk empty buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    Window,
    views_for,
)

PREFIX = "cw"
SEEN_TTL = 7 * DAY
# a batch call's "applied" marker outlives an outage the backlog rides out (features/pipeline.py)
MARKER_TTL = SEEN_TTL
VALUE_SCALE = {"amount": 0.01}  # stored integer units -> feature units


def view_key(view: FeatureView, entity_id: str) -> str:
    return f"{PREFIX}:v:{view.name}:{entity_id}"


def zset_key(view: FeatureView, agg: str, entity_id: str) -> str:
    return f"{PREFIX}:z:{view.name}:{agg}:{entity_id}"


def hll_key(view: FeatureView, agg: str, k: int, entity_id: str) -> str:
    return f"{PREFIX}:h:{view.name}:{agg}:{k}:{entity_id}"


def seen_key(event_id: str) -> str:
    return f"{PREFIX}:seen:{event_id}"


def stock_key(sku: str) -> str:
    return f"{PREFIX}:stock:{sku}"


STOCK_TOTAL_KEY = f"{PREFIX}:stock:available"
STOCK_OUT_KEY = f"{PREFIX}:stock:out"


def recent_key(entity: Entity, entity_id: str) -> str:
    return f"{PREFIX}:recent:{entity.value}:{entity_id}"


def trend_key(scope: str, day: int) -> str:
    return f"{PREFIX}:trend:{scope}:{day}"


# --- shopper state (recommendations; not model features, so no offline twin) -----------------
# What a shopper touched lately, per customer and per session: members "type|sku" scored by
# event time, newest RECENT_KEEP kept.  Trending: per day, per category and for the whole
# store ("*"), a sorted set sku -> weighted interactions.
RECENT_KEEP = 50
RECENT_TTL = 30 * DAY
TREND_TTL = 3 * DAY
TREND_ALL = "*"
SHOPPER_WEIGHTS = {"view": 1, "add_to_cart": 3, "purchase": 5, "order_line": 5}


def prefix(name: str, size: int) -> str:
    return f"{name}@{size}"


# --- operations -------------------------------------------------------------------------------
# Reads (plain commands):  ("HMGET", key, field...) | ("ZCOUNT", key, min) | ("PFCOUNT", key...)
# Writes (features/lua/plan.lua):
#   ("W", key, ttl_s, n, item...)   n items on one hash: one HMGET, one HSET, HINCRBYs, EXPIRE
#       "A", prefix, k, delta, keep   add delta to the counter in bucket k; keep `keep` buckets
#       "X", prefix, k, value, keep   raise bucket k's maximum to value; keep `keep` buckets
#       "V", name, value, ts          last value, if ts >= the stored one
#       "M", field, value             field = max(field, value)
#       "I", field, delta             HINCRBY
#   ("Y", key, member, ts, cutoff, ttl_s)  sorted set: member last seen at ts; when it is new,
#                                          drop members scored below `cutoff` ("(" + number)
#   ("H", key, member, ttl_s)       PFADD and EXPIRE
#   ("R", key, member, ts, keep, ttl_s)   sorted set of recent items: ZADD GT, keep the newest
#                                         `keep` members, EXPIRE
#   ("Z", key, member, incr, ttl_s)  ZINCRBY and EXPIRE (trending counts)
Op = tuple[str | int | float, ...]
ITEM_ARGS = {"A": 4, "X": 4, "V": 3, "M": 2, "I": 2}


# How one feature comes out of the read replies: (name, how, scale, read index, extra).
# how: "gate" (a view's TTL check; extra = (now, ttl)), "window" (extra = (t, L, x field names,
# lo, hi)), "last" (extra = (value field, time field, now)), "field" (extra = (field,)) or
# "count" (the whole reply).  Hash reads are HGETALL, decoded once into a dict.
Output = tuple[str, str, float, int, tuple[object, ...]]


@dataclass
class Plan:
    dedupe_key: str | None = None
    reads: list[Op] = field(default_factory=list)
    writes: list[Op] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Counter:
    name: str  # feature name "view.agg_window"
    prefix: str
    window: Window
    scale: float
    how: str = "window"  # "window": a sum over the buckets; "max": their largest value


@dataclass(frozen=True, slots=True)
class _Compiled:
    """Per view, everything the planner needs, computed once."""

    counters: tuple[_Counter, ...]
    # (value attr or None for counts, when, prefix, bucket, keep, op) per counter prefix
    counter_writes: tuple[tuple[str | None, frozenset[str] | None, str, int, int, str], ...]
    distinct: tuple[tuple[str, str, Window, bool], ...]  # (agg, value attr, window, approx)
    distinct_keep: dict[str, int]
    lasts: tuple[tuple[str, str, frozenset[str] | None], ...]
    template: tuple[Output, ...]  # the view's hash outputs, lo/hi/now filled in per read


_COMPILED: dict[str, _Compiled] = {}


def compiled(view: FeatureView) -> _Compiled:
    c = _COMPILED.get(view.name)
    if c is None:
        c = _COMPILED[view.name] = _compile_view(view)
    return c


def _compile_view(view: FeatureView) -> _Compiled:
    counters: list[_Counter] = []
    writes: list[tuple[str | None, frozenset[str] | None, str, int, int, str]] = []
    distinct: list[tuple[str, str, Window, bool]] = []
    lasts: list[tuple[str, str, frozenset[str] | None]] = []
    keep_d: dict[str, int] = {}
    for agg in view.aggregations:
        if agg.kind is Kind.LAST:
            lasts.append((agg.name, agg.value or "", agg.when))
        elif agg.kind is Kind.DISTINCT:
            for w in agg.windows:
                distinct.append((agg.name, agg.value or "", w, agg.approx))
                keep_d[agg.name] = max(keep_d.get(agg.name, 0), w.seconds + w.bucket)
        else:
            scale = VALUE_SCALE.get(agg.value or "", 1.0)
            how, op = ("max", "X") if agg.kind is Kind.MAX else ("window", "A")
            keep: dict[int, int] = {}
            for w in agg.windows:
                counters.append(
                    _Counter(
                        f"{view.name}.{agg.name}_{w.name}",
                        prefix(agg.name, w.bucket),
                        w,
                        scale,
                        how,
                    )
                )
                keep[w.bucket] = max(keep.get(w.bucket, 0), w.n)
            value = None if agg.kind is Kind.COUNT else agg.value
            writes += [
                (value, agg.when, prefix(agg.name, size), size, n, op) for size, n in keep.items()
            ]
    template: list[Output] = [(view.name, "gate", 1.0, 0, ())]
    template += [
        (f"{view.name}.{name}", "last", 1.0, 0, (f"l|{name}".encode(), f"t|{name}".encode()))
        for name, _v, _w in lasts
    ]
    template += [
        (c.name, c.how, c.scale, 0, (c.prefix.encode(), c.window.bucket, c.window.n, 0))
        for c in counters
    ]
    if view.delayed:
        d = view.delayed
        for n in d.days:
            base = f"{view.name}.{d.name}_{n}d_delay{d.delay_days}d"
            for suffix, p in (("count", prefix("dn", DAY)), ("frauds", prefix("df", DAY))):
                template.append(
                    (f"{base}_{suffix}", "window", 1.0, 0, (p.encode(), DAY, n, d.delay_days))
                )
    if view.labels_known:
        template.append((f"{view.name}.frauds_known", "field", 1.0, 0, (b"fk",)))
    return _Compiled(
        tuple(counters), tuple(writes), tuple(distinct), keep_d, tuple(lasts), tuple(template)
    )


def memory_ttl(view: FeatureView) -> int:
    return view.ttl + DAY  # memory outlives the logical TTL a little; reads gate on event time


def plan_reads(plan: Plan, view: FeatureView, entity_id: str, now: float) -> None:
    c = compiled(view)
    r = len(plan.reads)
    plan.reads.append(("HGETALL", view_key(view, entity_id)))
    out = plan.outputs
    for name, how, scale, _r, extra in c.template:
        if how in ("window", "max"):
            field_name, size, n, delay = extra
            k = int(now // size) - delay  # type: ignore[operator]
            out.append((name, how, scale, r, (field_name, k - n + 1, k)))  # type: ignore[operator]
        elif how == "gate":
            out.append((name, how, scale, r, (now, view.ttl)))
        elif how == "last":
            out.append((name, how, scale, r, (*extra, now)))
        else:
            out.append((name, how, scale, r, extra))
    for agg, _value, w, approx in c.distinct:
        k = int(now // w.bucket)
        if approx:
            keys = [hll_key(view, agg, b, entity_id) for b in range(k - w.n + 1, k + 1)]
            plan.reads.append(("PFCOUNT", *keys))
        else:
            plan.reads.append(
                ("ZCOUNT", zset_key(view, agg, entity_id), (k - w.n + 1) * w.bucket, "+inf")
            )
        out.append((f"{view.name}.{agg}_{w.name}", "count", 1.0, len(plan.reads) - 1, ()))


def plan_writes(plan: Plan, view: FeatureView, event: FeatureEvent, entity_id: str) -> None:
    c = compiled(view)
    ts, kind = event.ts, event.type
    items: list[str | int | float] = []
    for name, value, when in c.lasts:
        if when is None or kind in when:
            v = event.attr(value)
            if v is not None:
                items += ("V", name, v, ts)
    for counted, when, p, size, keep, op in c.counter_writes:
        if when is None or kind in when:
            delta = 1 if counted is None else event.values.get(counted, 0)
            items += (op, p, int(ts // size), delta, keep)
    if view.delayed:
        items += ("A", prefix("dn", DAY), int(ts // DAY), 1, view.delayed.span_days)
    items += ("M", "_w", ts)
    plan.writes.append(
        ("W", view_key(view, entity_id), memory_ttl(view), count_items(items), *items)
    )
    done: set[str] = set()
    for agg, value, w, approx in c.distinct:
        member = event.attr(value)
        if member is None:
            continue
        if approx:
            k = int(ts // w.bucket)
            ttl = int((k + 1) * w.bucket + w.seconds - ts) + 60
            plan.writes.append(("H", hll_key(view, agg, k, entity_id), member, ttl))
        elif agg not in done:
            done.add(agg)
            cutoff = f"({ts - c.distinct_keep[agg]!r}"
            plan.writes.append(
                ("Y", zset_key(view, agg, entity_id), member, ts, cutoff, memory_ttl(view))
            )


def count_items(items: Sequence[str | int | float]) -> int:
    n = i = 0
    while i < len(items):
        i += 1 + ITEM_ARGS[str(items[i])]
        n += 1
    return n


def entity_views(source: Source, entities: dict[Entity, str]) -> list[tuple[FeatureView, str]]:
    return [(v, entities[v.entity]) for v in views_for(source) if entities.get(v.entity)]


def plan_event(event: FeatureEvent, *, read: bool, record: bool, dedupe: bool = True) -> Plan:
    plan = Plan(dedupe_key=seen_key(event.event_id) if record and dedupe else None)
    for view, entity_id in entity_views(event.source, event.entities):
        if read:
            plan_reads(plan, view, entity_id, event.ts)
        if record:
            plan_writes(plan, view, event, entity_id)
    if record and event.source is Source.INTERACTION:
        plan_shopper_writes(plan, event)
    return plan


def plan_shopper_writes(plan: Plan, event: FeatureEvent) -> None:
    """Recent items of the customer and the session, and the day's trending counts."""
    sku = event.attr("sku")
    weight = SHOPPER_WEIGHTS.get(event.type)
    if sku is None or weight is None:
        return
    member = f"{event.type}|{sku}"
    for entity in (Entity.CUSTOMER, Entity.SESSION):
        entity_id = event.entities.get(entity)
        if entity_id:
            key = recent_key(entity, entity_id)
            plan.writes.append(("R", key, member, event.ts, RECENT_KEEP, RECENT_TTL))
    day = int(event.ts // DAY)
    incr = weight * max(1, event.values.get("qty", 1))
    scopes = [TREND_ALL] + [c for c in [event.entities.get(Entity.CATEGORY)] if c]
    for scope in scopes:
        ttl = int((day + 1) * DAY - event.ts) + TREND_TTL
        plan.writes.append(("Z", trend_key(scope, day), sku, incr, ttl))


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
        items: list[str | int | float] = []
        if view.delayed:
            k_tx, k_now = int(label.tx_ts // DAY), int(label.reported_ts // DAY)
            span = view.delayed.span_days
            if k_tx > k_now - span:
                items += ("A", prefix("df", DAY), k_tx, 1, span)
        if view.labels_known:
            items += ("I", "fk", 1)
        if items:
            plan.writes.append(
                ("W", view_key(view, entity_id), memory_ttl(view), count_items(items), *items)
            )
    return plan


# --- decoding ---------------------------------------------------------------------------------
def before(x: bytes | None, total: int, j: int) -> int:
    """Counter total before bucket j: the snapshot of the first written bucket >= j."""
    if x:
        for part in x.split(b","):
            w, _, s = part.partition(b":")
            if int(w) >= j:
                return int(s)
    return total


def window_sum(h: dict[bytes, bytes], field_name: bytes, lo: int, hi: int) -> int:
    """Sum of a counter over buckets lo..hi from its field ``total;last;w:s,w:s,…``."""
    value = h.get(field_name)
    if value is None or hi < lo:
        return 0
    t, last, x = value.split(b";", 2)
    total = int(t)
    upper = total if hi + 1 > int(last) else before(x, total, hi + 1)
    return upper - before(x, total, lo)


def window_max(h: dict[bytes, bytes], field_name: bytes, lo: int, hi: int) -> int:
    """Largest value over buckets lo..hi from the field ``w:m,w:m,…`` (0 when none)."""
    value = h.get(field_name)
    best = 0
    if value:
        for part in value.split(b","):
            w, _, m = part.partition(b":")
            if lo <= int(w) <= hi:
                best = max(best, int(m))
    return best


def decode(plan: Plan, results: Sequence[object]) -> FeatureValues:
    """Read replies -> feature values; a view whose last event is older than its TTL reads as
    all defaults (0, or None for last values and -1 for their age).  ``results`` of None
    (store unreachable) give every default."""
    out: FeatureValues = {}
    stale = False
    hashes: dict[int, dict[bytes, bytes]] = {}
    for name, how, scale, read, extra in plan.outputs:
        reply = results[read]
        if how == "count":
            out[name] = 0.0 if stale or reply is None else float(reply) * scale  # type: ignore[arg-type]
            continue
        h = hashes.get(read)
        if h is None:
            h = hashes[read] = as_dict(reply)
        if how == "gate":
            w = h.get(b"_w")
            stale = w is None or float(extra[0]) - float(w) > float(extra[1])  # type: ignore[arg-type]
        elif how == "last":
            value = ts = None
            if not stale:
                value, ts = h.get(extra[0]), h.get(extra[1])  # type: ignore[call-overload]
            out[name] = value.decode() if value is not None else None
            out[f"{name}_age_s"] = -1.0 if ts is None else max(0.0, float(extra[2]) - float(ts))  # type: ignore[arg-type]
        elif stale:
            out[name] = 0.0
        elif how == "window":
            out[name] = window_sum(h, *extra) * scale  # type: ignore[arg-type]
        elif how == "max":
            out[name] = window_max(h, *extra) * scale  # type: ignore[arg-type]
        else:
            out[name] = float(h.get(extra[0]) or 0) * scale  # type: ignore[call-overload]
    return out


def as_dict(reply: object) -> dict[bytes, bytes]:
    if not reply:
        return {}
    if isinstance(reply, dict):
        return reply
    flat = list(reply)  # type: ignore[call-overload]
    return dict(zip(flat[::2], flat[1::2], strict=True))
