"""The feature catalogue: every feature of ``features/definitions.py`` described for people.

What Feast's registry gives its users (``feast feature-views list``): which views exist, the
entity each is keyed by, the event source, the TTL, and per feature its aggregation, window and
meaning.  ``cartwise features list`` prints it; ``GET /v1/features`` (admin) returns it.
Nothing here is stored: the catalogue is derived from the definitions every time, so it cannot
drift from what the online store and the offline computation serve.
"""

from __future__ import annotations

from typing import Any

from features.definitions import (
    DEFINITIONS_VERSION,
    VIEWS,
    Feature,
    FeatureView,
    Source,
    Window,
    views_for,
)

_UNITS = {"amount": "in the currency's major units"}


def _span(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _window(w: Window) -> str:
    return f"the last {_span(w.seconds)} ({w.n} sliding buckets of {_span(w.bucket)})"


def _events(view: FeatureView, feature: Feature, plural: str = "s") -> str:
    agg = feature.aggregation
    if view.source is Source.TRANSACTION:
        return "transaction" + plural
    if agg is not None and agg.when is not None:
        return " / ".join(sorted(agg.when)) + " event" + plural
    return "storefront event" + plural


def describe(view: FeatureView, feature: Feature) -> str:
    """One sentence on what ``feature`` of ``view`` holds, as of the event being decided."""
    entity, agg, w = view.entity.value, feature.aggregation, feature.window
    events = _events(view, feature)
    value = agg.value if agg is not None else None
    unit = f" ({_UNITS[value]})" if value in _UNITS else ""
    over = _window(w) if w is not None else ""
    d = view.delayed
    match feature.kind:
        case "count":
            return f"{events} of this {entity} in {over}"
        case "sum":
            return f"sum of {value}{unit} over {events} of this {entity} in {over}"
        case "max":
            return f"largest {value}{unit} of this {entity}'s {events} in {over}"
        case "distinct":
            how = "estimated (HyperLogLog)" if agg is not None and agg.approx else "exact"
            return f"distinct {value}s seen with this {entity} in {over}, {how}"
        case "last":
            newest = _events(view, feature, "")
            return f"{value} of this {entity}'s newest {newest} (null when none)"
        case "age":
            newest = _events(view, feature, "")
            return f"seconds since this {entity}'s newest {newest} (-1 when none)"
        case "mean":
            return f"mean amount{unit} of this {entity}'s {events} in {over} (0 when none)"
        case "delayed_count" | "delayed_frauds" | "delayed_ratio" if d is not None:
            assert feature.days is not None
            span = f"[t - {feature.days + d.delay_days} d, t - {d.delay_days} d]"
            return {
                "delayed_count": f"transactions of this {entity} in {span}",
                "delayed_frauds": "of those, the ones whose fraud label was reported by t",
                "delayed_ratio": "frauds / transactions over that span (0 when none)",
            }[feature.kind]
        case "frauds_known":
            return f"fraud labels reported so far on this {entity}'s transactions"
    raise ValueError(f"no description for {feature.kind!r}")


def _feature(view: FeatureView, f: Feature) -> dict[str, Any]:
    agg, w = f.aggregation, f.window
    return {
        "name": f.name,
        "kind": f.kind,
        "window": w.name if w is not None else None,
        "window_s": w.seconds if w is not None else None,
        "bucket_s": w.bucket if w is not None else None,
        "delay_span_days": f.days,
        "of": agg.value if agg is not None else None,
        "event_types": sorted(agg.when) if agg is not None and agg.when is not None else None,
        "approximate": bool(agg is not None and agg.approx),
        "description": describe(view, f),
    }


def catalog(source: Source | None = None) -> dict[str, Any]:
    """The views of ``source`` (None: all) and their features, as plain JSON."""
    views = views_for(source) if source is not None else VIEWS
    return {
        "definitions_version": DEFINITIONS_VERSION,
        "views": [
            {
                "name": v.name,
                "entity": v.entity.value,
                "source": v.source.value,
                "ttl_s": v.ttl,
                "label_delay_days": v.delayed.delay_days if v.delayed else None,
                "features": [_feature(v, f) for f in v.features()],
            }
            for v in views
        ],
    }
