"""Fraud decisions in-process on the real parts: Redis features, SQL log/rules/lists, ONNX model."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from engine.commerce.db import Database
from engine.errors import NotFound, ValidationError
from engine.fraud.config import FraudConfig
from engine.fraud.decision import Card, CardNumberRefused, Policy, ScoreRequest
from engine.fraud.log import DecisionLog, ReviewResolved
from engine.fraud.model import FraudModel
from engine.fraud.service import (
    FraudService,
    ModelUnavailable,
    NotInReview,
    TransactionReused,
)
from features.backends import RedisBackend
from features.connection import connect
from features.definitions import Entity
from features.fraud import TransactionFeatures
from features.store import FeatureStore

pytestmark = pytest.mark.integration
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_FRAUD", "redis://127.0.0.1:6379/10")
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def client(flushed_redis: Callable[[str], Any]) -> Iterator[redis.Redis]:
    with flushed_redis(URL) as c:
        yield c


@pytest.fixture
def model(fraud_model_dir: Path) -> FraudModel:
    return FraudModel.load(fraud_model_dir)


@pytest.fixture
def store(client: redis.Redis) -> FeatureStore:
    return FeatureStore(RedisBackend(client))


@pytest.fixture
def service(db: Database, store: FeatureStore, model: FraudModel) -> Iterator[FraudService]:
    svc = FraudService(
        TransactionFeatures(store), FraudConfig(db, poll_s=0), DecisionLog(db), model=model
    )
    yield svc
    svc.decisions.close()


def req(tid: str, amount: str = "25.00", ts: datetime = NOW, **kw: object) -> ScoreRequest:
    base: dict[str, object] = {
        "customer_id": "cus-1",
        "currency": "EUR",
        "card": Card(fingerprint="fp-1", bin="424242", country="DE", last4="4242"),
        "device_id": "dev-1",
        "ip": "10.1.2.3",
        "email": "Ann@Example.com",
        "merchant_id": "m-1",
        "shipping_country": "DE",
    }
    return ScoreRequest(transaction_id=tid, amount=Decimal(amount), ts=ts, **(base | kw))  # type: ignore[arg-type]


def test_a_decision_reads_features_records_the_attempt_and_is_logged(
    service: FraudService, store: FeatureStore
) -> None:
    first = service.score(req("t1", ts=NOW - timedelta(minutes=2)))
    assert first.outcome in ("allow", "review", "block", "challenge")
    assert 0 <= first.risk_score <= 100 and 0.0 <= first.probability <= 1.0
    assert first.model_version == "test-1" and first.features_degraded is False
    second = service.score(req("t2", ts=NOW - timedelta(minutes=1)))
    # the first attempt was recorded: the second sees one earlier transaction of the customer
    assert second.inputs != first.inputs
    read = store.read({Entity.CUSTOMER: "cus-1"}, NOW.timestamp())
    assert read.values["customer_txn.txn_count_10m"] == 2.0
    logged = service.decisions.get(first.decision_id)
    assert logged.transaction_id == "t1" and logged.outcome == first.outcome
    assert logged.attributes["email"] == "ann@example.com"
    assert logged.attributes["email_domain"] == "example.com"
    assert len(logged.inputs) == len(first.inputs) and logged.inputs == first.inputs


def test_scoring_a_transaction_again_replays_the_first_decision(
    service: FraudService, store: FeatureStore
) -> None:
    first = service.score(req("t1"))
    again = service.score(req("t1"))
    assert again.replayed and again.decision_id == first.decision_id
    read = store.read({Entity.CUSTOMER: "cus-1"}, NOW.timestamp() + 1)
    assert read.values["customer_txn.txn_count_10m"] == 1.0
    with pytest.raises(TransactionReused) as err:
        service.score(req("t1", amount="26.00"))
    assert err.value.field == "transaction_id"


def test_block_list_decides_and_non_allow_outcomes_carry_reasons(service: FraudService) -> None:
    service.config.add_items("block_card_fingerprints", [("fp-bad", "stolen")])
    d = service.score(req("t1", card=Card(fingerprint="fp-bad")))
    assert d.outcome == "block" and d.rule_id == "block-listed-card-fingerprints"
    assert [m["decisive"] for m in d.matched_rules] == [True]
    assert d.reasons and all(r.contribution > 0 for r in d.reasons)
    assert service.score(req("t2")).rule_id is None  # another card is not listed


def test_allow_list_beats_block_and_shadow_rules_only_record(service: FraudService) -> None:
    service.config.add_items("block_emails", [("ann@example.com", None)])
    service.config.add_items("allow_card_fingerprints", [("fp-1", "vip")])
    service.config.create_rule(
        {"name": "big basket", "expression": ":amount: > 10", "action": "block", "mode": "shadow"}
    )
    d = service.score(req("t1"))
    assert d.outcome == "allow" and d.rule_id == "allow-listed-card-fingerprints"
    matched = {m["id"]: m for m in d.matched_rules}
    assert set(matched) == {"allow-listed-card-fingerprints", "block-listed-emails", "big-basket"}
    assert matched["big-basket"]["mode"] == "shadow" and not matched["big-basket"]["decisive"]


def test_policy_thresholds_pick_the_outcome_when_no_rule_decides(service: FraudService) -> None:
    service.use_policy(Policy(elevated_at=0, highest_at=100, elevated_outcome="challenge"))
    d = service.score(req("t1"))
    assert d.risk_level == "elevated" and d.outcome == "challenge" and d.reasons
    service.use_policy(Policy(elevated_at=100, highest_at=100))
    d = service.score(req("t2"))
    assert d.risk_level == "normal" and d.outcome == "allow" and d.reasons == ()


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("email", {"email": "4111 1111 1111 1111"}),
        ("card.fingerprint", {"card": Card(fingerprint="4111111111111111")}),
        ("device_id", {"device_id": "5500-0000-0000-0004"}),
    ],
)
def test_a_card_number_is_refused_and_never_stored(
    service: FraudService, client: redis.Redis, field: str, changes: dict[str, object]
) -> None:
    with pytest.raises(CardNumberRefused) as err:
        service.score(req("t1", **changes))
    assert err.value.field == field and "4111" not in err.value.message
    assert service.decisions.by_transaction("t1") is None
    assert client.dbsize() == 0


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("amount", {"amount": "-1.00"}),
        ("currency", {"currency": "XXQ"}),
        ("timestamp", {"ts": NOW + timedelta(days=1)}),
        ("shipping_country", {"shipping_country": "ZZ"}),
        ("card.bin", {"card": Card(bin="12ab")}),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    service: FraudService, client: redis.Redis, field: str, changes: dict[str, object]
) -> None:
    with pytest.raises(ValidationError) as err:
        service.score(req("t1", **changes))
    assert err.value.field == field
    assert client.dbsize() == 0 and service.decisions.by_transaction("t1") is None


def test_feedback_is_stored_with_the_decision_and_feeds_label_features(
    service: FraudService, store: FeatureStore
) -> None:
    tx_at = NOW - timedelta(days=2)
    d = service.score(req("t1", ts=tx_at))
    fb = service.feedback(
        decision_id=None, transaction_id="t1", label="chargeback", reported_at=NOW
    )
    assert fb["decision_id"] == d.decision_id and fb["features_degraded"] is False
    read = store.read({Entity.CUSTOMER: "cus-1", Entity.CARD: "fp-1"}, NOW.timestamp() + 1)
    assert read.values["customer_txn.frauds_known"] == 1.0
    assert read.values["card_txn.frauds_known"] == 1.0
    # the same transaction labelled again (analyst confirms) is kept, but counted once
    service.feedback(decision_id=d.decision_id, transaction_id=None, label="fraud", reported_at=NOW)
    read = store.read({Entity.CUSTOMER: "cus-1"}, NOW.timestamp() + 1)
    assert read.values["customer_txn.frauds_known"] == 1.0
    assert [f["label"] for f in service.decisions.feedback(d.decision_id)] == [
        "chargeback",
        "fraud",
    ]
    # the same label again (a retry) is the feedback stored first, nothing more
    again = service.feedback(
        decision_id=None, transaction_id="t1", label="chargeback", reported_at=NOW, note="retry"
    )
    assert again["replayed"] is True and fb["replayed"] is False
    assert (again["feedback_id"], again["note"]) == (fb["feedback_id"], fb["note"])
    assert len(service.decisions.feedback(d.decision_id)) == 2
    read = store.read({Entity.CUSTOMER: "cus-1"}, NOW.timestamp() + 1)
    assert read.values["customer_txn.frauds_known"] == 1.0


def test_feedback_errors_name_the_field(service: FraudService) -> None:
    d = service.score(req("t1"))
    with pytest.raises(NotFound):
        service.feedback(
            decision_id="dec_nope", transaction_id=None, label="fraud", reported_at=NOW
        )
    with pytest.raises(ValidationError) as err:
        service.feedback(decision_id=None, transaction_id=None, label="fraud", reported_at=NOW)
    assert err.value.field == "decision_id"
    with pytest.raises(ValidationError) as err:
        service.feedback(
            decision_id=d.decision_id,
            transaction_id=None,
            label="fraud",
            reported_at=NOW - timedelta(days=1),
        )
    assert err.value.field == "reported_at"
    assert service.decisions.feedback(d.decision_id) == []


def test_without_a_model_scoring_is_unavailable(service: FraudService) -> None:
    service.use_model(None)
    with pytest.raises(ModelUnavailable):
        service.score(req("t1"))


def test_unreachable_redis_still_decides_and_says_degraded(db: Database, model: FraudModel) -> None:
    dead = FeatureStore(RedisBackend(connect("redis://127.0.0.1:1/0", timeout_ms=20)))
    svc = FraudService(TransactionFeatures(dead), FraudConfig(db), DecisionLog(db), model=model)
    try:
        d = svc.score(req("t1"))
        assert d.features_degraded is True
        assert svc.decisions.get(d.decision_id).features_degraded is True
    finally:
        svc.decisions.close()


def test_rule_edits_reach_other_replicas_through_the_version_counter(
    service: FraudService, db: Database
) -> None:
    other = FraudConfig(db, poll_s=0)
    before = other.snapshot().version
    service.config.create_rule(
        {"name": "huge", "expression": ":amount: > 5000", "action": "review"}
    )
    after = other.snapshot()
    assert after.version > before and "huge" in {r.id for r in after.rules.rules}


def test_a_payment_sent_with_its_scored_transaction_id_counts_once(
    service: FraudService, store: FeatureStore
) -> None:
    from engine.events import ChargebackFiled, PaymentAttempted
    from features.ingest import label_event, payment_event

    service.score(req("t1", ts=NOW - timedelta(days=2)))
    paid = PaymentAttempted(
        payment_id="pay_1",
        order_id="o1",
        customer_id="cus-1",
        merchant_id="m-1",
        method="card",
        amount=Decimal("25.00"),
        currency="EUR",
        status="authorized",
        card_fingerprint="fp-1",
        device_id="dev-1",
        ip="10.1.2.3",
        email="ann@example.com",
        shipping_country="DE",
        occurred_at=NOW - timedelta(days=2),
        transaction_id="t1",
    )
    assert store.record([payment_event(paid)]).duplicates == 1
    read = store.read({Entity.CUSTOMER: "cus-1"}, NOW.timestamp())
    assert read.values["customer_txn.txn_count_7d"] == 1.0
    # its chargeback and an analyst's feedback are one label
    service.feedback(decision_id=None, transaction_id="t1", label="fraud", reported_at=NOW)
    cb = ChargebackFiled(
        chargeback_id="cb_1",
        order_id="o1",
        payment_id="pay_1",
        customer_id="cus-1",
        merchant_id="m-1",
        card_fingerprint="fp-1",
        amount=Decimal("25.00"),
        reason="fraudulent",
        transaction_at=NOW - timedelta(days=2),
        occurred_at=NOW,
        transaction_id="t1",
    )
    assert store.record_labels([label_event(cb)]).duplicates == 1
    read = store.read({Entity.CUSTOMER: "cus-1"}, NOW.timestamp() + 1)
    assert read.values["customer_txn.frauds_known"] == 1.0


def test_the_review_queue_lists_review_decisions_and_takes_one_verdict_each(
    service: FraudService, store: FeatureStore
) -> None:
    service.use_policy(Policy(elevated_at=0, highest_at=100, elevated_outcome="review"))
    reviewed = [service.score(req(f"r{i}", customer_id=f"cus-r{i}")) for i in range(3)]
    assert {d.outcome for d in reviewed} == {"review"}
    service.use_policy(Policy(elevated_at=100, highest_at=100))
    allowed = service.score(req("a1"))
    assert allowed.outcome == "allow"

    newest_first = [d.decision_id for d in reversed(reviewed)]
    page, cursor = service.decisions.reviews("open", limit=2)
    assert [r["decision_id"] for r in page] == newest_first[:2] and cursor
    rest, last = service.decisions.reviews("open", limit=2, cursor=cursor)
    assert [r["decision_id"] for r in rest] == newest_first[2:] and last is None
    first = page[0]
    assert (first["status"], first["resolution"], first["feedback"]) == ("open", None, [])
    assert first["customer_id"] == "cus-r2" and first["amount"] == 25.0 and first["reasons"]

    one, two, three = (d.decision_id for d in reviewed)
    approved = service.resolve_review(two, "approve", note="called the customer")
    assert (approved["label"], approved["resolution"], approved["replayed"]) == (
        "legit",
        "approve",
        False,
    )
    again = service.resolve_review(two, "approve")
    assert again["replayed"] is True and again["feedback_id"] == approved["feedback_id"]
    with pytest.raises(ReviewResolved) as resolved:
        service.resolve_review(two, "refuse")
    assert resolved.value.field == "resolution"

    refused = service.resolve_review(one, "refuse")
    assert refused["label"] == "fraud" and refused["features_degraded"] is False
    read = store.read({Entity.CUSTOMER: "cus-r0"}, NOW.timestamp() + 1)
    assert read.values["customer_txn.frauds_known"] == 1.0  # a refusal feeds the features
    # a chargeback that arrives first resolves a review too
    service.feedback(decision_id=three, transaction_id=None, label="chargeback", reported_at=NOW)

    assert service.decisions.reviews("open")[0] == []
    done, _ = service.decisions.reviews("resolved")
    assert [(r["decision_id"], r["resolution"]) for r in done] == [
        (three, "refuse"),
        (two, "approve"),
        (one, "refuse"),
    ]
    assert done[1]["feedback"][0]["note"] == "called the customer"
    assert len(service.decisions.reviews("all")[0]) == 3  # the allowed payment is no review

    with pytest.raises(NotInReview) as not_review:
        service.resolve_review(allowed.decision_id, "approve")
    assert not_review.value.field == "decision_id"
    assert service.decisions.feedback(allowed.decision_id) == []
    with pytest.raises(NotFound):
        service.resolve_review("dec_nope", "approve")
    for call, field in (
        (lambda: service.resolve_review(two, "maybe"), "resolution"),
        (lambda: service.decisions.reviews("pending"), "status"),
        (lambda: service.decisions.reviews(limit=0), "limit"),
        (lambda: service.decisions.reviews(cursor="!!"), "cursor"),
    ):
        with pytest.raises(ValidationError) as err:
            call()
        assert err.value.field == field


def test_two_reviewers_different_verdicts_store_one(service: FraudService) -> None:
    """Each pair races (a barrier lines them up); the decision's row lock lets one in."""
    service.use_policy(Policy(elevated_at=0, highest_at=100, elevated_outcome="review"))
    decisions = [service.score(req(f"race{i}", customer_id=f"cus-race{i}")) for i in range(8)]
    for d in decisions:
        barrier = threading.Barrier(2)

        def verdict(
            resolution: str, decision_id: str = d.decision_id, barrier: Any = barrier
        ) -> str:
            barrier.wait()
            try:
                return service.resolve_review(decision_id, resolution)["resolution"]
            except ReviewResolved:
                return "refused"

        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(verdict, ["approve", "refuse"]))
        assert outcomes in (["approve", "refused"], ["refuse", "refused"]), outcomes
        assert len(service.decisions.feedback(d.decision_id)) == 1
