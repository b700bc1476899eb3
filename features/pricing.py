"""Pricing's inputs from the online store: sales velocity and views per SKU (the
``sku_activity`` feature view), available stock (the stock mirror) and competitor prices.

Competitor prices live in one hash per SKU, ``cw:comp:{sku}``: competitor → ``"cents|observed_at"``
in the SKU's catalogue currency.  The hash expires ``ttl_s`` after its newest observation, and a
read ignores any observation older than ``max_age_s`` (one competitor's stale price does not
linger because another's is fresh).  Reads for a whole catalogue are pipelined in batches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import resources

import numpy as np
import redis

from engine.errors import Unavailable
from engine.pricing.ports import CompetitorPrice
from features.backends import REDIS_ERRORS, BackendUnavailable
from features.definitions import VIEWS_BY_NAME
from features.plan import Plan, as_dict, decode, plan_read
from features.store import FeatureStore

log = logging.getLogger(__name__)
ACTIVITY = VIEWS_BY_NAME["sku_activity"]
ACTIVITY_FEATURES = (
    "sku_activity.units_sold_1d",
    "sku_activity.units_sold_7d",
    "sku_activity.views_1d",
    "sku_activity.views_7d",
)
BATCH = 500


def competitor_key(sku: str) -> str:
    return f"cw:comp:{sku}"


class PricingInputs:
    """``engine.pricing.ports.MarketInputs`` on the Redis online store."""

    def __init__(self, store: FeatureStore, client: redis.Redis) -> None:
        self.store = store
        self.client = client
        self._keep = client.register_script(
            (resources.files("features") / "lua" / "competitor.lua").read_text()
        )

    def activity(self, skus: Sequence[str], now: float) -> tuple[np.ndarray, bool]:
        out = np.full((len(ACTIVITY_FEATURES), len(skus)), np.nan, dtype=np.float32)
        for lo in range(0, len(skus), BATCH):
            plans = [plan_read([(ACTIVITY, sku)], now) for sku in skus[lo : lo + BATCH]]
            try:
                results = self.store.bulk.run(plans)
            except BackendUnavailable as exc:
                log.warning("sku activity unavailable, pricing without it: %s", exc)
                return out, True
            for j, (plan, (_, replies)) in enumerate(zip(plans, results, strict=True)):
                values = decode(plan, replies)
                for f, name in enumerate(ACTIVITY_FEATURES):
                    value = values.get(name)
                    if isinstance(value, int | float):
                        out[f, lo + j] = value
        return out, False

    def stock(self, skus: Sequence[str]) -> tuple[np.ndarray, bool]:
        out = np.full(len(skus), np.nan, dtype=np.float32)
        for lo in range(0, len(skus), BATCH * 10):
            chunk = skus[lo : lo + BATCH * 10]
            levels, degraded = self.store.available(chunk)
            if degraded:
                return out, True
            for j, sku in enumerate(chunk):
                if sku in levels:
                    out[lo + j] = levels[sku]
        return out, False

    def competitor_prices(
        self, skus: Sequence[str], now: float, max_age_s: float
    ) -> tuple[list[list[CompetitorPrice]], bool]:
        out: list[list[CompetitorPrice]] = [[] for _ in skus]
        for lo in range(0, len(skus), BATCH):
            chunk = skus[lo : lo + BATCH]
            try:
                ((_, replies),) = self.store.bulk.run(
                    [Plan(reads=[("HGETALL", competitor_key(sku)) for sku in chunk])]
                )
            except BackendUnavailable as exc:
                log.warning("competitor prices unavailable, pricing without them: %s", exc)
                return out, True
            for j, (sku, reply) in enumerate(zip(chunk, replies, strict=True)):
                out[lo + j] = _parse(sku, reply, now - max_age_s)
        return out, False

    def put_competitor_prices(self, prices: Sequence[CompetitorPrice], ttl_s: int) -> int:
        kept = 0
        try:
            for lo in range(0, len(prices), BATCH):
                chunk = prices[lo : lo + BATCH]
                args: list[str | int] = [int(ttl_s)]
                for p in chunk:
                    args += [p.competitor, int(p.cents), repr(float(p.observed_at))]
                kept += int(self._keep(keys=[competitor_key(p.sku) for p in chunk], args=args))
        except REDIS_ERRORS as exc:
            raise Unavailable(
                "the online store is unreachable; send the prices again later",
                code="feature_store_unavailable",
            ) from exc
        return kept


def _parse(sku: str, reply: object, oldest: float) -> list[CompetitorPrice]:
    out = []
    for competitor, value in as_dict(reply).items():
        cents, _, at = value.decode().partition("|")
        observed = float(at)
        if observed >= oldest:
            out.append(CompetitorPrice(sku, competitor.decode(), int(cents), observed))
    return out
