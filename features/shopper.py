"""A shopper's real-time state for recommendations, read in one round trip.

Written by ingestion (``features.plan.plan_shopper_writes``): what the customer and the session
touched lately (``cw:recent:…``), the day's trending SKUs per category and store-wide
(``cw:trend:…``); and by the stock mirror: SKUs with nothing available (``cw:stock:out``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

from engine.recommend.shopper import ShopperState, Touch
from features.backends import BackendUnavailable
from features.definitions import DAY, Entity
from features.plan import STOCK_OUT_KEY, TREND_ALL, Op, Plan, recent_key, trend_key
from features.store import FeatureStore

log = logging.getLogger(__name__)


class ShopperReader:
    def __init__(
        self,
        store: FeatureStore,
        *,
        trending_depth: int = 200,
        stock_refresh_s: float = 1.0,
        trending_refresh_s: float = 1.0,
    ) -> None:
        """The out-of-stock set is re-read at most every ``stock_refresh_s`` (it is the same
        object in between, so callers can cache what they derive from it); a scope's trending
        list at most every ``trending_refresh_s`` (it is the same for every shopper, and
        reading and merging two days of 200 scores was a tenth of a recommendation's CPU)."""
        self.store = store
        self.depth = trending_depth
        self.stock_refresh_s = stock_refresh_s
        self.trending_refresh_s = trending_refresh_s
        self._out: frozenset[str] = frozenset()
        self._out_read = -1e18
        self._trends: dict[tuple[str, int], tuple[float, list[tuple[str, float]]]] = {}

    def state(
        self,
        *,
        customer_id: str | None,
        session_id: str | None,
        category: str | None,
        now: float,
    ) -> ShopperState:
        day = int(now // DAY)
        reads: list[Op] = []
        for entity, entity_id in ((Entity.CUSTOMER, customer_id), (Entity.SESSION, session_id)):
            if entity_id:
                reads.append(("ZREVRANGE", recent_key(entity, entity_id), 0, -1, "WITHSCORES"))
        n_recent = len(reads)
        scopes = [TREND_ALL] + ([category] if category else [])
        clock = time.monotonic()
        stale = [
            scope
            for scope in scopes
            if clock - self._trends.get((scope, day), (-1e18, []))[0] >= self.trending_refresh_s
        ]
        for scope in stale:
            for d in (day, day - 1):
                reads.append(("ZREVRANGE", trend_key(scope, d), 0, self.depth - 1, "WITHSCORES"))
        stock_due = clock - self._out_read >= self.stock_refresh_s
        if stock_due:
            reads.append(("SMEMBERS", STOCK_OUT_KEY))
        try:
            ((_, replies),) = self.store.backend.run([Plan(reads=reads)])
        except BackendUnavailable as exc:
            log.warning("shopper state unavailable, serving without it: %s", exc)
            return ShopperState(out_of_stock=self._out, degraded=True)
        recent = _recent(replies[:n_recent])
        # a sliding day: today's counts plus yesterday's share not yet covered by today
        weight = 1.0 - (now - day * DAY) / DAY
        for n, scope in enumerate(stale):
            i = n_recent + 2 * n
            self._trends[(scope, day)] = (clock, _combine(replies[i], replies[i + 1], weight))
        if len(self._trends) > 4 * 10_000:  # days past, categories gone: start over
            self._trends = {k: v for k, v in self._trends.items() if k[1] == day}
        trends = [self._trends[(scope, day)][1] for scope in scopes]
        if stock_due:
            members: Iterable[bytes] = replies[-1] or ()  # type: ignore[assignment]
            self._out = frozenset(m.decode() for m in members)
            self._out_read = time.monotonic()
        return ShopperState(
            recent=recent,
            trending=trends[-1],
            trending_all=trends[0],
            out_of_stock=self._out,
        )


def _pairs(reply: object) -> list[tuple[bytes, float]]:
    """WITHSCORES replies: RESP3 gives [member, score] pairs, RESP2 one flat list."""
    items = list(reply or ())  # type: ignore[call-overload]
    if items and isinstance(items[0], list | tuple):
        return [(m, float(t)) for m, t in items]
    return [(items[i], float(items[i + 1])) for i in range(0, len(items), 2)]


def _recent(replies: Sequence[object]) -> list[Touch]:
    seen: dict[str, Touch] = {}
    for reply in replies:
        for member, ts in _pairs(reply):
            kind, _, sku = member.decode().partition("|")
            key = f"{kind}|{sku}"
            if key not in seen or seen[key].ts < ts:
                seen[key] = Touch(kind, sku, ts)
    return sorted(seen.values(), key=lambda t: -t.ts)


def _combine(today: object, yesterday: object, weight: float) -> list[tuple[str, float]]:
    scores: dict[str, float] = {}
    for member, score in _pairs(today):
        scores[member.decode()] = score
    for member, score in _pairs(yesterday):
        sku = member.decode()
        scores[sku] = scores.get(sku, 0.0) + weight * score
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
