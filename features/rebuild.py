"""Recompute the online store from history (``cartwise features rebuild``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from engine.events import (
    ChargebackFiled,
    Event,
    InteractionsRecorded,
    OrderPlaced,
    PaymentAttempted,
    StockChanged,
)
from features.definitions import FeatureEvent, LabelEvent
from features.ingest import (
    FRAUD_REASONS,
    interaction_event,
    label_event,
    order_line_events,
    payment_event,
)
from features.store import FeatureStore

Progress = Callable[[str, int], None]


@dataclass
class RebuildSummary:
    removed_keys: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    degraded: bool = False
    seconds: float = 0.0


def rebuild(
    store: FeatureStore,
    events: Iterable[Event],
    progress: Progress | None = None,
    *,
    chunk: int = 2000,
) -> RebuildSummary:
    """Clear every cartwise key, then replay ``events`` in chunks (pipelined)."""
    t0 = time.perf_counter()
    summary = RebuildSummary(removed_keys=store.clear())
    feats: list[FeatureEvent] = []
    labels: list[LabelEvent] = []
    stock: list[tuple[str, str, int]] = []

    def flush(force: bool = False) -> None:
        nonlocal feats, labels, stock
        if feats and (force or len(feats) >= chunk):
            summary.degraded |= store.record(feats).degraded
            feats = []
        if labels and (force or len(labels) >= chunk):
            summary.degraded |= store.record_labels(labels).degraded
            labels = []
        if stock and (force or len(stock) >= chunk):
            summary.degraded |= not store.set_stock(stock)
            stock = []

    for event in events:
        kind = _apply(event, feats, labels, stock)
        summary.counts[kind] = summary.counts.get(kind, 0) + _size(event)
        if progress:
            progress(kind, summary.counts[kind])
        flush()
    flush(force=True)
    summary.seconds = time.perf_counter() - t0
    return summary


def feature_events(event: Event) -> list[FeatureEvent]:
    """The feature events one domain event of the history gives the online store: a payment,
    an order's lines, a batch of storefront events; none for anything else.  The point-in-time
    export of the database's storefront reads them here too, so it sees what a rebuild records."""
    if isinstance(event, PaymentAttempted):
        return [payment_event(event)]
    if isinstance(event, OrderPlaced):
        return order_line_events(event)
    if isinstance(event, InteractionsRecorded):
        return [interaction_event(i) for i in event.items]
    return []


_FEATURE_KINDS = {
    PaymentAttempted: "payments",
    OrderPlaced: "orders",
    InteractionsRecorded: "interactions",
}


def _apply(
    event: Event,
    feats: list[FeatureEvent],
    labels: list[LabelEvent],
    stock: list[tuple[str, str, int]],
) -> str:
    if isinstance(event, ChargebackFiled):
        if event.reason in FRAUD_REASONS:
            labels.append(label_event(event))
        return "chargebacks"
    if isinstance(event, StockChanged):
        stock.append((event.sku, event.warehouse_id, event.on_hand - event.allocated))
        return "stock rows"
    feats.extend(feature_events(event))
    return _FEATURE_KINDS.get(type(event), "other")


def _size(event: Event) -> int:
    return len(event.items) if isinstance(event, InteractionsRecorded) else 1
