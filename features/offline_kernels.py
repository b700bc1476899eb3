"""Vectorised point-in-time kernels behind ``features/offline.py``.

One feature view at a time: the view's events are grouped by entity and, inside a group, kept in
processing order (timestamp, then input order), so a bucket index is monotone in a group and a
window ``[k-n+1, k]`` is a contiguous run of rows found with ``searchsorted`` on the composite key
``group * span + bucket``.  Counters and sums are differences of prefix sums; distinct counts are
one Python pass with a sliding multiset; labels become +1/-1 marks on row ranges.

Each row reads the state *before* its own event, exactly like ``FeatureStore.decide``: only
earlier rows of its group, and only those whose event id was seen first (duplicates are read
but not recorded, as the online store's ``seen`` key does).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from features.definitions import DAY, VIEWS, Aggregation, FeatureView, Kind
from features.plan import VALUE_SCALE

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]
Column = tuple[IntArray, ObjArray]  # (codes, -1 when missing; the distinct values)


_LAST_NAMES = frozenset(
    f"{v.name}.{a.name}" for v in VIEWS for a in v.aggregations if a.kind is Kind.LAST
)


def bucket_of(ts: FloatArray, size: int) -> IntArray:
    """``definitions.bucket`` over an array (numpy's float floor division is Python's)."""
    return np.floor_divide(ts, size).astype(np.int64)


def codes_of(values: object) -> Column:
    """Factorise ids/attributes; None and NaN are missing (-1)."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    return np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object)


@dataclass(frozen=True)
class Stream:
    """One source's events in processing order (stable sort on the timestamp)."""

    ts: FloatArray  # seconds, ascending
    rows: IntArray  # input row number of each processed event
    recorded: BoolArray  # first occurrence of its event id: its writes apply
    types: Column
    columns: Mapping[str, Column]  # entity ids and string attributes, by name
    values: Mapping[str, IntArray]  # integer event values (amount in cents, qty)

    @property
    def size(self) -> int:
        return len(self.ts)

    def type_mask(self, agg: Aggregation, pos: IntArray) -> BoolArray | None:
        """Rows (at processing positions ``pos``) the aggregation applies to; None: all."""
        if agg.when is None:
            return None
        codes, uniques = self.types
        wanted = [i for i, t in enumerate(uniques) if t in agg.when]
        return np.isin(codes[pos], wanted)


@dataclass(frozen=True)
class Labels:
    """Fraud labels in application order (reported time, then input order), deduplicated."""

    tx_ts: FloatArray
    reported_ts: FloatArray
    entities: Mapping[str, ObjArray]  # entity value -> id (None when missing)


@dataclass
class _Buckets:
    k: IntArray
    kmin: int
    span: int
    key: IntArray

    def first_at_least(self, k: IntArray, g: IntArray) -> IntArray:
        """Row of the first event of group ``g`` whose bucket is >= ``k`` (group end if none)."""
        off = np.clip(k - self.kmin, 0, self.span - 1)
        return np.searchsorted(self.key, g * self.span + off, side="left").astype(np.int64)


@dataclass
class _Groups:
    """A view's events sorted by (entity, processing position)."""

    stream: Stream
    pos: IntArray
    g: IntArray
    gend: IntArray  # per group: one past its last row
    start: IntArray  # per row: first row of its group
    t: FloatArray
    recorded: BoolArray
    _buckets: dict[int, _Buckets] = field(default_factory=dict)
    _starts: dict[tuple[int, int], IntArray] = field(default_factory=dict)

    @classmethod
    def build(cls, stream: Stream, codes: IntArray, n_groups: int) -> _Groups:
        present = np.flatnonzero(codes >= 0)
        pos = present[np.argsort(codes[present], kind="stable")]
        g = codes[pos]
        groups = np.arange(n_groups)
        gstart = np.searchsorted(g, groups, side="left").astype(np.int64)
        gend = np.searchsorted(g, groups, side="right").astype(np.int64)
        return cls(stream, pos, g, gend, gstart[g], stream.ts[pos], stream.recorded[pos])

    @property
    def m(self) -> int:
        return len(self.pos)

    def buckets(self, size: int) -> _Buckets:
        if size not in self._buckets:
            k = bucket_of(self.t, size)
            kmin = int(k.min()) if self.m else 0
            span = (int(k.max()) - kmin + 2) if self.m else 2
            if (int(self.g.max()) + 1 if self.m else 0) * span >= 2**62:
                raise OverflowError("time range too wide for the composite bucket key")
            self._buckets[size] = _Buckets(k, kmin, span, self.g * span + (k - kmin))
        return self._buckets[size]

    def window_start(self, size: int, n: int) -> IntArray:
        """Per row: the first row of its group in bucket >= its own bucket - n + 1."""
        if (size, n) not in self._starts:
            b = self.buckets(size)
            self._starts[size, n] = b.first_at_least(b.k - n + 1, self.g)
        return self._starts[size, n]

    def last_before(self, mask: BoolArray) -> IntArray:
        """Per row: the last earlier row of its group where ``mask`` holds, or -1."""
        idx = np.where(mask, np.arange(self.m), -1)
        prev = np.empty(self.m, dtype=np.int64)
        if self.m:
            prev[0] = -1
            prev[1:] = np.maximum.accumulate(idx)[:-1]
        prev[prev < self.start] = -1
        return prev

    def label_starts(
        self, labels: Labels, entity: str, ids: ObjArray
    ) -> tuple[IntArray, IntArray, BoolArray]:
        """(group, first row that sees it, mask of the labels kept) for every label on one of
        this view's entities; a label is applied just before the first event whose ts >= its
        reported ts."""
        lg = np.asarray(pd.Index(ids).get_indexer(labels.entities[entity]), dtype=np.int64)
        keep = lg >= 0
        lg = lg[keep]
        q = np.searchsorted(self.stream.ts, labels.reported_ts[keep], side="left")
        n = self.stream.size
        key = self.g * n + self.pos
        first = np.searchsorted(key, lg * n + q, side="left").astype(np.int64)
        return lg, first, keep


def _ranges(lo: IntArray, hi: IntArray, m: int) -> IntArray:
    """How many of the row ranges [lo, hi) cover each of m rows."""
    ok = hi > lo
    marks = np.bincount(lo[ok], minlength=m + 1) - np.bincount(hi[ok], minlength=m + 1)
    return np.cumsum(marks[:m]).astype(np.int64)


def sliding_distinct(vals: list[int], lo: list[int]) -> IntArray:
    """Distinct non-negative values among rows [lo[i], i) for every row i (lo non-decreasing)."""
    out = [0] * len(vals)
    counts = [0] * (max(vals, default=0) + 1)
    distinct = p = 0
    for i, v in enumerate(vals):
        first = lo[i]
        while p < first:
            old = vals[p]
            if old >= 0:
                counts[old] -= 1
                if counts[old] == 0:
                    distinct -= 1
            p += 1
        out[i] = distinct
        if v >= 0:
            if counts[v] == 0:
                distinct += 1
            counts[v] += 1
    return np.asarray(out, dtype=np.int64)


def sliding_max(vals: list[int], lo: list[int]) -> IntArray:
    """Largest value among rows [lo[i], i) for every row i (lo non-decreasing; -1 marks rows
    without a value; 0 where there is none)."""
    out = [0] * len(vals)
    window: deque[int] = deque()  # rows with decreasing values
    for i, v in enumerate(vals):
        while window and window[0] < lo[i]:
            window.popleft()
        out[i] = vals[window[0]] if window else 0
        if v >= 0:
            while window and vals[window[-1]] <= v:
                window.pop()
            window.append(i)
    return np.asarray(out, dtype=np.int64)


def _prefix(values: IntArray) -> IntArray:
    out = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=out[1:])
    return out


class _Out:
    """A view's features per group-sorted row, gated by the view's TTL."""

    def __init__(self, live: BoolArray) -> None:
        self.live = live
        self.raw: dict[str, npt.NDArray[np.generic]] = {}

    def num(self, name: str, values: npt.NDArray[np.generic], scale: float = 1.0) -> None:
        self.raw[name] = np.where(self.live, values.astype(np.float64) * scale, 0.0)

    def ratio(self, name: str, num: str, den: str) -> None:
        """``definitions.derive``: num / den, 0.0 where den is 0 (or absent)."""
        n = self.raw[num].astype(np.float64)
        d = self.raw.get(den, np.zeros(len(n))).astype(np.float64)
        out = np.zeros(len(n))
        np.divide(n, d, out=out, where=d != 0)
        self.raw[name] = out


def view_features(
    view: FeatureView, stream: Stream, labels: Labels | None
) -> tuple[IntArray, dict[str, npt.NDArray[np.generic]]]:
    """Every feature of ``view`` for the events that have its entity: (their input row
    numbers, feature name -> values in that order).  Other rows get the defaults (0.0; None
    for last values, -1.0 for their age)."""
    codes, ids = stream.columns[view.entity.value]
    grp = _Groups.build(stream, codes, len(ids))
    raw = _view_raw(view, grp, labels, ids)
    return stream.rows[grp.pos], raw


def default_of(name: str) -> float | None:
    """The value a feature reads as when its view is absent or expired."""
    if name.endswith("_age_s"):
        return -1.0
    return None if name in _LAST_NAMES else 0.0


def _view_raw(
    view: FeatureView, grp: _Groups, labels: Labels | None, ids: ObjArray
) -> dict[str, npt.NDArray[np.generic]]:
    stream, m = grp.stream, grp.m
    prev = grp.last_before(grp.recorded)
    since = grp.t - grp.t[np.maximum(prev, 0)]
    out = _Out((prev >= 0) & ~(since > view.ttl))  # decode(): stale when now - _w > ttl
    here = np.arange(m, dtype=np.int64)
    for agg in view.aggregations:
        mask = stream.type_mask(agg, grp.pos)
        applies = grp.recorded if mask is None else grp.recorded & mask
        name = f"{view.name}.{agg.name}"
        if agg.kind is Kind.LAST:
            _last(name, stream.columns[agg.value or ""], grp, applies, out)
        elif agg.kind is Kind.MAX:
            vals = np.where(applies, stream.values[agg.value or ""][grp.pos], -1)
            scale = VALUE_SCALE.get(agg.value or "", 1.0)
            for w in agg.windows:
                lo = grp.window_start(w.bucket, w.n)
                out.num(f"{name}_{w.name}", sliding_max(vals.tolist(), lo.tolist()), scale)
        elif agg.kind is Kind.DISTINCT:
            acodes = stream.columns[agg.value or ""][0][grp.pos]
            vals = np.where(applies & (acodes >= 0), acodes, -1)
            for w in agg.windows:
                counts = np.zeros(m, dtype=np.int64)
                if (vals >= 0).any():
                    lo = grp.window_start(w.bucket, w.n)
                    counts = sliding_distinct(vals.tolist(), lo.tolist())
                out.num(f"{name}_{w.name}", counts)
        else:
            delta = 1 if agg.kind is Kind.COUNT else stream.values[agg.value or ""][grp.pos]
            prefix = _prefix(np.where(applies, delta, 0).astype(np.int64))
            scale = VALUE_SCALE.get(agg.value or "", 1.0)
            for w in agg.windows:
                lo = grp.window_start(w.bucket, w.n)
                out.num(f"{name}_{w.name}", prefix[here] - prefix[lo], scale)
    aggs = {a.name: a for a in view.aggregations}
    if "amount_sum" in aggs and "txn_count" in aggs:
        for w in aggs["amount_sum"].windows:
            v = view.name
            out.ratio(
                f"{v}.amount_mean_{w.name}", f"{v}.amount_sum_{w.name}", f"{v}.txn_count_{w.name}"
            )
    if view.delayed:
        _delayed(view, grp, labels, ids, out)
    if view.labels_known:
        known = np.zeros(m, dtype=np.int64)
        if labels is not None:
            lg, first, _ = grp.label_starts(labels, view.entity.value, ids)
            known = _ranges(first, grp.gend[lg], m)
        out.num(f"{view.name}.frauds_known", known)
    return out.raw


def _last(name: str, column: Column, grp: _Groups, applies: BoolArray, out: _Out) -> None:
    """Value of the latest earlier event carrying the attribute, and its age."""
    acodes, uniques = column
    codes = acodes[grp.pos]
    prev = grp.last_before(applies & (codes >= 0))
    ok = out.live & (prev >= 0)
    at = np.maximum(prev, 0)
    values = np.full(grp.m, None, dtype=object)
    values[ok] = uniques[codes[at[ok]]]
    out.raw[name] = values
    out.raw[f"{name}_age_s"] = np.where(ok, np.maximum(0.0, grp.t - grp.t[at]), -1.0)


def _delayed(
    view: FeatureView, grp: _Groups, labels: Labels | None, ids: ObjArray, out: _Out
) -> None:
    """Transactions and reported frauds over day buckets [k-d-n+1, k-d], and their ratio."""
    assert view.delayed is not None
    d, m = view.delayed, grp.m
    b = grp.buckets(DAY)
    prefix = _prefix(grp.recorded.astype(np.int64))
    here = np.arange(m, dtype=np.int64)
    lg = first = ktx = np.zeros(0, dtype=np.int64)
    if labels is not None:
        lg, first, keep = grp.label_starts(labels, view.entity.value, ids)
        ktx = bucket_of(labels.tx_ts[keep], DAY)
        krep = bucket_of(labels.reported_ts[keep], DAY)
        counted = ktx > krep - d.span_days  # plan_label's retention condition
        lg, first, ktx = lg[counted], first[counted], ktx[counted]
    for n in d.days:
        base = f"{view.name}.{d.name}_{n}d_delay{d.delay_days}d"
        lo = b.first_at_least(b.k - d.delay_days - n + 1, grp.g)
        hi = np.minimum(b.first_at_least(b.k - d.delay_days + 1, grp.g), here)
        out.num(f"{base}_count", prefix[np.maximum(hi, lo)] - prefix[lo])
        # a label of tx day ktx counts for reads on days ktx+d .. ktx+d+n-1, once reported
        lo_l = np.maximum(b.first_at_least(ktx + d.delay_days, lg), first)
        hi_l = b.first_at_least(ktx + d.delay_days + n, lg)
        out.num(f"{base}_frauds", _ranges(lo_l, hi_l, m))
        out.ratio(f"{base}_ratio", f"{base}_frauds", f"{base}_count")
