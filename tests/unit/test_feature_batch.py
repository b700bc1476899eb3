"""Batch ingestion's plans (features/batch.py): one operation per key, the exact arguments of
features/lua/batch.lua, and the in-batch rules that keep Redis equal to the per-event path
(proved against Redis in tests/integration/test_feature_parity.py)."""

from __future__ import annotations

import pytest
import redis

from features import pipeline
from features.backends import MemoryBackend, RedisBackend
from features.batch import lua_schemas, plan_batch
from features.definitions import DAY, VIEWS, Entity, FeatureEvent, Source
from features.plan import Op
from features.store import FeatureStore

pytestmark = pytest.mark.unit
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
MINUTE, FIVE = int(T0 // 60), int(T0 // 300)
HOUR, SIX, DAY_K = int(T0 // 3600), int(T0 // 21600), int(T0 // DAY)


def payment(event_id: str, ts: float, amount: int = 100, **ids: str) -> FeatureEvent:
    entities = {Entity(k): v for k, v in ({"customer": "c1"} | ids).items()}
    return FeatureEvent(
        event_id, Source.TRANSACTION, "payment", ts, entities, {"amount": amount}, {}
    )


def view(event_id: str, ts: float, **ids: str) -> FeatureEvent:
    entities = {Entity(k): v for k, v in ids.items()}
    attrs = {"sku": ids["sku"]} if "sku" in ids else {}
    return FeatureEvent(event_id, Source.INTERACTION, "view", ts, entities, {"qty": 1}, attrs)


def op_for(ops: list[Op], key: str, kind: str | None = None) -> Op:
    (found,) = [op for op in ops if op[1] == key and (kind is None or op[0] == kind)]
    return found


def test_one_event_is_one_operation_per_key_with_values_only() -> None:
    ops = plan_batch([payment("p1", T0, 1250)])
    assert op_for(ops, "cw:v:customer_txn:c1") == (
        "1s",  # customer_txn, one event
        "cw:v:customer_txn:c1",
        "",  # last_txn: no shipping country
        *(MINUTE, FIVE, HOUR, SIX, DAY_K),  # txn_count per bucket size (a count: k only)
        *(MINUTE, 1250, FIVE, 1250, HOUR, 1250, SIX, 1250, DAY_K, 1250),  # amount_sum
        DAY_K,
        1250,  # amount_max
        repr(T0),  # _w, as the per-event path sends it
    )
    assert [op[0] for op in ops] == ["1s"]  # no card, device, ... and no member for a set


def test_events_of_one_key_merge_into_bucket_pairs() -> None:
    ops = plan_batch(
        [payment("p1", T0, 100), payment("p2", T0 + 1, 50), payment("p3", T0 + 600, 7)]
    )
    (op,) = ops
    assert op[:3] == ("1", "cw:v:customer_txn:c1", "")
    values = list(op[3:])
    # txn_count@60: three events in two minute buckets, ascending
    assert values[:5] == [2, MINUTE, 2, int((T0 + 600) // 60), 1]
    # amount_max@86400: the largest amount of the day
    assert values[-4:] == [1, DAY_K, 100, T0 + 600]


def test_an_event_out_of_retention_of_an_earlier_one_in_the_batch_is_dropped() -> None:
    """Per event, the 40-days-older payment arrives after the new one: every counter of the
    new one's buckets has moved past it, so it adds nothing (as plan.lua would decide)."""
    ops = plan_batch([payment("new", T0, 10), payment("old", T0 - 40 * DAY, 99)])
    (op,) = ops
    values = list(op[3:])
    assert values[:3] == [1, MINUTE, 1]  # txn_count@60 holds the new event only
    assert 99 not in values


def test_last_value_is_the_newest_event_and_the_later_of_equal_times() -> None:
    events = [
        FeatureEvent(f"p{i}", Source.TRANSACTION, "payment", ts, {Entity.CUSTOMER: "c1"}, {}, a)
        for i, (ts, a) in enumerate(
            [(T0, {"shipping_country": "DE"}), (T0, {"shipping_country": "FR"}), (T0 - 5, {})]
        )
    ]
    op = op_for(plan_batch(events), "cw:v:customer_txn:c1")
    assert op[2:4] == ("FR", T0)


def test_exact_distinct_members_fold_only_when_nothing_in_between_can_drop_them() -> None:
    keep = 7 * DAY + DAY  # customer_txn.cards: the 7-day window plus a bucket
    folded = plan_batch(
        [payment("a", T0, card="k1"), payment("b", T0 + 60, card="k2"), payment("c", T0 + 120)]
    )
    assert op_for(folded, "cw:z:customer_txn:cards:c1") == (
        "Y",
        "cw:z:customer_txn:cards:c1",
        31 * DAY + DAY,
        2,
        *("k1", T0, f"({T0 - keep!r}"),
        *("k2", T0 + 60, f"({T0 + 60 - keep!r}"),
    )
    again = plan_batch(
        [payment("a", T0, card="k1"), payment("b", T0 + 90, card="k1")]
    )  # the same card twice: one entry, newest time
    assert op_for(again, "cw:z:customer_txn:cards:c1")[3:] == (1, "k1", T0 + 90, f"({T0 - keep!r}")
    # k2 arrives 9 days later: its removal may drop k1, so k1's second sighting stays separate
    apart = plan_batch(
        [
            payment("a", T0, card="k1"),
            payment("b", T0 + 9 * DAY, card="k2"),
            payment("c", T0 + 9 * DAY + 1, card="k1"),
        ]
    )
    op = op_for(apart, "cw:z:customer_txn:cards:c1")
    assert op[3] == 3
    assert op[4::3] == ("k1", "k2", "k1")


def test_shopper_state_keeps_the_newest_touch_and_sums_trending() -> None:
    events = [
        view("v1", T0 + 5, customer="c1", sku="S1", category="shoes"),
        view("v2", T0, customer="c1", sku="S1", category="shoes"),
        view("v3", T0 + 9, customer="c2", sku="S1", category="shoes"),
    ]
    ops = plan_batch(events)
    assert op_for(ops, "cw:recent:customer:c1") == (
        "R",
        "cw:recent:customer:c1",
        1,
        repr(T0 + 5),
        "view|S1",
    )
    day = int(T0 // DAY)
    trend = op_for(ops, f"cw:trend:shoes:{day}")
    ttl = int((day + 1) * DAY - (T0 + 9)) + 3 * DAY  # the last event's expiry
    assert trend == ("Z", f"cw:trend:shoes:{day}", ttl, 1, 3, "S1")
    assert op_for(ops, "cw:v:sku_activity:S1")[0] == "7"  # three views merged


def test_the_lua_schemas_name_every_view_field_in_order() -> None:
    text = lua_schemas()
    for i, v in enumerate(VIEWS, start=1):
        assert f'SCHEMAS["{i}"] = ' in text
        assert f'SCHEMAS["{i}s"] = ' in text
        assert text.count(f"-- {v.name}\n") == 2
    assert '"t|last_txn", "txn_count@60"' in text
    assert "local RECENT_KEEP, RECENT_TTL = 50," in text


def test_calls_are_split_to_stay_short() -> None:
    backend = RedisBackend(redis.Redis())  # no connection is made
    assert backend.batch_function == f"{backend.function}_batch"
    ops = plan_batch([payment(f"p{i}", T0 + i * 3600, customer=f"c{i}") for i in range(20)])
    calls = pipeline.calls(backend.batch_function, ops, 100, "tok")
    assert len(calls) > 1
    assert all(c[:3] == ("FCALL", backend.batch_function, 0) for c in calls)
    # each call names its own "applied" marker (the key a replay checks)
    assert [c[3] for c in calls] == [f"cw:applied:tok:{j}" for j in range(len(calls))]
    assert sum(int(c[4]) for c in calls) == len(ops)  # type: ignore[call-overload]
    longest = max(len(op) for op in ops)
    assert all(len(c) - 5 < 100 + longest for c in calls)
    flat = [x for c in calls for x in c[5:]]
    assert flat == [x for op in ops for x in op]  # every operation once, in order
    assert {c[3] for c in pipeline.calls(backend.batch_function, ops, 100)} == {""}


def test_memory_backend_ingests_per_event_and_counts_duplicates() -> None:
    store = FeatureStore(MemoryBackend(), batch_size=2)
    events = [payment("a", T0), payment("b", T0 + 1), payment("a", T0 + 2)]
    result = store.record(events)
    assert (result.accepted, result.duplicates) == (2, 1)
    assert (
        store.read({Entity.CUSTOMER: "c1"}, now=T0 + 3).values["customer_txn.txn_count_10m"] == 2.0
    )
