"""Running experiments change the decisions: the widget and the model behind a shopper's
recommendations (through the engine's Recommender on Redis, SQL and a FAISS model), and the
segment rule behind a customer's quote (through the PricingService)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from sqlalchemy import select

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.events import MessageBus
from engine.experiments.hooks import PriceTrials, RecTrials
from engine.experiments.schema import ExperimentExposure
from engine.experiments.service import Experiments
from engine.pricing.config import PricingConfig
from engine.pricing.elasticity import Elasticities
from engine.pricing.listings import PriceBook
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
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_EXPERIMENTS", "redis://127.0.0.1:6379/4")
CATS, PER_CAT = 3, 10
NOW = 1_780_000_000.0


def _model_dir(d: Path, version: str, *, reverse: bool = False) -> Path:
    """Items of ``cat{c}`` along axis ``c``; popularity falls along the SKUs (rises when
    ``reverse``), which orders a new shopper's trending items."""
    skus = [f"R{c}-{i:02d}" for c in range(CATS) for i in range(PER_CAT)]
    items = np.zeros((len(skus), CATS), dtype=np.float32)
    for n in range(len(skus)):
        c, i = divmod(n, PER_CAT)
        items[n, c] = 1.0 - 0.02 * i
    meta = {
        "version": version,
        "kind": "als",
        "factors": CATS,
        "regularization": 0.1,
        "alpha": 1.0,
        "weighting": "none",
        "iterations": 1,
        "event_weights": {"view": 1, "add_to_cart": 3, "purchase": 5},
        "metrics": {},
    }
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.json").write_text(json.dumps(meta))
    (d / "items.json").write_text(json.dumps(skus))
    (d / "users.json").write_text(json.dumps([f"u{c}" for c in range(CATS)]))
    np.save(d / "item_factors.npy", items)
    np.save(d / "user_factors.npy", np.eye(CATS, dtype=np.float32))
    popularity = np.linspace(1, 0, len(skus)).astype(np.float32)
    np.save(d / "popularity.npy", popularity[::-1].copy() if reverse else popularity)
    ids = np.full((len(skus), 3), -1, dtype=np.int64)
    np.savez(d / "bought_together.npz", ids=ids, scores=np.ones(ids.shape, dtype=np.float32))
    return d


@pytest.fixture
def client(flushed_redis: Callable[[str], Any]) -> Iterator[redis.Redis]:
    with flushed_redis(URL) as c:
        yield c


@pytest.fixture
def exps(db: Database) -> Iterator[Experiments]:
    e = Experiments(db, poll_s=0)
    yield e
    e.close()


class Loader:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, spec: str) -> RecModel | None:
        self.calls.append(spec)
        return RecModel.load(Path(spec)) if Path(spec).is_dir() else None


@pytest.fixture
def loader() -> Loader:
    return Loader()


@pytest.fixture
def recs(
    db: Database, client: redis.Redis, exps: Experiments, loader: Loader, tmp_path: Path
) -> Iterator[Recommender]:
    catalog = Catalog(db, MessageBus())
    for c in range(CATS):
        for i in range(PER_CAT):
            catalog.create_product(
                sku=f"R{c}-{i:02d}",
                title="t",
                category=f"cat{c}",
                list_price=Decimal("5"),
                currency="EUR",
            )
    widgets = WidgetStore(db, poll_s=0)
    widgets.seed_defaults()
    widgets.put("compact", {"strategy": "trending", "k": 2, "fallback": ["trending"]})
    r = Recommender(
        ShopperReader(FeatureStore(RedisBackend(client))),
        CatalogCache(db, refresh_s=0),
        widgets,
        RecommendationLog(db),
        model=RecModel.load(_model_dir(tmp_path / "champion", "recs-test")),
        trials=RecTrials(exps, widgets, loader),
    )
    yield r
    r.log.close()


def _exposures(db: Database, key: str) -> dict[str, tuple[str, int]]:
    with db.transaction(readonly=True) as s:
        rows = s.scalars(select(ExperimentExposure).where(ExperimentExposure.experiment_key == key))
        return {r.customer_id: (r.variant, r.exposures) for r in rows}


def _halves(treatment: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "control", "weight": 50, "config": {}},
        {"name": "treatment", "weight": 50, "config": treatment},
    ]


def test_a_widget_experiment_shows_each_customer_their_variant(
    recs: Recommender, exps: Experiments, db: Database
) -> None:
    exps.create("home-compact", "Compact home", "widget", "home", _halves({"widget": "compact"}))
    exps.start("home-compact")
    seen: dict[str, int] = {}
    for i in range(40):
        cid = f"c{i}"
        want = exps.assignment("home-compact", cid)["variant"]
        for _ in range(2):  # sticky on repeat
            rec = recs.recommend(customer_id=cid, widget="home", now=NOW)
            assert rec.experiment == {"key": "home-compact", "variant": want}
            assert rec.widget == "home"
            # home: 10 slots, at most 3 per category of 3 -> 9; compact: 2
            assert len(rec.items) == (2 if want == "treatment" else 9)
            assert rec.public()["experiment"] == {"key": "home-compact", "variant": want}
        seen[want] = seen.get(want, 0) + 1
    assert set(seen) == {"control", "treatment"}
    # other widgets and item-to-item answers are not in the experiment
    assert recs.recommend(customer_id="c1", widget="trending", now=NOW).experiment is None
    exps.exposures.flush()
    exposures = _exposures(db, "home-compact")
    assert len(exposures) == 40
    assert {n for _, n in exposures.values()} == {2}  # one row per customer, counted
    assert exposures["c0"][0] == exps.assignment("home-compact", "c0")["variant"]


def test_overrides_and_anonymous_shoppers(
    recs: Recommender, exps: Experiments, db: Database
) -> None:
    exps.create("home-k4", "Four", "widget", "home", _halves({"overrides": {"k": 4}}))
    exps.start("home-k4")
    for i in range(20):
        rec = recs.recommend(customer_id=f"c{i}", widget="home", now=NOW)
        want = exps.assignment("home-k4", f"c{i}")["variant"]
        assert len(rec.items) == (4 if want == "treatment" else 9)
    # a shopper without an account is assigned by session id, and not logged
    anon = recs.recommend(customer_id=None, session_id="s-anon", widget="home", now=NOW)
    assert anon.experiment == {
        "key": "home-k4",
        "variant": exps.assignment("home-k4", "s-anon")["variant"],
    }
    exps.exposures.flush()
    assert "s-anon" not in _exposures(db, "home-k4") and len(_exposures(db, "home-k4")) == 20
    exps.stop("home-k4")
    assert recs.recommend(customer_id="c1", widget="home", now=NOW).experiment is None


def test_a_recommender_experiment_serves_the_variant_model(
    recs: Recommender, exps: Experiments, loader: Loader, tmp_path: Path
) -> None:
    other = _model_dir(tmp_path / "challenger", "recs-b", reverse=True)
    exps.create("model-b", "Model B", "recommender", "recs", _halves({"model_version": str(other)}))
    exps.start("model-b")
    versions = {}
    for i in range(30):
        rec = recs.recommend(customer_id=f"c{i}", widget="home", now=NOW)
        want = exps.assignment("model-b", f"c{i}")["variant"]
        assert rec.experiment == {"key": "model-b", "variant": want}
        assert rec.model_version == ("recs-b" if want == "treatment" else "recs-test")
        assert not rec.degraded and len(rec.items) == 9
        # a new shopper sees the model's popular items: the challenger ranks them the other way
        assert rec.items[0].sku == ("R2-09" if want == "treatment" else "R0-00")
        versions[want] = rec.model_version
    assert versions == {"control": "recs-test", "treatment": "recs-b"}
    assert loader.calls == [str(other)]  # loaded once, kept


def test_a_variant_model_that_cannot_load_falls_back_to_the_champion(
    recs: Recommender, exps: Experiments, loader: Loader, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-model")
    exps.create("broken", "Broken", "recommender", "recs", _halves({"model_version": missing}))
    exps.start("broken")
    for i in range(20):
        rec = recs.recommend(customer_id=f"c{i}", widget="home", now=NOW)
        treated = exps.assignment("broken", f"c{i}")["variant"] == "treatment"
        assert rec.model_version == "recs-test" and rec.items
        assert rec.degraded is treated  # the answer says the variant could not be served
    assert loader.calls == [missing]  # not tried again on every request


# --- pricing ----------------------------------------------------------------------------------
@pytest.fixture
def pricing(db: Database, client: redis.Redis, exps: Experiments) -> PricingService:
    catalog = Catalog(db, MessageBus())
    catalog.create_product(
        sku="HOT",
        title="Hot",
        category="toys",
        list_price=Decimal("20.00"),
        cost=Decimal("10.00"),
        currency="EUR",
    )
    for i in range(20):
        catalog.create_customer(
            id=f"gold-{i}", email=f"g{i}@example.com", attributes={"loyalty_tier": "gold"}
        )
    config = PricingConfig(db, poll_s=0)
    config.seed_defaults()
    return PricingService(
        db,
        config,
        PricingInputs(FeatureStore(RedisBackend(client)), client),
        book=PriceBook(db, poll_s=0),
        elasticities=Elasticities(db, poll_s=0),
        clock=lambda: datetime(2026, 6, 10, 12, tzinfo=UTC),
        trials=PriceTrials(exps),
    )


@pytest.mark.parametrize(
    ("treatment", "treated_price", "treated_strategy"),
    [
        ({"params": {"tiers": {"gold": 10}}}, 17.99, "segment"),  # 10 % off, charm .99
        ({"enabled": False}, 20.0, "list"),
    ],
)
def test_a_price_rule_experiment_changes_the_quote_of_its_customers(
    pricing: PricingService,
    exps: Experiments,
    db: Database,
    treatment: dict[str, Any],
    treated_price: float,
    treated_strategy: str,
) -> None:
    assert pricing.quote(["HOT"], customer_id="gold-0")[0].price == 18.99  # 5 % off, no test
    exps.create("loyal", "Loyalty", "price_rule", "loyalty", _halves(treatment))
    exps.start("loyal")
    seen = set()
    for i in range(20):
        cid = f"gold-{i}"
        want = exps.assignment("loyal", cid)["variant"]
        for _ in range(2):
            (q,) = pricing.quote(["HOT"], customer_id=cid)
            assert q.experiment == {"key": "loyal", "variant": want}
            if want == "treatment":
                assert (q.price, q.strategy) == (treated_price, treated_strategy)
            else:
                assert (q.price, q.strategy, q.rule) == (18.99, "segment", "loyalty")
        seen.add(want)
    assert seen == {"control", "treatment"}
    anonymous = pricing.quote(["HOT"])[0]
    assert (anonymous.price, anonymous.experiment) == (20.0, None)
    exps.exposures.flush()
    exposures = _exposures(db, "loyal")
    assert len(exposures) == 20 and {n for _, n in exposures.values()} == {2}
