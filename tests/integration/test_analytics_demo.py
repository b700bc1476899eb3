"""The demo's newest day of payments, scored through the real fraud service: every held-back
payment gets one logged decision, and the online store ends exactly as a full rebuild leaves
it (scoring dedupes on the transaction id: nothing counted twice, nothing missing)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from engine.analytics.service import Analytics
from engine.commerce.db import Database
from engine.commerce.history import history
from engine.commerce.interactions import KnownChannels
from engine.commerce.schema import Payment
from engine.fraud.config import FraudConfig
from engine.fraud.log import DecisionLog
from engine.fraud.model import FraudModel
from engine.fraud.schema import FraudDecision
from engine.fraud.service import FraudService
from features.backends import RedisBackend
from features.fraud import TransactionFeatures
from features.rebuild import rebuild
from features.store import FeatureStore
from training.demo.scoring import hold_back, replayable, score_held_back
from training.demo.seed import SeedConfig, seed_store

pytestmark = pytest.mark.integration
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_ANALYTICS", "redis://127.0.0.1:6379/11")
CONFIG = SeedConfig(seed=5, customers=150, products=60, merchants=5, days=10)


@pytest.fixture
def client(flushed_redis: Callable[[str], Any]) -> Iterator[redis.Redis]:
    with flushed_redis(URL) as c:
        yield c


@pytest.fixture
def store(client: redis.Redis) -> FeatureStore:
    return FeatureStore(RedisBackend(client))


@pytest.fixture
def seeded(db: Database, store: FeatureStore) -> frozenset[str]:
    """The seeded store, its newest day held back from the rebuild of the online store."""
    seed_store(db, CONFIG)
    held = hold_back(db)
    rebuild(store, replayable(history(db), held))
    return held


@pytest.fixture
def service(db: Database, store: FeatureStore, fraud_model_dir: Path) -> Iterator[FraudService]:
    svc = FraudService(
        TransactionFeatures(store),
        FraudConfig(db, poll_s=0),
        DecisionLog(db),
        model=FraudModel.load(fraud_model_dir),
    )
    yield svc
    svc.decisions.close()


def views(client: redis.Redis) -> dict[bytes, dict[bytes, bytes]]:
    """Every feature view hash (the counters a payment adds to)."""
    return {key: client.hgetall(key) for key in client.scan_iter("cw:v:*")}


def decisions(db: Database) -> dict[str, str]:
    with db.transaction(readonly=True) as s:
        return dict(s.execute(select(FraudDecision.transaction_id, FraudDecision.outcome)).all())


def test_the_newest_day_is_held_back_with_transaction_ids(db: Database, seeded: frozenset[str]):
    with db.transaction(readonly=True) as s:
        rows = s.execute(select(Payment.id, Payment.transaction_id, Payment.created_at)).all()
    newest = max(r.created_at for r in rows)
    recent = {r.id for r in rows if r.created_at > newest - timedelta(days=1)}
    assert seeded == recent and len(seeded) >= 5
    assert all((r.transaction_id == r.id) == (r.id in seeded) for r in rows)
    assert hold_back(db) == frozenset()  # already stamped: nothing more


def test_scoring_logs_one_decision_each_and_counts_each_payment_once(
    db: Database,
    seeded: frozenset[str],
    service: FraudService,
    store: FeatureStore,
    client: redis.Redis,
) -> None:
    outcomes = score_held_back(db, service, store, seeded)
    assert sum(outcomes.values()) == len(seeded)
    logged = decisions(db)
    assert set(logged) == set(seeded)
    scored = views(client)

    again = score_held_back(db, service, store, seeded)  # replays: the same decisions
    assert again == outcomes and decisions(db) == logged
    assert views(client) == scored  # nothing counted twice

    rebuild(store, history(db))  # what the store holds after a full rebuild
    assert views(client) == scored

    assert len(list(client.scan_iter("cw:seen:txn:*"))) == len(seeded)  # under their ids
    with db.transaction(readonly=True) as s:
        newest = s.scalar(select(func.max(FraudDecision.tx_at)))
    period = ((newest - timedelta(days=2)).isoformat(), (newest + timedelta(seconds=1)).isoformat())
    analytics = Analytics(db, KnownChannels(db))
    fraud = analytics.kpis(*period)["fraud"]
    assert fraud["decisions"] == sum(fraud["outcomes"].values()) == len(seeded)
    channels = ("web-de", "web-fr", "web-nl", "web-es", "app")
    per_channel = [analytics.kpis(*period, c)["fraud"]["decisions"] for c in channels]
    assert sum(per_channel) == len(seeded)  # each decision carries its order's channel


def test_without_a_model_the_payments_are_recorded_all_the_same(
    db: Database, seeded: frozenset[str], store: FeatureStore, client: redis.Redis
) -> None:
    assert score_held_back(db, None, store, seeded) == {}
    recorded = views(client)
    rebuild(store, history(db))
    assert views(client) == recorded
    assert decisions(db) == {}
