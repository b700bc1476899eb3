"""What should this shopper see?  One widget's answer, from end to end.

``Recommender.recommend`` reads the shopper's real-time state in one round trip (recent items of
the customer and the session, trending SKUs, SKUs out of stock), folds the recent items into
the customer's ALS vector (so three views in one category show in the very next response),
searches the FAISS index with every filter applied at search time (purchased, out of stock,
hidden, category), then applies the widget: boosts, diversity, promotions, and the fallback
chain when the strategy cannot fill the slots (a new shopper gets trending items of the
context category).  The answer is logged under its ``recommendation_id``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from engine.commerce.ids import new_id
from engine.crm.profiles import CustomerSegments
from engine.errors import CartwiseError, ValidationError
from engine.experiments.hooks import RecTrials
from engine.recommend.catalog import CatalogCache, CatalogView
from engine.recommend.log import RecItem, Recommendation, RecommendationLog
from engine.recommend.shopper import ShopperPort, ShopperState
from engine.recommend.widgets import MAX_K, Widget, WidgetStore
from engine.rollout import Rollout
from engine.rollout.log import ShadowLog, ShadowRecord

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
WEIGHTS = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0, "order_line": 5.0}
PURCHASED = frozenset({"purchase", "order_line"})
RECENT_FOLD = 20  # newest touches folded into the vector

logger = logging.getLogger(__name__)


class RecModelLike(Protocol):
    """What the service needs of a trained model (``engine.recommend.artifact.RecModel``)."""

    @property
    def version(self) -> str: ...

    def item_id(self, sku: str) -> int | None: ...
    def sku(self, item_id: int) -> str: ...
    def user_vector(self, customer_id: str) -> F32 | None: ...
    def fold_in(self, item_ids: I64, weights: npt.NDArray[np.float64], base: F32 | None) -> F32: ...
    def search(
        self, query: F32, k: int, *, exclude: I64 | None, allow: I64 | None
    ) -> tuple[I64, F32]: ...
    def similar(self, item_id: int, k: int, *, exclude: I64 | None) -> tuple[I64, F32]: ...
    def bought_together(self, item_id: int) -> tuple[I64, F32]: ...
    def popular(self, n: int) -> tuple[I64, F32]: ...


@dataclass(frozen=True)
class _Context:
    widget: Widget
    view: CatalogView
    state: ShopperState
    customer_id: str | None
    context_sku: str | None
    ok: Callable[[str], bool]
    pool: int
    excluded: tuple[frozenset[str], frozenset[str], frozenset[str]]  # hidden, out of stock, rest
    allowed: frozenset[str]
    segment: str | None = None  # the customer's RFM segment (read when the widget needs it)
    model: RecModelLike | None = None  # the champion, or an experiment variant's model


class _Ask(NamedTuple):
    """One request, as the champion and a shadowing challenger both answer it."""

    widget: Widget
    view: CatalogView
    state: ShopperState
    customer_id: str | None
    context_sku: str | None
    category: str | None
    k: int


class Recommender:
    def __init__(
        self,
        shopper: ShopperPort,
        catalog: CatalogCache,
        widgets: WidgetStore,
        log: RecommendationLog,
        model: RecModelLike | None = None,
        segments: CustomerSegments | None = None,
        trials: RecTrials[RecModelLike] | None = None,
        shadow_log: ShadowLog | None = None,
        name: str = "recs",
    ) -> None:
        self.trials = trials  # running experiments on widgets and on the model
        self.segments = segments  # RFM segments, for widget audiences and promotions
        self.shopper = shopper
        self.catalog = catalog
        self.widgets = widgets
        self.log = log
        self.shadow_log = shadow_log
        self.rollout: Rollout[RecModelLike] = Rollout(name, model)
        self._allow_cache: dict[tuple[int, int, frozenset[str]], I64] = {}
        self._ids_cache: dict[tuple[int, ...], tuple[tuple[frozenset[str], ...], I64]] = {}

    @property
    def model(self) -> RecModelLike | None:
        """The champion."""
        return self.rollout.champion

    def use_model(self, model: RecModelLike | None) -> None:
        """A new champion; the challenger and its rollout stay."""
        self.use_rollout(self.rollout.with_champion(model))

    def use_rollout(self, rollout: Rollout[RecModelLike]) -> None:
        self.rollout = rollout  # one swap: requests in flight keep the models they read
        self._allow_cache.clear()
        self._ids_cache.clear()

    def recommend(
        self,
        *,
        customer_id: str | None,
        widget: str | Widget = "home",
        k: int | None = None,
        category: str | None = None,
        context_sku: str | None = None,
        session_id: str | None = None,
        now: float | None = None,
        log: bool = True,
        channel: str | None = None,
    ) -> Recommendation:
        w = widget if isinstance(widget, Widget) else self.widgets.get(widget)
        rollout = self.rollout
        model, answered_by = rollout.answer(customer_id or session_id)
        role: str = answered_by
        trial, fell_back = None, False
        if self.trials is not None and not isinstance(widget, Widget):
            chosen = self.trials.choose(w, model, customer_id, session_id, log=log)
            if chosen.model is not model:
                role = "experiment"  # an experiment's variant model answers
            w, model, trial, fell_back = (
                chosen.widget,
                chosen.model,
                chosen.experiment,
                chosen.degraded,
            )
        k = w.k if k is None else k
        if not 1 <= k <= MAX_K:
            raise ValidationError(f"k must be 1 to {MAX_K}", field="k")
        view = self.catalog.view()
        if context_sku is not None and context_sku not in view.category:
            raise ValidationError(
                f"unknown sku {context_sku!r}", field="context_sku", code="unknown_sku"
            )
        scope = category or (view.category.get(context_sku) if context_sku else None)
        state = self.shopper.state(
            customer_id=customer_id,
            session_id=session_id,
            category=scope,
            now=time.time() if now is None else now,
        )
        ask = _Ask(w, view, state, customer_id, context_sku, category, k)
        items = self._answer(ask, model)
        rec = Recommendation(
            recommendation_id=new_id("rec"),
            widget=w.name,
            customer_id=customer_id,
            session_id=session_id,
            context_sku=context_sku,
            items=tuple(items),
            model_version=model.version if model else None,
            degraded=state.degraded or model is None or fell_back,
            channel=channel,
            experiment=dict(trial) if trial else None,
        )
        if log:
            self.log.append(rec)
            challenger = rollout.shadow()
            if challenger is not None and role == "champion" and self.shadow_log is not None:
                self._shadow(rec, challenger, ask, customer_id or session_id)
        return rec

    def _answer(self, ask: _Ask, model: RecModelLike | None) -> list[RecItem]:
        w = ask.widget
        ctx = self._context(ask, model)
        if w.needs_segment and self.segments is not None:
            ctx = replace(ctx, segment=self.segments.rfm(ask.customer_id))
        steps = [w.strategy, *w.fallback] if w.serves(ctx.segment) else list(w.fallback)
        candidates = self._candidates(ctx, steps, ask.k)
        return self._promote(ctx, candidates, ask.k)

    def _shadow(
        self,
        rec: Recommendation,
        challenger: RecModelLike,
        ask: _Ask,
        unit: str | None,
    ) -> None:
        """The challenger answers the same request; logged beside, never shown."""
        assert self.shadow_log is not None
        try:
            items = self._answer(ask, challenger)
            self.shadow_log.append(
                ShadowRecord(
                    model=self.rollout.name,
                    request_id=rec.recommendation_id,
                    unit=unit,
                    champion_version=rec.model_version or "none",
                    challenger_version=challenger.version,
                    champion={"widget": rec.widget, "items": [i.sku for i in rec.items]},
                    challenger={"widget": rec.widget, "items": [i.sku for i in items]},
                )
            )
        except Exception:  # a broken challenger must not break a widget
            logger.exception("shadow recommendations by %s failed", challenger.version)

    def warm_up(self) -> None:
        """Answer every widget once before the first request (catalogue and widget snapshots,
        shopper state, the index, filters, widget rules), logging nothing; a database not
        there yet is left to the first request."""
        try:
            view = self.catalog.view()
            sku = next(iter(sorted(view.category)), None)
            for name in sorted(self.widgets.all()):
                self.recommend(customer_id="warm-up", widget=name, context_sku=sku, log=False)
        except CartwiseError as exc:
            logger.warning("recommendations warm-up skipped: %s", exc.message)

    # --- one request -----------------------------------------------------------------------
    def _context(self, ask: _Ask, model: RecModelLike | None) -> _Context:
        w, view, state, customer_id, context_sku, category, k = ask
        out_of_stock = state.out_of_stock if w.in_stock_only else frozenset()
        extra = (
            {t.sku for t in state.recent if t.type in PURCHASED} if w.exclude_purchased else set()
        )
        if context_sku:
            extra.add(context_sku)
        allowed = set(w.categories) | ({category} if category else set())
        unavailable = view.unavailable

        def ok(sku: str) -> bool:
            if sku in extra or sku in unavailable or sku in out_of_stock:
                return False
            cat = view.category.get(sku)
            return cat is not None and (not allowed or cat in allowed)

        return _Context(
            w,
            view,
            state,
            customer_id,
            context_sku,
            ok,
            pool=3 * k,
            excluded=(unavailable, out_of_stock, frozenset(extra)),
            allowed=frozenset(allowed),
            model=model,
        )

    def _candidates(self, ctx: _Context, steps: Iterable[str], k: int) -> list[RecItem]:
        """Items of the strategy, then of each fallback in turn, until ``k`` (twice that when
        promotions may displace some) pass the filters and the diversity limit."""
        want = 2 * k if ctx.widget.promotion_share > 0 else k
        per_category = ctx.widget.max_per_category
        out: list[RecItem] = []
        seen: set[str] = set()
        counts: dict[str, int] = {}
        for step in steps:
            if len(out) >= want:
                break
            found = [i for i in self._step(ctx, step) if i.sku not in seen and ctx.ok(i.sku)]
            for item in _boosted(found, ctx.view, ctx.widget.boosts):
                seen.add(item.sku)
                cat = ctx.view.category.get(item.sku, "")
                if per_category is not None and counts.get(cat, 0) >= per_category:
                    continue
                counts[cat] = counts.get(cat, 0) + 1
                out.append(item)
        return out

    def _step(self, ctx: _Context, step: str) -> list[RecItem]:
        model = ctx.model
        if step == "trending_category":
            return _trend(ctx.state.trending)
        if step == "trending":
            # the store's trending SKUs right now, topped up with the model's recent popularity
            live = _trend(ctx.state.trending_all)  # may hold SKUs the filters drop: always top up
            if model is None:
                return live
            ids, scores = model.popular(ctx.pool * 4)
            floor = min((i.score for i in live), default=1.0)
            scale = floor / max(float(scores[0]), 1e-9) if len(scores) else 0.0
            return live + self._items(model, ids, scores * scale, "trending")
        if model is None:
            return []
        if step == "personalized":
            vector = self._vector(model, ctx)
            if vector is None:
                return []
            exclude, allow = self._filters(model, ctx)
            ids, scores = model.search(vector, ctx.pool, exclude=exclude, allow=allow)
            return self._items(model, ids, scores, "personalized")
        anchor = model.item_id(ctx.context_sku) if ctx.context_sku else None
        if anchor is None:
            return []
        if step == "similar":
            exclude, _ = self._filters(model, ctx)
            ids, scores = model.similar(anchor, ctx.pool, exclude=exclude)
            return self._items(model, ids, scores, "similar")
        if step == "bought_together":
            ids, scores = model.bought_together(anchor)
            return self._items(model, ids, scores, "similar")
        return []

    def _vector(self, model: RecModelLike, ctx: _Context) -> F32 | None:
        weights: dict[int, float] = {}
        for touch in ctx.state.recent[:RECENT_FOLD]:
            item = model.item_id(touch.sku)
            if item is not None:
                weights[item] = weights.get(item, 0.0) + WEIGHTS.get(touch.type, 1.0)
        base = model.user_vector(ctx.customer_id) if ctx.customer_id else None
        if not weights:
            return base
        ids = np.fromiter(weights, dtype=np.int64, count=len(weights))
        w = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
        return model.fold_in(ids, w, base)

    def _filters(self, model: RecModelLike, ctx: _Context) -> tuple[I64 | None, I64 | None]:
        unavailable, out_of_stock, extra = ctx.excluded
        static = self._ids(model, unavailable, out_of_stock)
        more = [i for sku in extra if (i := model.item_id(sku)) is not None]
        ids = np.concatenate([static, np.array(more, dtype=np.int64)]) if more else static
        allow = self._allow(model, ctx.view, ctx.allowed) if ctx.allowed else None
        return (ids if len(ids) else None), allow

    def _ids(self, model: RecModelLike, *sets: frozenset[str]) -> I64:
        """Item ids of SKU sets that stay the same object between reloads (the catalogue
        snapshot, the out-of-stock set), computed once per combination."""
        key = (id(model), *(id(s) for s in sets))
        cached = self._ids_cache.get(key)
        if cached is None or cached[0] != sets:
            ids = {i for s in sets for sku in s if (i := model.item_id(sku)) is not None}
            if len(self._ids_cache) > 64:
                self._ids_cache.clear()
            cached = self._ids_cache[key] = (sets, np.array(sorted(ids), dtype=np.int64))
        return cached[1]

    def _allow(self, model: RecModelLike, view: CatalogView, cats: frozenset[str]) -> I64:
        key = (id(model), id(view), cats)
        cached = self._allow_cache.get(key)
        if cached is None:
            ids = [
                i
                for sku, cat in view.category.items()
                if cat in cats and (i := model.item_id(sku)) is not None
            ]
            cached = np.array(sorted(ids), dtype=np.int64)
            if len(self._allow_cache) > 256:
                self._allow_cache.clear()
            self._allow_cache[key] = cached
        return cached

    @staticmethod
    def _items(model: RecModelLike, ids: I64, scores: F32, reason: str) -> list[RecItem]:
        return [
            RecItem(model.sku(int(i)), float(s), reason)
            for i, s in zip(ids, scores, strict=True)
            if i >= 0
        ]

    def _promote(self, ctx: _Context, items: list[RecItem], k: int) -> list[RecItem]:
        w = ctx.widget
        slots = round(w.promotion_share * k)
        if slots <= 0 or not (w.promoted_skus or w.promoted_category or w.promotions):
            return items[:k]
        chosen = {i.sku for i in items}
        promoted = [sku for sku in self._promoted_pool(ctx) if sku not in chosen and ctx.ok(sku)][
            :slots
        ]
        rest = [i for i in items if i.sku not in promoted][: k - len(promoted)]
        out = list(rest)
        step = max(1, len(rest) // max(1, len(promoted)))
        for n, sku in enumerate(promoted):  # spread promoted items through the list
            out.insert(min(len(out), n * (step + 1)), RecItem(sku, 0.0, "promoted"))
        return out[:k]

    def _promoted_pool(self, ctx: _Context) -> list[str]:
        """The widget's promoted SKUs, then its category's; then each promotion shown to the
        customer's segment, in order (SKUs, then its category's)."""
        w = ctx.widget
        sets = [(w.promoted_skus, w.promoted_category)]
        sets += [(p.skus, p.category) for p in w.promotions if p.shown_to(ctx.segment)]
        rank: dict[str, int] | None = None
        pool: list[str] = []
        for skus, category in sets:
            pool += skus
            if category:
                if rank is None:
                    rank = {s: r for r, s in enumerate(s for s, _ in ctx.state.trending_all)}
                ranks = rank
                in_cat = [s for s, c in ctx.view.category.items() if c == category]
                pool += sorted(in_cat, key=lambda s: (ranks.get(s, len(ranks)), s))
        return list(dict.fromkeys(pool))


def _trend(ranked: list[tuple[str, float]]) -> list[RecItem]:
    return [RecItem(sku, score, "trending") for sku, score in ranked]


def _boosted(items: list[RecItem], view: CatalogView, boosts: Any) -> list[RecItem]:
    if not boosts:
        return items
    out = [
        RecItem(i.sku, i.score * boosts.get(view.category.get(i.sku, ""), 1.0), i.reason)
        for i in items
    ]
    return sorted(out, key=lambda i: -i.score)
