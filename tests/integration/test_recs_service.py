"""The recommender in-process on the real parts: Redis shopper state and stock mirror, SQL
catalogue and widgets, a FAISS index over a model directory with a known geometry.

Items of category ``cat{c}`` point along axis ``c`` (longer for lower ids), so who should see
what is known in advance: a shopper leaning towards axis ``c`` gets ``cat{c}`` first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from sqlalchemy import update

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.schema import Product
from engine.errors import ValidationError
from engine.events import MessageBus
from engine.recommend.artifact import RecModel
from engine.recommend.catalog import CatalogCache
from engine.recommend.log import RecommendationLog
from engine.recommend.service import Recommender
from engine.recommend.widgets import UnknownWidget, Widget, WidgetStore
from features.backends import RedisBackend
from features.connection import connect
from features.definitions import Entity, FeatureEvent, Source
from features.shopper import ShopperReader
from features.store import FeatureStore

pytestmark = pytest.mark.integration
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_RECS", "redis://127.0.0.1:6379/9")
CATS, PER_CAT = 3, 10
NOW = 1_780_000_000.0


def sku(c: int, i: int) -> str:
    return f"R{c}-{i:02d}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("recs-model")
    skus = [sku(c, i) for c in range(CATS) for i in range(PER_CAT)]
    items = np.zeros((len(skus), CATS), dtype=np.float32)
    for n in range(len(skus)):
        c, i = divmod(n, PER_CAT)
        items[n, c] = 1.0 - 0.02 * i
        items[n, (c + 1) % CATS] = 0.05
    users = np.eye(CATS, dtype=np.float32)  # customer u{c} likes category c
    ids = np.full((len(skus), 3), -1, dtype=np.int64)
    ids[0, :2] = [PER_CAT, 2 * PER_CAT]  # R0-00 is bought with R1-00 and R2-00
    meta = {
        "version": "recs-test",
        "kind": "als",
        "factors": CATS,
        "regularization": 0.1,
        "alpha": 1.0,
        "weighting": "none",
        "iterations": 1,
        "event_weights": {"view": 1, "add_to_cart": 3, "purchase": 5},
        "metrics": {},
    }
    (d / "model.json").write_text(json.dumps(meta))
    (d / "items.json").write_text(json.dumps(skus))
    (d / "users.json").write_text(json.dumps([f"u{c}" for c in range(CATS)]))
    np.save(d / "item_factors.npy", items)
    np.save(d / "user_factors.npy", users)
    np.save(d / "popularity.npy", np.linspace(1, 0, len(skus)).astype(np.float32))
    np.savez(d / "bought_together.npz", ids=ids, scores=np.ones(ids.shape, dtype=np.float32))
    return d


@pytest.fixture
def client(flushed_redis: Callable[[str], Any]) -> Iterator[redis.Redis]:
    with flushed_redis(URL) as c:
        yield c


@pytest.fixture
def store(client: redis.Redis) -> FeatureStore:
    return FeatureStore(RedisBackend(client))


@pytest.fixture
def recs(db: Database, store: FeatureStore, model_dir: Path) -> Iterator[Recommender]:
    catalog = Catalog(db, MessageBus())
    for c in range(CATS):
        for i in range(PER_CAT):
            catalog.create_product(
                sku=sku(c, i),
                title="t",
                category=f"cat{c}",
                list_price=Decimal("5"),
                currency="EUR",
            )
    widgets = WidgetStore(db, poll_s=0)
    widgets.seed_defaults()
    r = Recommender(
        ShopperReader(store),
        CatalogCache(db, refresh_s=0),
        widgets,
        RecommendationLog(db),
        model=RecModel.load(model_dir),
    )
    yield r
    r.log.close()


def event(kind: str, s: str, ts: float, customer: str = "new", session: str = "s1") -> FeatureEvent:
    return FeatureEvent(
        f"{customer}-{kind}-{s}-{ts}",
        Source.INTERACTION,
        kind,
        ts,
        {
            Entity.CUSTOMER: customer,
            Entity.SESSION: session,
            Entity.SKU: s,
            Entity.CATEGORY: f"cat{s[1]}",
        },
        {"qty": 1},
        {"sku": s},
    )


def cats(rec: object) -> list[str]:
    return [i.sku[:2] for i in rec.items]  # type: ignore[attr-defined]


def test_a_known_customer_gets_their_category_first(recs: Recommender) -> None:
    rec = recs.recommend(customer_id="u1", widget="home", k=3, now=NOW)
    assert [i.sku for i in rec.items] == [sku(1, 0), sku(1, 1), sku(1, 2)]
    assert {i.reason for i in rec.items} == {"personalized"}
    assert rec.model_version == "recs-test" and not rec.degraded


def test_session_events_fold_in_at_request_time(recs: Recommender, store: FeatureStore) -> None:
    cold = recs.recommend(customer_id="new", widget="home", k=4, now=NOW)
    assert cold.items and {i.reason for i in cold.items} == {"trending"}  # cold start
    store.record([event("view", sku(2, i), NOW - 60 + i) for i in range(3)])
    warm = recs.recommend(customer_id="new", session_id="s1", widget="home", k=4, now=NOW)
    # the home widget shows at most 3 items per category: the fourth comes from another
    assert cats(warm)[:3] == ["R2"] * 3 and warm.items[0].reason == "personalized"
    # a known customer's taste moves with what they do now
    store.record([event("add_to_cart", sku(0, i), NOW - 30, customer="u1") for i in range(8)])
    moved = recs.recommend(customer_id="u1", widget="home", k=1, now=NOW)
    assert cats(moved) == ["R0"]


def test_trending_of_the_context_category_for_a_new_shopper(
    recs: Recommender, store: FeatureStore
) -> None:
    store.record([event("view", sku(1, 7), NOW - 10, customer=f"x{i}") for i in range(5)])
    store.record([event("view", sku(1, 3), NOW - 10, customer="y")])
    rec = recs.recommend(customer_id="nobody", widget="trending", category="cat1", k=2, now=NOW)
    assert [i.sku for i in rec.items] == [sku(1, 7), sku(1, 3)]


def test_purchased_out_of_stock_and_hidden_items_are_never_returned(
    recs: Recommender, store: FeatureStore, db: Database
) -> None:
    store.record([event("purchase", sku(1, 0), NOW - 5, customer="u1")])
    store.set_stock([(sku(1, 1), "w1", 0), (sku(1, 2), "w1", 4)])
    with db.transaction() as session:  # hidden in the admin (no product-update API yet)
        session.execute(update(Product).where(Product.sku == sku(1, 3)).values(hidden=True))
    rec = recs.recommend(customer_id="u1", widget="home", k=30, now=NOW)
    got = {i.sku for i in rec.items}
    assert got and not got & {sku(1, 0), sku(1, 1), sku(1, 3)}
    assert sku(1, 2) in got


def test_category_restriction_diversity_boosts_and_promotions(recs: Recommender) -> None:
    only = recs.recommend(customer_id="u0", widget="home", category="cat2", k=5, now=NOW)
    assert set(cats(only)) == {"R2"}
    recs.widgets.put(
        "mixed",
        {"strategy": "personalized", "k": 6, "max_per_category": 2, "fallback": ["trending"]},
    )
    mixed = recs.recommend(customer_id="u0", widget="mixed", now=NOW)
    assert len(mixed.items) == 6 and max(cats(mixed).count(c) for c in ("R0", "R1", "R2")) <= 2
    recs.widgets.put(
        "promo",
        {"k": 5, "promoted_skus": [sku(2, 9)], "promotion_share": 0.2, "boosts": {"cat1": 50}},
    )
    promo = recs.recommend(customer_id="u0", widget="promo", now=NOW)
    assert next(i for i in promo.items if i.reason == "promoted").sku == sku(2, 9)
    assert cats(promo)[:1] == ["R1"] or promo.items[0].reason == "promoted"


def test_item_to_item_and_bought_together(recs: Recommender) -> None:
    similar = Widget("s", strategy="similar", exclude_purchased=False, fallback=())
    rec = recs.recommend(customer_id=None, widget=similar, context_sku=sku(0, 5), k=3, now=NOW)
    assert cats(rec) == ["R0"] * 3 and sku(0, 5) not in {i.sku for i in rec.items}
    together = Widget("t", strategy="bought_together", exclude_purchased=False, fallback=())
    rec = recs.recommend(customer_id=None, widget=together, context_sku=sku(0, 0), k=3, now=NOW)
    assert [i.sku for i in rec.items] == [sku(1, 0), sku(2, 0)]


def test_bad_requests_name_the_field(recs: Recommender) -> None:
    for k in (0, 101):
        with pytest.raises(ValidationError) as err:
            recs.recommend(customer_id="u0", k=k, now=NOW)
        assert err.value.field == "k"
    with pytest.raises(UnknownWidget) as unknown:
        recs.recommend(customer_id="u0", widget="nope", now=NOW)
    assert unknown.value.field == "widget"
    with pytest.raises(ValidationError) as ctx:
        recs.recommend(customer_id="u0", context_sku="NOPE", now=NOW)
    assert ctx.value.field == "context_sku"
    with pytest.raises(ValidationError) as bad:
        recs.widgets.put("w", {"k": 3, "fallback": ["nowhere"]})
    assert bad.value.field == "fallback[0]"


def test_without_redis_it_still_answers_degraded(db: Database, model_dir: Path) -> None:
    dead = FeatureStore(RedisBackend(connect("redis://127.0.0.1:1/0", timeout_ms=20)))
    widgets = WidgetStore(db)
    widgets.seed_defaults()
    r = Recommender(
        ShopperReader(dead),
        CatalogCache(db),
        widgets,
        RecommendationLog(db),
        model=RecModel.load(model_dir),
    )
    try:
        rec = r.recommend(customer_id="u2", k=2, now=NOW)
        assert rec.degraded and rec.items == ()  # no catalogue rows in this db: nothing to show
    finally:
        r.log.close()


def test_widgets_from_a_yaml_file_all_or_nothing(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from serving.cli import app

    env = {"CARTWISE_DATA_DIR": str(tmp_path), "CARTWISE_DATABASE_URL": ""}
    good = tmp_path / "widgets.yaml"
    good.write_text("sale:\n  strategy: trending\n  k: 4\n  promoted_category: shoes\n")
    run = CliRunner().invoke(app, ["recs", "widgets", "--load", str(good)], env=env)
    assert run.exit_code == 0, run.output
    shown = yaml.safe_load(run.stdout)
    assert shown["sale"]["k"] == 4 and "home" in shown  # the shipped ones stay
    bad = tmp_path / "bad.yaml"
    bad.write_text("a:\n  k: 3\nb:\n  k: 500\n")
    run = CliRunner().invoke(app, ["recs", "widgets", "--load", str(bad)], env=env)
    assert run.exit_code == 2 and "b.k" in run.output
    run = CliRunner().invoke(app, ["recs", "widgets"], env=env)
    assert "a" not in yaml.safe_load(run.stdout)  # nothing of the bad file was applied


def test_every_widget_edit_reaches_other_replicas(db: Database) -> None:
    here, there = WidgetStore(db, poll_s=0), WidgetStore(db, poll_s=0)
    here.seed_defaults()
    assert "home" in there.all()
    # one widget gone and another added: the same count and the same sum of versions
    here.delete("trending")
    here.put("new", {"strategy": "trending", "k": 3})
    assert set(there.all()) == {"home", "product_page", "cart", "new"}
    here.put("new", {"strategy": "trending", "k": 5})
    assert there.get("new").k == 5


def test_trending_is_read_once_per_interval_per_replica(store: FeatureStore) -> None:
    cached = ShopperReader(store, trending_refresh_s=3600)
    fresh = ShopperReader(store, trending_refresh_s=0)

    def top(reader: ShopperReader) -> str:
        state = reader.state(customer_id=None, session_id=None, category="cat0", now=NOW + 10)
        return state.trending[0][0]

    store.record([event("view", sku(0, 1), NOW)])
    assert top(cached) == top(fresh) == sku(0, 1)
    store.record([event("view", sku(0, 2), NOW + i) for i in range(1, 4)])
    assert top(fresh) == sku(0, 2)
    assert top(cached) == sku(0, 1)  # the same list until the interval has passed


def test_warm_up_answers_every_widget_and_logs_nothing(recs: Recommender, db: Database) -> None:
    from sqlalchemy import func, select

    from engine.recommend.schema import Recommendation

    recs.warm_up()
    recs.log.flush()
    with db.transaction(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Recommendation)) == 0
    rec = recs.recommend(customer_id="u1", widget="home", k=3, now=NOW)
    recs.log.flush()
    with db.transaction(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Recommendation)) == 1
    assert rec.items
