"""Pricing: quotes for product pages and carts, batch repricing, suggestions, competitor feeds.

A SKU's *price* is set by repricing (the batch kernel over the whole catalogue, or over named
SKUs): demand, inventory, competitor and elasticity rules compute it, guardrails bound it, and
every change is audited; ``suggest`` rules leave it for an admin.  A *quote* reads that price
from memory and adds what belongs to one request: the customer's segment discount (within
floor, MAP and ceiling) and the currency (FX table, then charm rounding again).  A quote is
honoured until ``valid_until``; it changes no price.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.commerce.schema import Channel
from engine.crm.profiles import NO_PROFILE, CustomerProfile, CustomerSegments
from engine.errors import CartwiseError, Conflict, ValidationError
from engine.experiments.hooks import PriceTrials
from engine.pricing import kernels as k
from engine.pricing import ledger
from engine.pricing.config import CURRENCY, PricingConfig, Snapshot
from engine.pricing.elasticity import Elasticities
from engine.pricing.ledger import Change
from engine.pricing.listings import Listing, PriceBook, cents, day_of, load_listings, money
from engine.pricing.ports import CompetitorPrice, MarketInputs
from engine.pricing.rules import PricingRule
from engine.reloading import Reloading

log = logging.getLogger(__name__)
MAX_QUOTE_SKUS = 100
MAX_FEED_ROWS = 10_000
CLOCK_SKEW_S = 300


class UnknownSku(ValidationError):
    code = "unknown_sku"


@dataclass(frozen=True, slots=True)
class Quote:
    sku: str
    price: float
    list_price: float
    currency: str
    strategy: str
    rule: str | None
    bounded_by: str | None
    valid_until: datetime
    experiment: dict[str, str] | None = None  # {key, variant} of a pricing-rule experiment


@dataclass
class RepriceResult:
    evaluated: int = 0
    changed: int = 0
    suggested: int = 0
    unchanged: int = 0
    skipped: int = 0  # moved by someone else between reading and writing
    bounded: dict[str, int] = field(default_factory=dict)
    strategies: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    degraded: bool = False
    kernel_ms: float = 0.0
    duration_ms: float = 0.0
    changes: list[dict[str, Any]] = field(default_factory=list)  # the first few, for a look

    def public(self) -> dict[str, Any]:
        return asdict(self)


def _channels(s: Session) -> tuple[int, Any]:
    return tuple(s.execute(select(func.count(), func.max(Channel.created_at))).one())  # type: ignore[return-value]


def _load_channels(s: Session, _stamp: object) -> dict[str, str]:
    return {str(cid): str(cur) for cid, cur in s.execute(select(Channel.id, Channel.currency))}


class PricingService:
    def __init__(
        self,
        db: Database,
        config: PricingConfig,
        market: MarketInputs,
        *,
        book: PriceBook | None = None,
        elasticities: Elasticities | None = None,
        segments: CustomerSegments | None = None,
        quote_ttl_s: int = 900,
        competitor_ttl_s: int = 2 * 86_400,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        trials: PriceTrials | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.trials = trials  # running experiments on segment rules
        self.market = market
        self.book = book or PriceBook(db)
        self.elasticities = elasticities or Elasticities(db)
        self.segments = segments or CustomerSegments(db)
        self.quote_ttl_s = quote_ttl_s
        self.competitor_ttl_s = competitor_ttl_s
        self.clock = clock
        self._channels = Reloading(db, _channels, _load_channels, poll_s=30.0)

    def warm_up(self) -> None:
        """Before the first request: compile the kernels (or load numba's cache), read the
        rules, the FX table, the channels and the price book, and run one quote."""
        k.warm_up()
        try:
            self.config.snapshot()
            self._channels.get()
            customer = self.segments.warm_up()
            book = self.book.get()
            active = next((listing.sku for listing in book.values() if listing.active), None)
            if active is not None:
                self.quote([active], customer_id=customer)
        except CartwiseError as exc:  # the database is not there yet: the first request loads
            log.warning("pricing warm-up skipped: %s", exc.message)

    # --- quotes --------------------------------------------------------------------------------
    def quote(
        self,
        skus: Sequence[str],
        *,
        customer_id: str | None = None,
        channel: str | None = None,
        currency: str | None = None,
    ) -> list[Quote]:
        if not skus:
            raise ValidationError("name at least one sku", field="skus")
        if len(skus) > MAX_QUOTE_SKUS:
            raise ValidationError(f"at most {MAX_QUOTE_SKUS} skus per quote", field="skus")
        now = self.clock()
        snap = self.config.snapshot()
        want, currency_field = self._currency(currency, channel)
        profile = self.segments.get(customer_id) if customer_id else NO_PROFILE
        seg_rules = snap.rules.segment_rules() if customer_id else []
        seg_rules, trials = (
            self.trials.rules(seg_rules, customer_id)
            if self.trials is not None and customer_id
            else (seg_rules, [])
        )
        listings = self._listings(skus)
        valid_until = now + timedelta(seconds=self.quote_ttl_s)
        out = []
        for i, sku in enumerate(skus):
            listing = listings.get(sku)
            if listing is None:
                raise UnknownSku(f"unknown sku {sku!r}", field=f"skus[{i}]")
            if not listing.active:
                raise ValidationError(
                    f"sku {sku!r} is not for sale", field=f"skus[{i}]", code="not_for_sale"
                )
            out.append(
                self._quote_one(
                    listing, snap, want, currency_field, seg_rules, profile, valid_until
                )
            )
        if self.trials is not None and customer_id and trials:

            def scope(q: Quote) -> tuple[str, str | None, str | None]:
                return q.sku, listings[q.sku].category, listings[q.sku].brand

            out = self.trials.annotate(out, scope, trials, customer_id)
        return out

    def _listings(self, skus: Sequence[str]) -> Mapping[str, Listing]:
        """The price book; read again at once when it lacks one of ``skus`` (a product made a
        moment ago, maybe on another replica), instead of within the polling interval."""
        listings = self.book.get()
        if any(sku not in listings for sku in skus):
            self.book.invalidate()
            listings = self.book.get()
        return listings

    def _currency(self, currency: str | None, channel: str | None) -> tuple[str | None, str]:
        if currency is not None:
            if not CURRENCY.match(currency):
                raise ValidationError("a currency is three capital letters", field="currency")
            return currency, "currency"
        if channel is not None:
            channels = self._channels.get()
            if channel not in channels:  # made a moment ago? look again before refusing
                self._channels.invalidate()
                channels = self._channels.get()
            if channel not in channels:
                raise ValidationError(
                    f"unknown channel {channel!r}", field="channel", code="unknown_channel"
                )
            return channels[channel], "channel"
        return None, "currency"

    def _quote_one(
        self,
        listing: Listing,
        snap: Snapshot,
        want: str | None,
        currency_field: str,
        seg_rules: Sequence[PricingRule],
        profile: CustomerProfile,
        valid_until: datetime,
    ) -> Quote:
        currency = want or listing.currency
        rate = (
            1.0
            if currency == listing.currency
            else snap.rate(listing.currency, currency, currency_field)
        )
        discount, rule_name = 0.0, listing.rule
        for r in seg_rules:
            if r.matches(listing.sku, listing.category, listing.brand):
                discount = r.discount(profile.segment, profile.tier, profile.rfm)
                if discount > 0:
                    rule_name = r.name
                    break
        rows = snap.rules.guard_rows
        g = rows.get(rule_name if discount > 0 else listing.rule, rows[None])
        adjusted = discount > 0 or rate != 1.0
        if not adjusted:
            g = g.copy()
            g[k.G_CHARM] = 0  # the stored price was rounded when it was set
        price, bound = k.quote_one(
            round(listing.price_c * rate),
            discount,
            round(listing.list_c * rate),
            math.ceil(listing.cost_c * rate),
            math.ceil(listing.map_c * rate),
            g,
        )
        bounded_by = k.BOUND_NAMES[bound]
        if bounded_by is None and not adjusted:
            bounded_by = listing.bounded_by
        return Quote(
            sku=listing.sku,
            price=price / 100,
            list_price=round(listing.list_c * rate) / 100,
            currency=currency,
            strategy="segment" if discount > 0 else listing.strategy,
            rule=rule_name,
            bounded_by=bounded_by,
            valid_until=valid_until,
        )

    # --- repricing -----------------------------------------------------------------------------
    def reprice(
        self, skus: Sequence[str] | None = None, *, actor: str = "reprice", dry_run: bool = False
    ) -> RepriceResult:
        """Reprice the catalogue (or ``skus``): apply ``auto`` rules' prices, leave ``suggest``
        rules' as suggestions, audit every change."""
        started = time.perf_counter()
        now = self.clock()
        snap = self.config.snapshot()
        with self.db.transaction(readonly=True) as s:
            listings = load_listings(s, skus)
        if skus is not None:
            known = {listing.sku for listing in listings}
            for i, sku in enumerate(skus):
                if sku not in known:
                    raise UnknownSku(f"unknown sku {sku!r}", field=f"skus[{i}]")
        listings = [listing for listing in listings if listing.active]
        result = RepriceResult(dry_run=dry_run, evaluated=len(listings))
        if not listings:
            result.duration_ms = (time.perf_counter() - started) * 1e3
            return result
        batch = self._batch(listings, snap, now)
        result.degraded = batch.degraded
        t = time.perf_counter()
        batch.run()
        result.kernel_ms = (time.perf_counter() - t) * 1e3

        auto: list[Change] = []
        suggested: list[Change] = []
        today = day_of(now)
        for i, listing in enumerate(listings):
            new_c, bound = int(batch.price[i]), k.BOUND_NAMES[int(batch.bound[i])]
            rule = batch.rule_of(i)
            strategy = rule.strategy if rule else "list"
            result.strategies[strategy] = result.strategies.get(strategy, 0) + 1
            if bound:
                result.bounded[bound] = result.bounded.get(bound, 0) + 1
            if new_c == listing.price_c:
                continue
            change = Change(
                sku=listing.sku,
                old_c=listing.price_c,
                new_c=new_c,
                currency=listing.currency,
                rule=rule.name if rule else None,
                strategy=strategy,
                bounded_by=bound,
                reason=batch.explain(i, rule),
                open_c=listing.opening(today),
            )
            (suggested if rule is not None and rule.mode == "suggest" else auto).append(change)
        result.changes = [
            {
                "sku": c.sku,
                "old": money(c.old_c),
                "new": money(c.new_c),
                "mode": "suggest" if c in suggested else "auto",
                "rule": c.rule,
                "bounded_by": c.bounded_by,
                "reason": c.reason,
            }
            for c in (auto + suggested)[:20]
        ]
        if dry_run:
            result.changed, result.suggested = len(auto), len(suggested)
        else:
            with self.db.transaction() as s:
                result.changed = ledger.apply_changes(s, auto, actor=actor, now=now)
                result.suggested = ledger.suggest(s, suggested, now=now) if suggested else 0
            self.book.invalidate()
        result.skipped = len(auto) - result.changed
        result.unchanged = result.evaluated - len(auto) - len(suggested)
        result.duration_ms = (time.perf_counter() - started) * 1e3
        return result

    def _batch(self, listings: Sequence[Listing], snap: Snapshot, at: datetime) -> _Batch:
        now = at.timestamp()
        skus = [listing.sku for listing in listings]
        cats = [listing.category for listing in listings]
        n = len(skus)
        inputs = np.full((k.N_INPUTS, n), np.nan, dtype=np.float32)
        activity, degraded_a = self.market.activity(skus, now)
        inputs[k.I_UNITS_1D : k.I_VIEWS_7D + 1] = activity
        stock, degraded_s = self.market.stock(skus)
        inputs[k.I_STOCK] = stock
        comps, degraded_c = self.market.competitor_prices(skus, now, self.competitor_ttl_s)
        for i, seen in enumerate(comps):
            if seen:
                values = [c.cents for c in seen]
                inputs[k.I_COMP_MIN, i] = min(values)
                inputs[k.I_COMP_AVG, i] = sum(values) / len(values)
        # usable inputs per strategy; an elasticity rule resolves with its own threshold
        usable: dict[str, np.ndarray] = {
            "demand": ~np.isnan(inputs[k.I_UNITS_1D]) & ~np.isnan(inputs[k.I_UNITS_7D]),
            "inventory": ~np.isnan(inputs[k.I_STOCK]),
            "competitor": ~np.isnan(inputs[k.I_COMP_MIN]),
        }
        fit = self.elasticities.latest()
        elasticity: dict[str, np.ndarray] = {}
        for rule in snap.rules.base_rules():
            if rule.strategy == "elasticity":
                resolved = np.asarray(
                    fit.resolve(skus, cats, float(rule.params["max_std_err"])), dtype=np.float32
                )
                elasticity[rule.name] = resolved
                usable[rule.name] = ~np.isnan(resolved)
        rules, assigned = snap.rules.assign(
            skus, cats, [listing.brand for listing in listings], usable
        )
        for row, rule in enumerate(rules):
            if rule.name in elasticity:
                mine = assigned == row
                inputs[k.I_ELASTICITY, mine] = elasticity[rule.name][mine]
        today = day_of(at)
        since = np.array([listing.since_change_s(at) for listing in listings], dtype=np.int64)
        return _Batch(
            listings=listings,
            rules=rules,
            assigned=assigned,
            inputs=inputs,
            since=since,
            open_c=np.array([listing.opening(today) for listing in listings], dtype=np.int32),
            tables=snap.rules.tables(rules),
            degraded=degraded_a or degraded_s or degraded_c,
        )

    # --- suggestions ---------------------------------------------------------------------------
    def suggestions(
        self, *, status: str | None = "pending", sku: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        with self.db.transaction(readonly=True) as s:
            return ledger.suggestions(s, status=status, sku=sku, limit=limit)

    def approve(self, suggestion_id: str, *, actor: str, note: str | None = None) -> dict[str, Any]:
        """Apply a pending suggestion, if the price is still the one it started from and the
        guardrails (as they are now) still allow the suggested price."""
        now = self.clock()
        snap = self.config.snapshot()
        with self.db.transaction() as s:
            row = ledger.get_suggestion(s, suggestion_id)
            if row.status != "pending":
                raise Conflict(f"the suggestion is {row.status}", code="suggestion_decided")
            (listing,) = load_listings(s, [row.sku])
            suggested = cents(row.suggested_price)
            if listing.price_c != cents(row.current_price):
                raise Conflict(
                    f"the price moved to {money(listing.price_c)} since this suggestion; "
                    "reprice again",
                    code="suggestion_stale",
                )
            g = snap.rules.guard_rows.get(row.rule, snap.rules.guard_rows[None])
            today = day_of(now)
            allowed, _ = k.guard(
                float(suggested),
                float(listing.list_c),
                float(listing.cost_c),
                float(listing.map_c),
                float(listing.price_c),
                float(listing.opening(today)),
                listing.since_change_s(now),
                *(float(x) for x in g),
            )
            if int(allowed) != suggested:
                raise Conflict(
                    f"the guardrails now allow {money(int(allowed))}, not the suggested "
                    f"{money(suggested)}; reprice again",
                    code="suggestion_out_of_bounds",
                )
            change = Change(
                sku=row.sku,
                old_c=listing.price_c,
                new_c=suggested,
                currency=row.currency,
                rule=row.rule,
                strategy=row.strategy,
                bounded_by=row.bounded_by,
                reason=f"approved suggestion: {row.reason}",
                open_c=listing.opening(today),
                suggestion_id=row.id,
            )
            if not ledger.apply_changes(s, [change], actor=actor, now=now):
                raise Conflict("the price moved meanwhile; reprice again", code="suggestion_stale")
            row.status, row.decided_at, row.decided_by, row.note = "approved", now, actor, note
            out = ledger.suggestion_dict(row)
        self.book.invalidate()
        return out

    def reject(self, suggestion_id: str, *, actor: str, note: str | None = None) -> dict[str, Any]:
        now = self.clock()
        with self.db.transaction() as s:
            row = ledger.get_suggestion(s, suggestion_id)
            if row.status != "pending":
                raise Conflict(f"the suggestion is {row.status}", code="suggestion_decided")
            row.status, row.decided_at, row.decided_by, row.note = "rejected", now, actor, note
            return ledger.suggestion_dict(row)

    # --- audit ---------------------------------------------------------------------------------
    def history(
        self, sku: str, *, limit: int = 50, before: int | None = None
    ) -> list[dict[str, Any]]:
        if sku not in self._listings([sku]):
            raise UnknownSku(f"unknown sku {sku!r}", field="sku")
        with self.db.transaction(readonly=True) as s:
            return ledger.history(s, sku, limit=limit, before=before)

    # --- competitor feeds ----------------------------------------------------------------------
    def put_competitor_prices(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Validate a feed (all or nothing: a bad row is a 422 naming ``[i].field``), convert
        each price to its SKU's catalogue currency, keep it in the online store with a TTL."""
        if not rows:
            raise ValidationError("send at least one price", field="body")
        if len(rows) > MAX_FEED_ROWS:
            raise ValidationError(f"at most {MAX_FEED_ROWS} prices per call", field="body")
        snap = self.config.snapshot()
        listings = self._listings([str(row["sku"]) for row in rows])
        now = self.clock().timestamp()
        keep: list[CompetitorPrice] = []
        too_old = 0
        for i, row in enumerate(rows):
            sku = row["sku"]
            listing = listings.get(sku)
            if listing is None:
                raise UnknownSku(f"unknown sku {sku!r}", field=f"[{i}].sku")
            price = float(row["price"])
            if not math.isfinite(price) or price <= 0:
                raise ValidationError("price must be positive", field=f"[{i}].price")
            rate = snap.rate(row["currency"], listing.currency, f"[{i}].currency")
            observed: datetime = row["observed_at"]
            at = observed.timestamp()
            if at > now + CLOCK_SKEW_S:
                raise ValidationError("observed_at is in the future", field=f"[{i}].observed_at")
            if at < now - self.competitor_ttl_s:
                too_old += 1
                continue
            keep.append(CompetitorPrice(sku, str(row["competitor"]), round(price * rate * 100), at))
        stored = self.market.put_competitor_prices(keep, self.competitor_ttl_s) if keep else 0
        return {
            "received": len(rows),
            "stored": stored,
            "older_than_kept": len(keep) - stored,
            "expired": too_old,
        }

    def competitor_prices(self, sku: str) -> list[dict[str, Any]]:
        listing = self._listings([sku]).get(sku)
        if listing is None:
            raise UnknownSku(f"unknown sku {sku!r}", field="sku")
        now = self.clock().timestamp()
        (seen,), _ = self.market.competitor_prices([sku], now, self.competitor_ttl_s)
        return [
            {
                "competitor": c.competitor,
                "price": c.cents / 100,
                "currency": listing.currency,
                "observed_at": datetime.fromtimestamp(c.observed_at, UTC),
            }
            for c in sorted(seen, key=lambda c: c.cents)
        ]


@dataclass
class _Batch:
    """One reprice's arrays, grouped by rule for the kernel and put back in listing order."""

    listings: Sequence[Listing]
    rules: list[PricingRule]
    assigned: np.ndarray
    inputs: np.ndarray
    since: np.ndarray
    open_c: np.ndarray
    tables: tuple[np.ndarray, np.ndarray, np.ndarray]
    degraded: bool
    price: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    bound: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    target: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def run(self) -> None:
        ls = self.listings
        order = np.argsort(self.assigned, kind="stable")
        starts, seg_rule = k.segments(self.assigned[order])

        def col(values: list[int]) -> np.ndarray:
            return np.asarray(values, dtype=np.int32)[order]

        n = len(ls)
        target, price, bound = np.zeros(n), np.zeros(n, np.int32), np.zeros(n, np.int8)
        strategies, params, guards = self.tables
        k.reprice(
            starts,
            seg_rule,
            col([x.list_c for x in ls]),
            col([x.cost_c for x in ls]),
            col([x.map_c for x in ls]),
            col([x.price_c for x in ls]),
            self.open_c[order],
            self.since[order],
            np.ascontiguousarray(self.inputs[:, order]),
            strategies,
            params,
            guards,
            target,
            price,
            bound,
        )
        back = np.empty(n, dtype=np.int64)
        back[order] = np.arange(n)
        self.target, self.price, self.bound = target[back], price[back], bound[back]

    def rule_of(self, i: int) -> PricingRule | None:
        row = int(self.assigned[i])
        return None if row < 0 else self.rules[row]

    def explain(self, i: int, rule: PricingRule | None) -> str:
        """Why this price: the strategy's inputs, its target, and the bound that moved it."""
        x = self.inputs[:, i].astype(float)
        strategy = rule.strategy if rule else "list"
        if strategy == "demand":
            why = (
                f"demand: {x[k.I_UNITS_1D]:g} sold today vs {x[k.I_UNITS_7D] / 7:.1f}/day "
                f"over 7 days, {x[k.I_VIEWS_1D]:g} views today"
            )
        elif strategy == "inventory":
            daily = max(x[k.I_UNITS_7D] / 7 if math.isfinite(x[k.I_UNITS_7D]) else 0.0, 0.1)
            why = f"inventory: {x[k.I_STOCK]:g} units, {x[k.I_STOCK] / daily:.0f} days of cover"
        elif strategy == "competitor":
            why = (
                f"competitor: cheapest {x[k.I_COMP_MIN] / 100:.2f}, "
                f"average {x[k.I_COMP_AVG] / 100:.2f}"
            )
        elif strategy == "elasticity":
            why = f"elasticity {x[k.I_ELASTICITY]:.2f}: profit-maximising price"
        else:
            why = "no rule applies: list price within the default guardrails"
        bound = k.BOUND_NAMES[int(self.bound[i])]
        text = f"{why}; target {self.target[i] / 100:.2f}, price {self.price[i] / 100:.2f}"
        return text + (f", bounded by {bound}" if bound else "")
