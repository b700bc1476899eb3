"""Feature definitions: one place, read by the Redis online store and the offline computation.

A *feature view* aggregates one event source for one entity (Feast's vocabulary).  Windows are
bucketed and sliding: a window of ``seconds`` with buckets of ``bucket`` seconds covers the
``n = seconds // bucket`` buckets ending with the one that holds the read time, so it spans
between (n-1)·bucket and n·bucket seconds.  Counters and sums are integers (amounts in cents),
so the online and the offline numbers are equal, not just close.

Aggregations: count, sum, max (windowed), distinct count, last value; means and ratios are
derived.  Label-delayed features (a merchant's fraud ratio over ``[t-(n+d) days, t-d days]``)
count a fraud label only if it was *reported* by the read time: the online store learns it when
the label arrives; the offline computation filters on ``reported_at``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

DEFINITIONS_VERSION = "2"  # 2: customer_txn.amount_max
DAY = 86_400


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    seconds: int
    bucket: int

    @property
    def n(self) -> int:
        return self.seconds // self.bucket


W10M = Window("10m", 600, 60)
W1H = Window("1h", 3_600, 300)
W1D = Window("1d", DAY, 3_600)
W7D = Window("7d", 7 * DAY, 6 * 3_600)
W30D = Window("30d", 30 * DAY, DAY)
# distinct counts use coarser buckets (one HyperLogLog per bucket)
D1H = Window("1h", 3_600, 600)
D1D = Window("1d", DAY, 4 * 3_600)
D7D = Window("7d", 7 * DAY, DAY)  # also the largest-amount window (a short list of day maxima)


class Entity(enum.StrEnum):
    CUSTOMER = "customer"
    CARD = "card"
    DEVICE = "device"
    IP = "ip"
    EMAIL = "email"
    MERCHANT = "merchant"
    SKU = "sku"
    CATEGORY = "category"
    SESSION = "session"


class Source(enum.StrEnum):
    TRANSACTION = "transaction"  # payment attempts / fraud-score requests
    INTERACTION = "interaction"  # storefront events: view, add_to_cart, purchase, ...


class Kind(enum.StrEnum):
    COUNT = "count"
    SUM = "sum"
    DISTINCT = "distinct"
    LAST = "last"
    MAX = "max"


INTERACTION_TYPES = frozenset({"view", "add_to_cart", "remove_from_cart", "purchase", "search"})


@dataclass(frozen=True, slots=True)
class Aggregation:
    """``name`` is unique within a view; ``value`` names the event value (sum), the attribute
    (distinct, last); ``when`` restricts to event types (None: every event of the source).

    Distinct counts are exact (a sorted set of members by last-seen time) unless ``approx``:
    then a HyperLogLog per bucket, for entities whose cardinality is unbounded (an IP behind
    a carrier NAT sees thousands of cards)."""

    name: str
    kind: Kind
    windows: tuple[Window, ...] = ()
    value: str | None = None
    when: frozenset[str] | None = None
    approx: bool = False

    def applies(self, event_type: str) -> bool:
        return self.when is None or event_type in self.when


@dataclass(frozen=True, slots=True)
class DelayedRatio:
    """Label-delayed fraud ratio: frauds / transactions over ``[t-(n+d), t-d]`` days."""

    name: str
    days: tuple[int, ...]
    delay_days: int

    @property
    def span_days(self) -> int:
        return max(self.days) + self.delay_days


@dataclass(frozen=True, slots=True)
class FeatureView:
    name: str
    entity: Entity
    source: Source
    aggregations: tuple[Aggregation, ...]
    ttl: int  # seconds without a write after which the view's state is gone
    delayed: DelayedRatio | None = None
    labels_known: bool = False  # keep a count of fraud labels reported on this entity

    def features(self) -> list[Feature]:
        """Every feature this view serves, in the order of the feature vector: the one place
        a feature gets its name (``{view}.{aggregation}_{window}``, …)."""
        out: list[Feature] = []
        for agg in self.aggregations:
            if agg.kind is Kind.LAST:
                base = f"{self.name}.{agg.name}"
                out += [Feature(base, "last", agg), Feature(f"{base}_age_s", "age", agg)]
            else:
                kind = agg.kind.value
                out += [
                    Feature(f"{self.name}.{agg.name}_{w.name}", kind, agg, w) for w in agg.windows
                ]
        aggs = {a.name: a for a in self.aggregations}
        if "amount_sum" in aggs and "txn_count" in aggs:
            amounts = aggs["amount_sum"]
            out += [
                Feature(f"{self.name}.amount_mean_{w.name}", "mean", amounts, w)
                for w in amounts.windows
            ]
        if self.delayed:
            d = self.delayed
            for n in d.days:
                base = f"{self.name}.{d.name}_{n}d_delay{d.delay_days}d"
                out += [
                    Feature(f"{base}_{part}", f"delayed_{part}", days=n)
                    for part in ("count", "frauds", "ratio")
                ]
        if self.labels_known:
            out.append(Feature(f"{self.name}.frauds_known", "frauds_known"))
        return out

    def feature_names(self) -> list[str]:
        return [f.name for f in self.features()]


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature a view serves.  ``kind``: an aggregation's kind (count, sum, max,
    distinct, last), or ``age`` (seconds since a last value), ``mean`` (sum / count over the
    window), ``delayed_count`` / ``delayed_frauds`` / ``delayed_ratio`` (transactions, fraud
    labels reported by now, and their ratio over ``[t-(days+delay), t-delay]``),
    ``frauds_known`` (fraud labels reported so far)."""

    name: str
    kind: str
    aggregation: Aggregation | None = None
    window: Window | None = None
    days: int | None = None


def _count(name: str, *windows: Window, when: frozenset[str] | None = None) -> Aggregation:
    return Aggregation(name, Kind.COUNT, windows, when=when)


def _sum(
    name: str, value: str, *windows: Window, when: frozenset[str] | None = None
) -> Aggregation:
    return Aggregation(name, Kind.SUM, windows, value=value, when=when)


def _distinct(name: str, value: str, *windows: Window, approx: bool = False) -> Aggregation:
    return Aggregation(name, Kind.DISTINCT, windows, value=value, approx=approx)


def _max(name: str, value: str, *windows: Window) -> Aggregation:
    return Aggregation(name, Kind.MAX, windows, value=value)


def _last(name: str, value: str, when: frozenset[str] | None = None) -> Aggregation:
    return Aggregation(name, Kind.LAST, value=value, when=when)


ALL_TXN = (W10M, W1H, W1D, W7D, W30D)
_types = frozenset

VIEWS: tuple[FeatureView, ...] = (
    FeatureView(
        "customer_txn",
        Entity.CUSTOMER,
        Source.TRANSACTION,
        (
            _count("txn_count", *ALL_TXN),
            _sum("amount_sum", "amount", *ALL_TXN),
            _max("amount_max", "amount", D7D),
            _distinct("cards", "card", D1D, D7D),
            _distinct("devices", "device", D7D),
            _distinct("ips", "ip", D1D),
            _last("last_txn", "shipping_country"),
        ),
        ttl=31 * DAY,
        labels_known=True,
    ),
    FeatureView(
        "card_txn",
        Entity.CARD,
        Source.TRANSACTION,
        (
            _count("txn_count", W10M, W1H, W1D, W7D),
            _sum("amount_sum", "amount", W1D),
            _distinct("customers", "customer", D7D),
            _distinct("merchants", "merchant", D1D),
            _last("last_txn", "merchant"),
        ),
        ttl=31 * DAY,
        labels_known=True,
    ),
    FeatureView(
        "device_txn",
        Entity.DEVICE,
        Source.TRANSACTION,
        (
            _count("txn_count", W1H, W1D),
            _distinct("cards", "card", D1D),
            _distinct("customers", "customer", D7D),
        ),
        ttl=8 * DAY,
    ),
    FeatureView(
        "ip_txn",
        Entity.IP,
        Source.TRANSACTION,
        (
            _count("txn_count", W10M, W1H),
            _distinct("cards", "card", D1H, approx=True),
            _distinct("customers", "customer", D1D, approx=True),
        ),
        ttl=2 * DAY,
    ),
    FeatureView(
        "email_txn",
        Entity.EMAIL,
        Source.TRANSACTION,
        (_count("txn_count", W1D, W7D), _distinct("cards", "card", D7D)),
        ttl=8 * DAY,
    ),
    FeatureView(
        "merchant_txn",
        Entity.MERCHANT,
        Source.TRANSACTION,
        (_count("txn_count", W1D, W7D, W30D), _sum("amount_sum", "amount", W1D)),
        ttl=40 * DAY,
        delayed=DelayedRatio("fraud", days=(1, 7, 30), delay_days=7),
    ),
    FeatureView(
        "sku_activity",
        Entity.SKU,
        Source.INTERACTION,
        (
            _count("views", W1H, W1D, W7D, when=_types({"view"})),
            _count("carts", W1D, W7D, when=_types({"add_to_cart"})),
            _sum("units_sold", "qty", W1D, W7D, when=_types({"order_line"})),
        ),
        ttl=8 * DAY,
    ),
    FeatureView(
        "category_activity",
        Entity.CATEGORY,
        Source.INTERACTION,
        (
            _count("views", W1H, W1D, W7D, when=_types({"view"})),
            _sum("units_sold", "qty", W1D, W7D, when=_types({"order_line"})),
        ),
        ttl=8 * DAY,
    ),
    FeatureView(
        "customer_activity",
        Entity.CUSTOMER,
        Source.INTERACTION,
        (
            _count("views", W10M, W1H, W1D, when=_types({"view"})),
            _count("carts", W1H, W1D, when=_types({"add_to_cart"})),
            _count("searches", W1H, when=_types({"search"})),
            _last("last_viewed", "sku", when=_types({"view"})),
        ),
        ttl=31 * DAY,
    ),
    FeatureView(
        "session_activity",
        Entity.SESSION,
        Source.INTERACTION,
        (_count("events", W10M, W1H), _distinct("skus", "sku", D1H)),
        ttl=DAY,
    ),
)

VIEWS_BY_NAME = {v.name: v for v in VIEWS}


def views_for(source: Source) -> tuple[FeatureView, ...]:
    return tuple(v for v in VIEWS if v.source is source)


def views_of(entity: Entity) -> tuple[FeatureView, ...]:
    return tuple(v for v in VIEWS if v.entity is entity)


@dataclass(frozen=True, slots=True)
class FeatureEvent:
    """One event as the feature store sees it.

    ``ts`` is seconds since the epoch (UTC); ``entities`` maps entity kind to id (absent or
    empty: not known); ``values`` are integers (``amount`` in cents, ``qty`` in units);
    ``attrs`` are strings used by distinct counts and last values.
    """

    event_id: str
    source: Source
    type: str
    ts: float
    entities: dict[Entity, str] = field(default_factory=dict)
    values: dict[str, int] = field(default_factory=dict)
    attrs: dict[str, str] = field(default_factory=dict)

    def attr(self, name: str) -> str | None:
        """An attribute, falling back to an entity id of the same name (card, device, …)."""
        if name in self.attrs:
            return self.attrs[name] or None
        try:
            return self.entities.get(Entity(name)) or None
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """A fraud label (chargeback, analyst feedback) for a transaction made at ``tx_ts``."""

    label_id: str
    tx_ts: float
    reported_ts: float
    entities: dict[Entity, str]
    fraud: bool = True


def cents(amount: float) -> int:
    """Money as integer cents, the unit every amount is stored in (round half to even, as
    numpy's ``rint`` does offline)."""
    return round(amount * 100)


def bucket(ts: float, size: int) -> int:
    return int(ts // size)


FeatureValues = dict[str, float | str | None]


def _f(value: float | str | None) -> float:
    return value if isinstance(value, float | int) else 0.0


def _derived() -> tuple[tuple[str, str, str], ...]:
    """(output, numerator, denominator) of every derived feature: means and fraud ratios."""
    out: list[tuple[str, str, str]] = []
    for view in VIEWS:
        for f in view.features():
            if f.kind == "mean":
                assert f.window is not None
                w = f.window.name
                out.append((f.name, f"{view.name}.amount_sum_{w}", f"{view.name}.txn_count_{w}"))
            elif f.kind == "delayed_ratio":
                base = f.name.removesuffix("_ratio")
                out.append((f.name, f"{base}_frauds", f"{base}_count"))
    return tuple(out)


DERIVED = _derived()


def derive(raw: FeatureValues) -> FeatureValues:
    """Features computed from stored ones (same function online and offline); only for the
    views the read returned."""
    out = dict(raw)
    for name, numerator, denominator in DERIVED:
        if denominator in raw:
            count = _f(raw[denominator])
            out[name] = _f(raw.get(numerator)) / count if count else 0.0
    return out
