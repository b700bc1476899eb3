"""Pricing in-process on the real parts: SQL (SQLite and PostgreSQL) for products, prices, the
audit trail and suggestions; Redis for sales velocity, stock and competitor prices."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.errors import Conflict, ValidationError
from engine.events import MessageBus
from engine.pricing.config import PricingConfig
from engine.pricing.elasticity import Elasticities, Estimate
from engine.pricing.listings import PriceBook
from engine.pricing.schedule import RepriceSchedule
from engine.pricing.schema import PriceChange, SkuPrice
from engine.pricing.service import PricingService
from features.backends import RedisBackend
from features.definitions import Entity, FeatureEvent, Source
from features.pricing import PricingInputs
from features.store import FeatureStore

pytestmark = pytest.mark.integration
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_PRICING", "redis://127.0.0.1:6379/6")
T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def client(flushed_redis: Callable[[str], Any]) -> Iterator[redis.Redis]:
    with flushed_redis(URL) as c:
        yield c


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pricing(db: Database, client: redis.Redis, clock: Clock) -> PricingService:
    catalog = Catalog(db, MessageBus())
    for sku, cat, price, cost, map_price in [
        ("HOT", "toys", "20.00", "10.00", None),
        ("COLD", "toys", "20.00", "10.00", None),
        ("MAPPED", "toys", "50.00", "20.00", "45.00"),
        ("PHONE", "phones", "400.00", "250.00", None),
    ]:
        catalog.create_product(
            sku=sku,
            title=sku.title(),
            category=cat,
            list_price=Decimal(price),
            cost=Decimal(cost),
            map_price=Decimal(map_price) if map_price else None,
            currency="EUR",
        )
    catalog.create_customer(
        id="gold-1", email="g@example.com", attributes={"segment": "x", "loyalty_tier": "gold"}
    )
    catalog.create_customer(id="plain-1", email="p@example.com")
    catalog.create_channel(id="uk", name="UK", currency="GBP", country="GB")
    config = PricingConfig(db, poll_s=0)
    config.seed_defaults()
    store = FeatureStore(RedisBackend(client))
    service = PricingService(
        db,
        config,
        PricingInputs(store, client),
        book=PriceBook(db, poll_s=0),
        elasticities=Elasticities(db, poll_s=0),
        clock=clock,
    )
    service.warm_up()
    return service


def sales(client: redis.Redis, sku: str, category: str, units: int, at: datetime, n: int = 0):
    store = FeatureStore(RedisBackend(client))
    store.record(
        [
            FeatureEvent(
                f"{sku}-{at.timestamp()}-{i}",
                Source.INTERACTION,
                "order_line",
                at.timestamp() - i,
                {Entity.SKU: sku, Entity.CATEGORY: category},
                {"qty": 1},
                {"sku": sku},
            )
            for i in range(n, n + units)
        ]
    )


def price_of(db: Database, sku: str) -> Decimal | None:
    with db.transaction(readonly=True) as s:
        return s.scalar(select(SkuPrice.price).where(SkuPrice.sku == sku))


def audit_count(db: Database) -> int:
    with db.transaction(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(PriceChange)) or 0)


def test_demand_raises_a_fast_seller_within_the_daily_limit_and_audits_it(
    pricing: PricingService, client: redis.Redis, db: Database, clock: Clock
) -> None:
    pricing.config.put_rule(
        "demand",
        {"strategy": "demand", "params": {"velocity_weight": 0.5, "max_adjust_pct": 40}},
    )
    sales(client, "HOT", "toys", 7, T0 - timedelta(days=3))  # 1 a day over the week...
    sales(client, "HOT", "toys", 12, T0 - timedelta(minutes=5), n=100)  # ...12 today
    result = pricing.reprice()
    assert result.strategies == {"demand": 4}
    # +40 % wanted (the rule's max), 10 % a day allowed: 22.00 -> charm 21.99
    assert price_of(db, "HOT") == Decimal("21.99")
    (change,) = pricing.history("HOT")
    assert (change["old"], change["new"], change["rule"], change["actor"]) == (
        Decimal("20.00"),
        Decimal("21.99"),
        "demand",
        "reprice",
    )
    assert change["bounded_by"] == "change_limit"
    assert "12 sold today" in change["reason"]
    # a second run within the minimum interval holds every price and writes nothing
    before = audit_count(db)
    clock.advance(minutes=10)
    again = pricing.reprice()
    assert again.changed == 0 and audit_count(db) == before
    # the next day the limit counts from that day's opening price again
    clock.advance(days=1)
    sales(client, "HOT", "toys", 30, clock.now - timedelta(minutes=1), n=200)
    pricing.reprice()
    assert price_of(db, "HOT") == Decimal("23.99")  # +10 % of 21.99 = 24.18, charm down
    assert [c["new"] for c in pricing.history("HOT")] == [Decimal("23.99"), Decimal("21.99")]


def test_floor_and_map_bound_every_price(pricing: PricingService, db: Database) -> None:
    # no sales at all: demand wants list minus nothing; MAP 45.00 above the 22.00 floor
    pricing.config.put_rule(
        "all-in",
        {
            "strategy": "demand",
            "priority": 50,
            "guardrails": {"min_interval_minutes": 0, "ceiling_pct": 100},
        },
    )
    pricing.config.put_guardrails({"min_margin_pct": 10, "charm": ".99"})
    result = pricing.reprice()
    assert price_of(db, "MAPPED") == Decimal("49.99")
    # the cost rises above the price: the next reprice lifts it to the margin floor at once,
    # whatever the daily limit says (a floor is never crossed)
    with db.transaction() as s:
        from engine.commerce.schema import Product

        s.get(Product, "COLD").cost = Decimal("30.00")
    result = pricing.reprice(["COLD"])
    assert result.bounded == {"floor": 1}
    assert price_of(db, "COLD") == Decimal("33.00")  # 30 + 10 %; the charm would go below
    assert pricing.quote(["COLD"])[0].bounded_by == "floor"


def test_competitor_prices_make_suggestions_an_admin_decides(
    pricing: PricingService, db: Database, clock: Clock
) -> None:
    pricing.config.put_fx({"USD": 1.25})
    feed = [
        {
            "sku": "PHONE",
            "competitor": "acme",
            "price": 450.0,
            "currency": "USD",
            "observed_at": clock.now - timedelta(hours=1),
        },  # 360 EUR
        {
            "sku": "PHONE",
            "competitor": "zap",
            "price": 380.0,
            "currency": "EUR",
            "observed_at": clock.now - timedelta(hours=2),
        },
    ]
    assert pricing.put_competitor_prices(feed)["stored"] == 2
    # an older observation of the same competitor does not replace the newer one
    stale = {**feed[1], "price": 300.0, "observed_at": clock.now - timedelta(hours=5)}
    assert pricing.put_competitor_prices([stale]) == {
        "received": 1,
        "stored": 0,
        "older_than_kept": 1,
        "expired": 0,
    }
    assert [p["price"] for p in pricing.competitor_prices("PHONE")] == [360.0, 380.0]

    result = pricing.reprice(["PHONE"])
    assert (result.changed, result.suggested) == (0, 1)
    assert price_of(db, "PHONE") is None  # suggest mode: nothing applied
    (suggestion,) = pricing.suggestions()
    # beat the cheapest (360) by 1 % = 356.40; 10 % a day from 400 allows 360 at the lowest
    assert suggestion["suggested_price"] == Decimal("360.99")
    assert suggestion["bounded_by"] == "change_limit"
    approved = pricing.approve(suggestion["id"], actor="ann", note="ok")
    assert approved["status"] == "approved"
    assert price_of(db, "PHONE") == Decimal("360.99")
    (change,) = pricing.history("PHONE")
    assert (change["actor"], change["suggestion_id"]) == ("ann", suggestion["id"])
    with pytest.raises(Conflict):
        pricing.approve(suggestion["id"], actor="ann")
    # a newer run supersedes a pending suggestion; a stale one cannot be approved
    clock.advance(days=1, hours=2)
    first = pricing.reprice(["PHONE"])
    assert first.suggested == 1
    (old,) = pricing.suggestions()
    clock.advance(minutes=1)
    pricing.reprice(["PHONE"])
    assert pricing.suggestions(status="superseded")[0]["id"] == old["id"]
    (pending,) = pricing.suggestions()
    rejected = pricing.reject(pending["id"], actor="bob", note="not now")
    assert rejected["status"] == "rejected"
    assert price_of(db, "PHONE") == Decimal("360.99")


def test_quotes_apply_segment_discounts_currency_and_channel(
    pricing: PricingService, db: Database
) -> None:
    plain = pricing.quote(["HOT"])[0]
    assert (plain.price, plain.list_price, plain.currency, plain.strategy) == (
        20.0,
        20.0,
        "EUR",
        "list",
    )
    gold = pricing.quote(["HOT"], customer_id="gold-1")[0]
    assert (gold.price, gold.strategy, gold.rule) == (18.99, "segment", "loyalty")  # 5 % off
    assert pricing.quote(["HOT"], customer_id="plain-1")[0].price == 20.0
    pricing.config.put_fx({"GBP": 0.85})
    uk = pricing.quote(["HOT", "PHONE"], channel="uk")
    assert [(q.currency, q.price) for q in uk] == [("GBP", 16.99), ("GBP", 339.99)]
    assert uk[0].valid_until == T0 + timedelta(seconds=900)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"skus": ["HOT", "NOPE"]}, "skus[1]"),
        ({"skus": []}, "skus"),
        ({"skus": ["HOT"], "currency": "XYZ"}, "currency"),
        ({"skus": ["HOT"], "currency": "eur"}, "currency"),
        ({"skus": ["HOT"], "channel": "mars"}, "channel"),
        ({"skus": ["HOT"], "customer_id": "ghost"}, "customer_id"),
    ],
)
def test_bad_quotes_name_the_field(pricing: PricingService, kwargs: dict, field: str) -> None:
    kwargs = dict(kwargs)
    skus = kwargs.pop("skus")
    with pytest.raises(ValidationError) as err:
        pricing.quote(skus, **kwargs)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"sku": "NOPE"}, "[1].sku"),
        ({"price": -3.0}, "[1].price"),
        ({"price": 0.0}, "[1].price"),
        ({"currency": "XYZ"}, "[1].currency"),
        ({"observed_at": T0 + timedelta(hours=2)}, "[1].observed_at"),
    ],
)
def test_a_bad_feed_row_stores_nothing(
    pricing: PricingService, client: redis.Redis, row: dict, field: str
) -> None:
    good = {
        "sku": "HOT",
        "competitor": "acme",
        "price": 19.0,
        "currency": "EUR",
        "observed_at": T0 - timedelta(minutes=1),
    }
    with pytest.raises(ValidationError) as err:
        pricing.put_competitor_prices([good, {**good, **row}])
    assert err.value.field == field
    assert client.keys("cw:comp:*") == []


def test_expired_competitor_prices_are_ignored(pricing: PricingService, clock: Clock) -> None:
    row = {
        "sku": "HOT",
        "competitor": "acme",
        "price": 15.0,
        "currency": "EUR",
        "observed_at": clock.now - timedelta(days=3),
    }
    assert pricing.put_competitor_prices([row])["expired"] == 1
    pricing.put_competitor_prices([{**row, "observed_at": clock.now}])
    clock.advance(days=2, seconds=1)
    assert pricing.competitor_prices("HOT") == []


def test_elasticity_prices_at_the_profit_maximum(
    pricing: PricingService, db: Database, clock: Clock
) -> None:
    fits = pricing.elasticities
    fits.save(
        [
            Estimate(
                "category", "phones", "phones", -2.5, 0.1, -2.7, -2.3, 900, 500, 0.08, 0.3, "ok"
            ),
            Estimate(
                "category", "toys", "toys", -1.8, 0.9, -3.6, 0.0, 900, 500, 0.08, 0.3, "ok"
            ),  # too uncertain for the rule's max_std_err 0.4
        ],
        source="test",
        settings={},
        history_from=None,
        history_to=None,
        rows=1800,
    )
    pricing.config.put_rule(
        "elasticity",
        {
            "strategy": "elasticity",
            "priority": 20,
            "params": {"max_std_err": 0.4},
            "guardrails": {"max_change_pct_per_day": 50},
        },
    )
    result = pricing.reprice()
    assert result.strategies == {"elasticity": 1, "demand": 3}
    # cost 250 * 2.5 / 1.5 = 416.67 -> 416.99 (within the 130 % ceiling of 520)
    assert price_of(db, "PHONE") == Decimal("416.99")
    assert pricing.history("PHONE")[0]["strategy"] == "elasticity"


def test_unknown_skus_are_refused_before_anything_runs(
    pricing: PricingService, db: Database
) -> None:
    with pytest.raises(ValidationError) as err:
        pricing.reprice(["HOT", "NOPE"])
    assert err.value.field == "skus[1]"
    assert audit_count(db) == 0
    with pytest.raises(ValidationError):
        pricing.history("NOPE")


def test_dry_run_changes_nothing(pricing: PricingService, db: Database) -> None:
    result = pricing.reprice(dry_run=True)
    assert result.changed == 4 and result.dry_run
    assert audit_count(db) == 0 and price_of(db, "HOT") is None


def test_racing_reprices_apply_each_change_once(
    pricing: PricingService, db: Database, run_concurrently: Callable[..., Any]
) -> None:
    outcomes = run_concurrently(lambda i: pricing.reprice(actor=f"racer-{i}"), 4)
    assert [o.error for o in outcomes] == [None] * 4
    assert sum(o.value.changed for o in outcomes) == 4  # each SKU moved by exactly one run
    assert audit_count(db) == 4
    for o in outcomes:  # a run that lost the race skipped what it had computed
        assert o.value.changed + o.value.skipped + o.value.unchanged == 4


def test_a_schedule_reprices_once_per_interval_across_replicas(
    pricing: PricingService, db: Database, clock: Clock
) -> None:
    one = RepriceSchedule(pricing, 900, clock=clock)
    two = RepriceSchedule(pricing, 900, clock=clock)
    first = one.tick()
    assert first is not None and first.changed == 4
    assert two.tick() is None  # the lease is taken for this interval
    clock.advance(seconds=700)
    assert one.tick() is None and two.tick() is None
    clock.advance(seconds=200)
    assert two.tick() is not None  # the next interval: whoever asks first
    assert one.tick() is None
    assert pricing.history("HOT")[0]["actor"] == "schedule"


def test_a_rules_file_applies_all_or_nothing(pricing: PricingService) -> None:
    bad = {
        "rules": {
            "ok-one": {"strategy": "demand"},
            "bad": {"strategy": "competitor", "params": {"action": "crush"}},
        }
    }
    with pytest.raises(ValidationError) as err:
        pricing.config.put_file(bad)
    assert err.value.field == "rules.bad.params.action"
    assert "ok-one" not in {r.name for r in pricing.config.rules().rules}
    good = {"guardrails": {"charm": ".95"}, "rules": {"ok-one": {"strategy": "demand"}}}
    assert pricing.config.put_file(good) == ["ok-one"]
    defaults = pricing.config.guardrails()
    assert (defaults.charm, defaults.min_margin_pct) == (".95", 10)  # the rest kept
