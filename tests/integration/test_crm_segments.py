"""Customer segments on the real parts (SQLite and PostgreSQL, Redis): the batch over a
hand-built and a seeded store, the one-transaction replace, the attributes, the reads, and the
decisions that use them (a pricing quote, widget promotions and audiences)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from sqlalchemy import func, insert, select

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.domain import BOUGHT
from engine.commerce.schema import Customer, Order
from engine.crm import service as crm_service
from engine.crm.profiles import CustomerSegments
from engine.crm.schema import CustomerSegment
from engine.crm.service import CustomerSegmentation
from engine.errors import ValidationError
from engine.events import MessageBus
from engine.pricing.config import PricingConfig
from engine.pricing.listings import PriceBook
from engine.pricing.schema import FxRate
from engine.pricing.service import PricingService
from engine.recommend.artifact import RecModel
from engine.recommend.catalog import CatalogCache
from engine.recommend.log import RecommendationLog
from engine.recommend.service import Recommender
from engine.recommend.widgets import WidgetStore
from features.backends import RedisBackend
from features.pricing import PricingInputs
from features.shopper import ShopperReader
from features.store import FeatureStore

pytestmark = pytest.mark.integration
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_CRM", "redis://127.0.0.1:6379/14")
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)

# customer -> orders (days before AS_OF, status, currency, total)
ORDERS: dict[str, list[tuple[float, str, str, str]]] = {
    "c1": [
        (1, "delivered", "EUR", "100"),
        (10, "delivered", "EUR", "50"),
        (20, "paid", "EUR", "50"),
    ],
    "c2": [(5, "paid", "EUR", "30"), (2, "cancelled", "EUR", "999"), (1, "refunded", "EUR", "999")],
    "c3": [(40, "shipped", "EUR", "10"), (100, "fulfilled", "EUR", "30")],
    "c4": [(300, "delivered", "EUR", "500"), (400, "delivered", "EUR", "900")],  # 400: too old
    "c5": [(3, "placed", "EUR", "70")],  # not paid: not bought
    "c6": [(60, "paid", "USD", "110")],  # 100 EUR at 1.10 USD per EUR
    "c7": [(15, "paid", "GBP", "80")],  # no GBP rate: no value
}
# scored by hand (see tests/unit/test_crm_rfm.py::test_score_by_hand for the same numbers)
EXPECTED = {
    "c1": {"recency_days": 1, "frequency": 3, "monetary": 200.0, "r": 5, "f": 5, "m": 4},
    "c2": {"recency_days": 5, "frequency": 1, "monetary": 30.0, "r": 4, "f": 1, "m": 1},
    "c7": {"recency_days": 15, "frequency": 1, "monetary": 0.0, "r": 3, "f": 1, "m": 1},
    "c3": {"recency_days": 40, "frequency": 2, "monetary": 40.0, "r": 2, "f": 4, "m": 2},
    "c6": {"recency_days": 60, "frequency": 1, "monetary": 100.0, "r": 1, "f": 1, "m": 3},
    "c4": {"recency_days": 300, "frequency": 1, "monetary": 500.0, "r": 1, "f": 1, "m": 5},
}
SEGMENTS = {
    "c1": "champions",
    "c2": "promising",
    "c7": "about_to_sleep",
    "c3": "at_risk",
    "c6": "lost",
    "c4": "lost",
}


def build_store(db: Database) -> Catalog:
    catalog = Catalog(db, MessageBus())
    for cid in [*ORDERS, "c8"]:
        stale = {"rfm_segment": "champions"} if cid in ("c5", "c8") else {}
        catalog.create_customer(
            id=cid, email=f"{cid}@example.com", name=cid.upper(), attributes=stale
        )
    rows = [
        {
            "id": f"o-{cid}-{n}",
            "customer_id": cid,
            "status": status,
            "currency": currency,
            "total": Decimal(total),
            "created_at": AS_OF - timedelta(days=days),
            "updated_at": AS_OF - timedelta(days=days),
        }
        for cid, orders in ORDERS.items()
        for n, (days, status, currency, total) in enumerate(orders)
    ]
    with db.transaction() as s:
        s.execute(insert(Order), rows)
        s.add(FxRate(currency="USD", rate=Decimal("1.10"), updated_by="test"))
    return catalog


@pytest.fixture
def crm(db: Database) -> CustomerSegmentation:
    build_store(db)
    return CustomerSegmentation(db, clock=lambda: AS_OF + timedelta(hours=1))


def attributes(db: Database) -> dict[str, Any]:
    with db.transaction(readonly=True) as s:
        return {
            cid: a.get("rfm_segment")
            for cid, a in s.execute(select(Customer.id, Customer.attributes))
        }


def stored(db: Database) -> dict[str, str]:
    with db.transaction(readonly=True) as s:
        return dict(s.execute(select(CustomerSegment.customer_id, CustomerSegment.segment)).all())


# --- the batch -------------------------------------------------------------------------------
def test_compute_scores_bought_orders_in_the_window_by_hand(
    db: Database, crm: CustomerSegmentation
) -> None:
    result = crm.compute(as_of=AS_OF)
    assert result["customers"] == 6
    assert result["unconverted_orders"] == 1  # c7's GBP order
    assert result["as_of"] == AS_OF
    assert result["computed_at"] == AS_OF + timedelta(hours=1)
    assert {k: v for k, v in result["segments"].items() if v} == {
        "champions": 1,
        "promising": 1,
        "about_to_sleep": 1,
        "at_risk": 1,
        "lost": 2,
    }
    assert sum(result["segments"].values()) == 6
    for cid, expected in EXPECTED.items():
        got = crm.get(cid)
        assert got is not None
        assert {k: got[k] for k in expected} == expected, cid
        assert got["segment"] == SEGMENTS[cid]
        assert got["computed_at"] == AS_OF + timedelta(hours=1)
    assert crm.get("c5") is None  # a placed, unpaid order is not bought
    assert crm.get("c8") is None


def test_attributes_are_written_and_stale_ones_removed(
    db: Database, crm: CustomerSegmentation
) -> None:
    result = crm.compute(as_of=AS_OF)
    assert attributes(db) == {**SEGMENTS, "c5": None, "c8": None}
    assert (result["attributes_written"], result["attributes_removed"]) == (6, 2)
    # a shorter window: only c1 and c2 bought in the last 10 days; the rest lose the attribute
    again = crm.compute(as_of=AS_OF, lookback_days=10)
    assert again["customers"] == 2
    assert stored(db).keys() == {"c1", "c2"}
    assert {k for k, v in attributes(db).items() if v} == {"c1", "c2"}
    assert again["attributes_removed"] == 4
    # other attributes are kept
    with db.transaction() as s:
        s.get(Customer, "c1").attributes = {"loyalty_tier": "gold", "rfm_segment": "x"}
    crm.compute(as_of=AS_OF)
    with db.transaction(readonly=True) as s:
        assert s.get(Customer, "c1").attributes == {
            "loyalty_tier": "gold",
            "rfm_segment": "champions",
        }


def test_a_failing_batch_leaves_the_previous_segments(
    db: Database, crm: CustomerSegmentation, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm.compute(as_of=AS_OF)
    before = (stored(db), attributes(db))

    def broken(*_: Any) -> tuple[int, int]:
        raise RuntimeError("disk full")

    monkeypatch.setattr(crm_service, "_write_attributes", broken)
    with pytest.raises(RuntimeError):
        crm.compute(as_of=AS_OF, lookback_days=10)  # rows deleted and inserted, then it fails
    assert (stored(db), attributes(db)) == before


def test_a_date_means_its_end_and_bad_input_names_the_field(
    db: Database, crm: CustomerSegmentation
) -> None:
    # the end of 2026-06-29 is AS_OF: the same scores
    assert crm.compute(as_of=date(2026, 6, 29))["as_of"] == AS_OF
    assert stored(db) == SEGMENTS
    snapshot = stored(db)
    for kwargs, field in [
        ({"lookback_days": 0}, "lookback_days"),
        ({"lookback_days": 99_999}, "lookback_days"),
        ({"as_of": datetime(2026, 6, 1)}, "as_of"),  # naive
        ({"as_of": AS_OF + timedelta(days=30)}, "as_of"),  # the future
    ]:
        with pytest.raises(ValidationError) as err:
            crm.compute(**kwargs)
        assert err.value.field == field
    assert stored(db) == snapshot


# --- reads -----------------------------------------------------------------------------------
def test_summary_and_high_value(db: Database, crm: CustomerSegmentation) -> None:
    assert crm.summary() == {
        "computed_at": None,
        "segments": [
            {"segment": s, "customers": 0, "share": 0.0, "avg_monetary": 0.0, "avg_frequency": 0.0}
            for s in crm_service.rfm.SEGMENTS
        ],
    }
    crm.compute(as_of=AS_OF)
    summary = crm.summary()
    assert summary["computed_at"] == AS_OF + timedelta(hours=1)
    by = {row["segment"]: row for row in summary["segments"]}
    assert by["lost"] == {
        "segment": "lost",
        "customers": 2,
        "share": 0.3333,
        "avg_monetary": 300.0,
        "avg_frequency": 1.0,
    }
    assert by["champions"]["avg_frequency"] == 3.0
    assert by["loyal"]["customers"] == 0
    top = crm.high_value(3)
    assert [c["customer_id"] for c in top] == ["c4", "c1", "c6"]
    assert top[0] | {"computed_at": None} == {
        "customer_id": "c4",
        "email": "c4@example.com",
        "name": "C4",
        "segment": "lost",
        **EXPECTED["c4"],
        "computed_at": None,
    }
    assert [c["customer_id"] for c in crm.high_value(10, "lost")] == ["c4", "c6"]
    assert crm.high_value(10, "loyal") == []
    for args, field in [((0,), "limit"), ((501,), "limit"), ((10, "vip"), "segment")]:
        with pytest.raises(ValidationError) as err:
            crm.high_value(*args)
        assert err.value.field == field


def test_a_seeded_store(tmp_path: Path) -> None:
    """Over the demo generator's store: one row per customer with a bought order in the
    window, the segment counts add up, and every attribute matches its row."""
    from training.demo.seed import SeedConfig, seed_store

    end = datetime(2026, 3, 1, tzinfo=UTC)
    db = Database(f"sqlite:///{tmp_path / 'seeded.db'}")
    try:
        db.migrate()
        seed_store(
            db, SeedConfig(seed=5, customers=150, products=40, merchants=4, days=30, end=end)
        )
        crm = CustomerSegmentation(db, clock=lambda: end)
        result = crm.compute(lookback_days=365)
        with db.transaction(readonly=True) as s:
            buyers = s.scalar(
                select(func.count(func.distinct(Order.customer_id))).where(
                    Order.status.in_([str(b) for b in BOUGHT]), Order.created_at <= end
                )
            )
            rows = s.execute(select(CustomerSegment)).scalars().all()
            attrs = dict(s.execute(select(Customer.id, Customer.attributes)).all())
        assert result["customers"] == buyers == len(rows) > 20
        assert sum(result["segments"].values()) == buyers
        assert sum(1 for v in result["segments"].values() if v) >= 4
        for row in rows:
            assert attrs[row.customer_id]["rfm_segment"] == row.segment
            assert 1 <= row.r <= 5 and 1 <= row.f <= 5 and 1 <= row.m <= 5
            assert 0 <= row.recency_days <= 30 and row.frequency >= 1
        scored = {row.customer_id for row in rows}
        assert all("rfm_segment" not in a for cid, a in attrs.items() if cid not in scored)
        values = [c["monetary"] for c in crm.high_value(500)]
        assert values == sorted(values, reverse=True)
    finally:
        db.dispose()


# --- the decisions that use the segments -----------------------------------------------------
@pytest.fixture
def client(flushed_redis: Callable[[str], Any]) -> Iterator[redis.Redis]:
    with flushed_redis(URL) as c:
        yield c


def test_a_quote_gets_the_win_back_discount_of_its_rfm_segment(
    db: Database, client: redis.Redis
) -> None:
    catalog = build_store(db)
    catalog.create_product(
        sku="TEE", title="Tee", category="apparel", list_price=Decimal("20.00"),
        cost=Decimal("10.00"), currency="EUR",
    )  # fmt: skip
    config = PricingConfig(db, poll_s=0)
    config.seed_defaults()  # ships the win-back rule: at_risk 5 %, cannot_lose 8 %
    segments = CustomerSegments(db)
    pricing = PricingService(
        db,
        config,
        PricingInputs(FeatureStore(RedisBackend(client)), client),
        book=PriceBook(db, poll_s=0),
        segments=segments,
    )
    crm = CustomerSegmentation(db, profiles=segments, clock=lambda: AS_OF)
    assert pricing.quote(["TEE"], customer_id="c3")[0].price == 20.0  # cached: not scored yet
    crm.compute()  # c3 becomes at_risk; this replica's cache is dropped
    at_risk = pricing.quote(["TEE"], customer_id="c3")[0]
    assert (at_risk.price, at_risk.strategy, at_risk.rule) == (18.99, "segment", "win-back")
    lost = pricing.quote(["TEE"], customer_id="c6")[0]
    assert (lost.price, lost.rule) == (20.0, None)
    config.put_rule(
        "win-back", {"strategy": "segment", "priority": 5, "params": {"rfm": {"lost": 10}}}
    )
    assert pricing.quote(["TEE"], customer_id="c6")[0].price == 17.99  # 18.00, charm .99
    with pytest.raises(ValidationError) as err:
        config.put_file({"rules": {"wb": {"strategy": "segment", "params": {"rfm": {"vip": 5}}}}})
    assert err.value.field == "rules.wb.params.rfm.vip"
    with pytest.raises(ValidationError) as err:
        config.put_rule("wb", {"strategy": "segment", "params": {"rfm": {"at_risk": 95}}})
    assert err.value.field == "params.rfm.at_risk"


CATS, PER_CAT = 3, 10


def sku(c: int, i: int) -> str:
    return f"R{c}-{i:02d}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Items of ``cat{c}`` point along axis ``c``; customer ``u{c}`` likes category ``c``."""
    d = tmp_path_factory.mktemp("crm-recs-model")
    skus = [sku(c, i) for c in range(CATS) for i in range(PER_CAT)]
    items = np.zeros((len(skus), CATS), dtype=np.float32)
    for n in range(len(skus)):
        c, i = divmod(n, PER_CAT)
        items[n, c] = 1.0 - 0.02 * i
    meta = {
        "version": "crm-test", "kind": "als", "factors": CATS, "regularization": 0.1,
        "alpha": 1.0, "weighting": "none", "iterations": 1, "metrics": {},
        "event_weights": {"view": 1, "add_to_cart": 3, "purchase": 5},
    }  # fmt: skip
    (d / "model.json").write_text(json.dumps(meta))
    (d / "items.json").write_text(json.dumps(skus))
    (d / "users.json").write_text(json.dumps([f"u{c}" for c in range(CATS)]))
    np.save(d / "item_factors.npy", items)
    np.save(d / "user_factors.npy", np.eye(CATS, dtype=np.float32))
    np.save(d / "popularity.npy", np.linspace(1, 0, len(skus)).astype(np.float32))
    ids = np.full((len(skus), 3), -1, dtype=np.int64)
    np.savez(d / "bought_together.npz", ids=ids, scores=np.ones(ids.shape, dtype=np.float32))
    return d


@pytest.fixture
def recs(db: Database, client: redis.Redis, model_dir: Path) -> Iterator[Recommender]:
    catalog = Catalog(db, MessageBus())
    for c in range(CATS):
        for i in range(PER_CAT):
            catalog.create_product(
                sku=sku(c, i), title="t", category=f"cat{c}", list_price=Decimal("5"),
                currency="EUR",
            )  # fmt: skip
    catalog.create_customer(id="u0", email="u0@example.com", attributes={"rfm_segment": "at_risk"})
    catalog.create_customer(id="u1", email="u1@example.com", attributes={"rfm_segment": "loyal"})
    r = Recommender(
        ShopperReader(FeatureStore(RedisBackend(client))),
        CatalogCache(db, refresh_s=0),
        WidgetStore(db, poll_s=0),
        RecommendationLog(db),
        model=RecModel.load(model_dir),
        segments=CustomerSegments(db),
    )
    yield r
    r.log.close()


def test_a_promotion_is_shown_only_to_its_segments(recs: Recommender) -> None:
    recs.widgets.put(
        "promo",
        {
            "k": 5,
            "promotion_share": 0.2,
            "promotions": [{"skus": [sku(2, 9)], "segments": ["at_risk", "cannot_lose"]}],
            "fallback": ["trending"],
        },
    )
    at_risk = recs.recommend(customer_id="u0", widget="promo", log=False)
    assert [i.sku for i in at_risk.items if i.reason == "promoted"] == [sku(2, 9)]
    for other in ("u1", "u2", None):  # another segment, unknown, anonymous
        rec = recs.recommend(customer_id=other, widget="promo", log=False)
        assert len(rec.items) == 5
        assert all(i.reason != "promoted" for i in rec.items), other


def test_an_audience_widget_falls_back_outside_its_audience(recs: Recommender) -> None:
    recs.widgets.put(
        "win-back",
        {"strategy": "personalized", "k": 4, "audience": {"segments": ["at_risk"]},
         "fallback": ["trending"]},
    )  # fmt: skip
    inside = recs.recommend(customer_id="u0", widget="win-back", log=False)
    assert [i.reason for i in inside.items] == ["personalized"] * 4
    assert {i.sku[:2] for i in inside.items} == {"R0"}
    outside = recs.recommend(customer_id="u1", widget="win-back", log=False)
    assert [i.reason for i in outside.items] == ["trending"] * 4
    anonymous = recs.recommend(customer_id=None, widget="win-back", log=False)
    assert [i.reason for i in anonymous.items] == ["trending"] * 4
    # without the audience, u1 gets the personalized strategy
    recs.widgets.put("win-back", {"strategy": "personalized", "k": 4, "fallback": ["trending"]})
    assert recs.recommend(customer_id="u1", widget="win-back", log=False).items[0].reason == (
        "personalized"
    )


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"promotions": [{"skus": ["A"], "segments": ["vip"]}]}, "promotions[0].segments"),
        ({"promotions": [{"skus": ["A"]}, {"segments": ["lost"]}]}, "promotions[1].skus"),
        ({"promotions": [{"skus": ["A"], "share": 1}]}, "promotions[0].share"),
        ({"promotions": "A"}, "promotions"),
        ({"audience": {"segments": ["vip"]}}, "audience.segments"),
        ({"audience": {"segments": []}}, "audience.segments"),
        ({"audience": ["at_risk"]}, "audience"),
        ({"audience": {"segments": ["at_risk"]}, "fallback": []}, "fallback"),
    ],
)
def test_bad_segment_filters_name_the_field(db: Database, config: dict, field: str) -> None:
    widgets = WidgetStore(db, poll_s=0)
    with pytest.raises(ValidationError) as err:
        widgets.put("w", config)
    assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        widgets.put_many({"w": config})
    assert err.value.field == f"w.{field}"
    assert widgets.all() == {}


# --- the command line ------------------------------------------------------------------------
def test_the_segments_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: redis.Redis
) -> None:
    from typer.testing import CliRunner

    from serving.cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CARTWISE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CARTWISE_DATABASE_URL", url)
    monkeypatch.setenv("CARTWISE_REDIS_URL", URL)
    monkeypatch.setenv("CARTWISE_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("COLUMNS", "200")
    db = Database(url)
    db.migrate()
    build_store(db)
    result = CliRunner().invoke(app, ["customers", "segments", "--as-of", "2026-06-29"])
    assert result.exit_code == 0, result.output
    assert "as of 2026-06-30 00:00 UTC (365 days of orders)" in result.output
    lost = next(line for line in result.output.splitlines() if " lost " in line)
    assert [cell.strip() for cell in lost.split("│")[2:6]] == ["2", "33.3%", "300.00", "1.00"]
    assert "6 customers scored" in result.output
    assert stored(db) == SEGMENTS
    bad = CliRunner().invoke(app, ["customers", "segments", "--as-of", "June"])
    assert bad.exit_code == 2 and "as_of" in bad.output
    db.dispose()
