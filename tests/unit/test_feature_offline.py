"""The offline point-in-time features: hand-computed edges, and the in-memory online store.

Times are built from ``D``, a UTC midnight, so bucket edges are easy to state.  The last test
replays generated streams through ``FeatureStore(MemoryBackend())`` (the same plans the Redis
store runs) and compares every feature of every event.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.errors import ValidationError
from features.backends import MemoryBackend
from features.definitions import (
    ALL_TXN,
    D1D,
    D7D,
    DAY,
    FeatureEvent,
    LabelEvent,
    Source,
    bucket,
    cents,
    derive,
)
from features.offline import (
    INTERACTION_ENTITIES,
    LABEL_DELAY_S,
    TRANSACTION_COLUMNS,
    TRANSACTION_ENTITIES,
    feature_names,
    interaction_events,
    interaction_features,
    load_table,
    transaction_events,
    transaction_features,
)
from features.offline_kernels import bucket_of, default_of, sliding_distinct
from features.store import FeatureStore

pytestmark = pytest.mark.unit

D = 19_700 * DAY  # 2023-12-09T00:00:00Z
NOW = D + 35 * DAY + 12_345.5  # reads in the hand-computed cases happen here
TX_ENTITIES = TRANSACTION_ENTITIES
IX_ENTITIES = INTERACTION_ENTITIES


def txs(*rows: dict[str, Any]) -> pd.DataFrame:
    """A raw transactions table; every row defaults to customer c1 at merchant m1, 1.00."""
    base = {"customer_id": "c1", "merchant_id": "m1", "amount": 1.0}
    frame = pd.DataFrame([base | r for r in rows])
    frame.insert(0, "transaction_id", [f"t{i}" for i in range(len(rows))])
    return frame


def offline(frame: pd.DataFrame, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    return transaction_features(transaction_events(frame), labels)


# --- windows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("w", ALL_TXN, ids=lambda w: w.name)
def test_count_and_sum_windows_end_at_the_read_bucket(w: Any) -> None:
    first = (bucket(NOW, w.bucket) - w.n + 1) * w.bucket  # first second of the oldest bucket
    f = offline(
        txs(
            {"timestamp": first - 0.5, "amount": 1.0},  # one bucket too old
            {"timestamp": first, "amount": 2.0},
            {"timestamp": NOW, "amount": 4.0},  # same time, earlier row: already recorded
            {"timestamp": NOW, "amount": 8.0},  # the read
            {"timestamp": NOW, "amount": 16.0},  # same time, later row: not yet
        )
    )
    read = f.iloc[3]
    assert read[f"customer_txn.txn_count_{w.name}"] == 2.0
    assert read[f"customer_txn.amount_sum_{w.name}"] == 6.0
    assert read[f"customer_txn.amount_mean_{w.name}"] == 3.0
    assert f.iloc[4][f"customer_txn.txn_count_{w.name}"] == 3.0
    assert f.iloc[0][f"customer_txn.amount_mean_{w.name}"] == 0.0  # 0/0 reads 0


@pytest.mark.parametrize("w", [D1D, D7D], ids=lambda w: w.name)
def test_distinct_windows_count_each_value_once(w: Any) -> None:
    first = (bucket(NOW, w.bucket) - w.n + 1) * w.bucket
    f = offline(
        txs(
            {"timestamp": first - 0.5, "card_id": "k-old"},
            {"timestamp": first, "card_id": "k1"},
            {"timestamp": first + 1, "card_id": "k2"},
            {"timestamp": NOW - 1, "card_id": "k1"},
            {"timestamp": NOW - 1},  # no card: not a member
            {"timestamp": NOW, "card_id": "k3"},
        )
    )
    assert f.iloc[5][f"customer_txn.cards_{w.name}"] == 2.0
    assert f.iloc[5]["card_txn.customers_7d"] == 0.0  # k3 is new
    assert f.iloc[3]["card_txn.customers_7d"] == 1.0  # k1 seen with c1


def test_label_delayed_ratio_counts_reported_labels_in_the_shifted_window() -> None:
    k = bucket(NOW, DAY)
    for n in (1, 7, 30):
        lo, hi = (k - 7 - n + 1) * DAY, (k - 7 + 1) * DAY  # [lo, hi): the window's days
        frame = txs(
            {"timestamp": lo - 0.5, "is_fraud": 1},  # day before the window
            {"timestamp": lo, "is_fraud": 1},  # reported before the read
            {"timestamp": hi - 0.5, "is_fraud": 1},  # reported exactly at the read
            {"timestamp": lo + 1, "is_fraud": 1},  # reported just after the read
            {"timestamp": lo + 2},
            {"timestamp": hi, "is_fraud": 1},  # day after the window
            {"timestamp": NOW},
        )
        labels = pd.DataFrame(
            {  # t1 twice (counted once), and a label for an unknown transaction (ignored)
                "transaction_id": ["t0", "t1", "t2", "t3", "t5", "t1", "t99"],
                "reported_at": [NOW - 9, NOW - 1, NOW, NOW + 1, NOW - 1, NOW - 2, NOW - 1],
            }
        )
        read = offline(frame, labels).iloc[6]
        base = f"merchant_txn.fraud_{n}d_delay7d"
        assert read[f"{base}_count"] == 4.0, n
        assert read[f"{base}_frauds"] == 2.0, n
        assert read[f"{base}_ratio"] == 0.5, n
        # the customer view knows every label reported by the read, whatever its day
        assert read["customer_txn.frauds_known"] == 4.0


def test_labels_default_to_reported_seven_days_after_the_transaction() -> None:
    assert LABEL_DELAY_S == 7 * DAY
    t = D + DAY
    frame = txs(
        {"timestamp": t, "is_fraud": 1},
        {"timestamp": t + 7 * DAY - 1},
        {"timestamp": t + 7 * DAY},  # the label arrives just before this one
        {"timestamp": t + 7 * DAY + 1, "is_fraud": 1, "reported_at": t + 7 * DAY + 2},
        {"timestamp": t + 7 * DAY + 2},
    )
    known = offline(frame)["customer_txn.frauds_known"].tolist()
    assert known == [0.0, 0.0, 1.0, 1.0, 2.0]
    ratio = offline(frame)["merchant_txn.fraud_1d_delay7d_ratio"].tolist()
    assert ratio == [0.0, 0.0, 1.0, 1.0, 1.0]  # day t: one transaction, one fraud


def test_a_label_reported_late_counts_only_once_reported() -> None:
    t = D + DAY + 5
    frame = txs(
        {"timestamp": t, "is_fraud": 1, "reported_at": t + 20 * DAY},
        {"timestamp": t + 19 * DAY},
        {"timestamp": t + 20 * DAY},
        {"timestamp": t + 38 * DAY},  # day k_t + 38: the 30-day window ends on k_t + 31
    )
    f = offline(frame)
    assert f["merchant_txn.fraud_30d_delay7d_count"].tolist() == [0.0, 1.0, 1.0, 2.0]
    assert f["merchant_txn.fraud_30d_delay7d_frauds"].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert f["merchant_txn.fraud_7d_delay7d_frauds"].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert f["customer_txn.frauds_known"].tolist() == [0.0, 0.0, 1.0, 1.0]


# --- TTL gate, last values --------------------------------------------------------------------


def test_ttl_gate_reads_defaults_once_the_last_event_is_older_than_the_ttl() -> None:
    t = D + DAY
    ttl = 31 * DAY
    frame = txs(
        {"timestamp": t, "shipping_country": "DE", "is_fraud": 1, "reported_at": t + DAY},
        {"timestamp": t + ttl, "shipping_country": "FR"},  # exactly the TTL: still live
        {"timestamp": t + 2 * ttl + 0.25},  # TTL + 0.25 s after the last event: stale
        {"timestamp": t + 2 * ttl + 1},
    )
    f = offline(frame)
    assert f.iloc[1]["customer_txn.last_txn"] == "DE"
    assert f.iloc[1]["customer_txn.last_txn_age_s"] == float(ttl)
    assert f.iloc[1]["customer_txn.frauds_known"] == 1.0
    stale = f.iloc[2]
    assert stale["customer_txn.last_txn"] is None
    assert stale["customer_txn.last_txn_age_s"] == -1.0
    assert stale["customer_txn.frauds_known"] == 0.0
    assert stale["merchant_txn.txn_count_30d"] == 0.0  # merchant m1, TTL 40 days: also gone
    # the stale read recorded an event, so the view is live again (the label is still known)
    assert f.iloc[3]["customer_txn.last_txn"] == "FR"
    assert f.iloc[3]["customer_txn.frauds_known"] == 1.0
    assert f.iloc[3]["customer_txn.txn_count_10m"] == 1.0


def test_labels_do_not_refresh_the_ttl() -> None:
    t = D + DAY
    frame = txs(
        {"timestamp": t, "is_fraud": 1, "reported_at": t + 30 * DAY},
        {"timestamp": t + 31 * DAY + 1},
    )
    assert offline(frame).iloc[1]["customer_txn.frauds_known"] == 0.0


def test_last_value_is_the_latest_event_carrying_it_and_its_age() -> None:
    t = D + 0.25
    frame = txs(
        {"timestamp": t, "shipping_country": "DE"},
        {"timestamp": t + 10},
        {"timestamp": t + 10, "shipping_country": "FR", "merchant_id": "m2"},
        {"timestamp": t + 10, "shipping_country": "US", "card_id": "k1"},
        {"timestamp": t + 25, "card_id": "k1", "merchant_id": None},
        {"timestamp": t + 25.5, "card_id": "k1"},
    )
    f = offline(frame)
    assert f["customer_txn.last_txn"].tolist() == [None, "DE", "DE", "FR", "US", "US"]
    assert f["customer_txn.last_txn_age_s"].tolist() == [-1.0, 10.0, 10.0, 0.0, 15.0, 15.5]
    # card k1's last merchant: its first transaction had m1; the second had none
    assert f["card_txn.last_txn"].tolist()[3:] == [None, "m1", "m1"]
    assert f["card_txn.last_txn_age_s"].tolist()[3:] == [-1.0, 15.0, 15.5]


def test_missing_entities_read_defaults_and_are_not_recorded() -> None:
    f = offline(
        txs(
            {"timestamp": D, "customer_id": None, "card_id": ""},
            {"timestamp": D + 1, "customer_id": "", "merchant_id": float("nan")},
            {"timestamp": D + 2, "card_id": "k1"},
        )
    )
    assert f.iloc[2]["customer_txn.txn_count_1h"] == 0.0
    assert f.iloc[2]["merchant_txn.txn_count_1d"] == 1.0
    assert f.iloc[0]["card_txn.last_txn"] is None
    assert f.iloc[0]["card_txn.last_txn_age_s"] == -1.0


def test_a_repeated_transaction_id_is_read_but_recorded_once() -> None:
    frame = txs({"timestamp": D}, {"timestamp": D + 1}, {"timestamp": D + 2})
    frame.loc[1, "transaction_id"] = "t0"  # a retry of t0
    f = offline(frame)
    assert f["customer_txn.txn_count_1h"].tolist() == [0.0, 1.0, 1.0]


def test_output_keeps_the_input_index_and_order() -> None:
    frame = txs({"timestamp": D + 2}, {"timestamp": D}, {"timestamp": D + 1})
    frame.index = pd.Index(["late", "early", "middle"])
    f = offline(frame)
    assert list(f.index) == ["late", "early", "middle"]
    assert f["customer_txn.txn_count_1h"].tolist() == [2.0, 0.0, 1.0]


def test_derived_features_are_definitions_derive() -> None:
    f = offline(
        txs(
            {"timestamp": D, "amount": 0.1},
            {"timestamp": D + 1, "amount": 0.2},
            {"timestamp": D + 2, "amount": 0.7},
            {"timestamp": D + 3},
        )
    )
    row = f.iloc[3].to_dict()
    derived = [n for n in row if "_mean_" in n or n.endswith("_ratio")]
    stored = {n: v for n, v in row.items() if n not in derived}
    assert {n: derive(stored)[n] for n in derived} == {n: row[n] for n in derived}
    assert row["customer_txn.amount_sum_1h"] == 100 * 0.01  # integer cents, scaled once
    assert row["customer_txn.amount_mean_1h"] == (100 * 0.01) / 3.0


# --- import format ----------------------------------------------------------------------------


def test_transaction_events_normalises_the_import_format() -> None:
    raw = pd.DataFrame(
        {
            "transaction_id": [7, 8, 9],
            "timestamp": ["2018-04-01T00:00:31", "2018-04-01T02:00:31+02:00", "2018-04-01"],
            "customer_id": [596.0, np.nan, 3.0],
            "terminal_id": [3156, 12, 12],
            "amount": [0.125, 1.005, 2.675],
            "is_fraud": [0, 1, 0],
        }
    )
    ev = transaction_events(raw)
    assert ev["event_id"].tolist() == ["7", "8", "9"]
    assert ev["ts"].tolist() == [1522540831.0, 1522540831.0, 1522540800.0]
    assert ev["customer"].tolist() == ["596", None, "3"]
    assert ev["merchant"].tolist() == ["3156", "12", "12"]
    assert ev["amount"].tolist() == [cents(0.125), cents(1.005), cents(2.675)] == [12, 100, 268]
    assert ev["card"].tolist() == [None, None, None]
    assert ev["type"].tolist() == ["payment"] * 3
    assert set(TRANSACTION_COLUMNS) >= {"transaction_id", "timestamp", "amount", "reported_at"}


def test_timestamps_keep_microseconds_and_treat_naive_as_utc() -> None:
    raw = txs(
        {"timestamp": "2024-01-01T00:00:00.123456"},
        {"timestamp": "2024-01-01T01:00:00.5+01:00"},
        {"timestamp": "2024-01-01T00:00:00.5Z"},
    )
    got = transaction_events(raw)["ts"].tolist()
    expected = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert got == [expected + 0.123456, expected + 0.5, expected + 0.5]
    as_datetimes = raw.assign(
        timestamp=pd.to_datetime(raw["timestamp"], utc=True, format="ISO8601")
    )
    assert transaction_events(as_datetimes)["ts"].tolist() == got


def test_bad_rows_are_collected_into_one_error() -> None:
    raw = txs({"timestamp": "yesterday", "amount": "x"}, {"timestamp": "2024-01-01", "amount": 1})
    with pytest.raises(ValidationError) as err:
        transaction_events(raw)
    assert err.value.code == "invalid_import"
    assert {(i["row"], i["column"]) for i in err.value.items} == {(0, "timestamp"), (0, "amount")}
    with pytest.raises(ValidationError, match="missing column"):
        transaction_events(raw.drop(columns=["merchant_id"]))
    with pytest.raises(ValidationError, match="unknown table format"):
        load_table("transactions.xlsx")


def test_bucket_of_is_definitions_bucket() -> None:
    rng = np.random.default_rng(3)
    ts = np.concatenate([rng.uniform(0, 2e9, 2000), np.arange(-3, 3) * 60.0 + D, [D - 1e-6]])
    for size in (60, 300, 3600, 6 * 3600, DAY):
        assert bucket_of(ts, size).tolist() == [bucket(float(t), size) for t in ts]


def test_sliding_distinct() -> None:
    vals = [0, 1, 0, -1, 2, 1]
    lo = [0, 0, 0, 1, 2, 4]
    # windows: [], [0], [0,1], [1,0], [0,-1], [2]
    assert sliding_distinct(vals, lo).tolist() == [0, 1, 2, 2, 1, 1]


# --- against the online store's in-memory executor ------------------------------------------


def _tx_stream(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    bursts = rng.uniform(0, 40 * DAY, size=6)
    micros = (D + bursts[rng.integers(0, 6, n)] + rng.exponential(1800, n)) * 1e6
    frame = pd.DataFrame({"transaction_id": [f"t{i}" for i in range(n)]})
    frame["timestamp"] = np.floor(micros) / 1e6
    frame.loc[5::17, "timestamp"] = frame["timestamp"].shift(1)  # exact ties
    pools = {"customer_id": 5, "card_id": 6, "device_id": 4, "ip": 3, "email": 4, "merchant_id": 3}
    for column, size in pools.items():
        ids = np.array([f"{column[:2]}{i}" for i in range(size)], dtype=object)[
            rng.integers(0, size, n)
        ]
        ids[rng.random(n) < 0.15] = None
        frame[column] = ids
    frame["amount"] = rng.integers(0, 100_000, n) / 100
    frame["shipping_country"] = np.array(["DE", "FR", None], dtype=object)[rng.integers(0, 3, n)]
    frame.loc[11::29, "transaction_id"] = "t3"  # retries of one id
    fraud = frame.sample(frac=0.2, random_state=int(rng.integers(1 << 31)))
    delays = rng.choice([0.0, 2 * DAY, 8 * DAY, 45 * DAY], len(fraud)) + rng.uniform(0, DAY)
    labels = pd.DataFrame(
        {"transaction_id": fraud["transaction_id"], "reported_at": fraud["timestamp"] + delays}
    )
    return frame, labels


def _replay_transactions(frame: pd.DataFrame, labels: pd.DataFrame) -> list[dict[str, Any]]:
    store = FeatureStore(MemoryBackend())
    order = sorted(range(len(frame)), key=lambda i: (frame["timestamp"].iloc[i], i))
    first: dict[str, Any] = {}
    for i in order:
        first.setdefault(frame["transaction_id"].iloc[i], frame.iloc[i])
    pending = sorted(
        (float(r.reported_at), j, r.transaction_id)
        for j, r in enumerate(labels.itertuples())
        if r.transaction_id in first
    )
    out: list[dict[str, Any]] = [{} for _ in range(len(frame))]
    for i in order:
        row = frame.iloc[i]
        ts = float(row["timestamp"])
        due = [p for p in pending if p[0] <= ts]
        pending = pending[len(due) :]
        store.record_labels(
            [
                LabelEvent(
                    tid,
                    float(first[tid]["timestamp"]),
                    rep,
                    {e: first[tid][c] for c, e in TX_ENTITIES.items() if first[tid][c]},
                )
                for rep, _, tid in due
            ]
        )
        event = FeatureEvent(
            row["transaction_id"],
            Source.TRANSACTION,
            "payment",
            ts,
            {e: row[c] for c, e in TX_ENTITIES.items() if row[c]},
            {"amount": cents(float(row["amount"]))},
            {"shipping_country": row["shipping_country"]} if row["shipping_country"] else {},
        )
        out[i] = store.decide(event).values
    return out


def _differences(online: dict[str, Any], row: pd.Series) -> list[tuple[Any, ...]]:
    """Features where the offline row differs from the online read (a feature the online store
    did not return, because the entity was missing, must hold its default)."""
    out = []
    for name, got in row.items():
        want = online.get(str(name), default_of(str(name)))
        if isinstance(want, float) and isinstance(got, float):
            same = want == got or math.isclose(want, got, rel_tol=1e-12)
        else:
            same = want == got
        if not same:
            out.append((row.name, name, want, got))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_transactions_equal_the_in_memory_online_store(seed: int) -> None:
    frame, labels = _tx_stream(np.random.default_rng(seed), 400)
    online = _replay_transactions(frame, labels)
    f = offline(frame, labels)
    assert list(f.columns) == feature_names(Source.TRANSACTION)
    assert set(f.columns) >= set().union(*online)
    assert [d for i, values in enumerate(online) for d in _differences(values, f.iloc[i])] == []
    assert (f["merchant_txn.fraud_30d_delay7d_frauds"] > 0).any()


def test_columns_are_the_keys_the_online_store_returns() -> None:
    store = FeatureStore(MemoryBackend())
    entities = dict.fromkeys(TX_ENTITIES.values(), "x")
    event = FeatureEvent("e", Source.TRANSACTION, "payment", D, entities, {"amount": 1})
    assert set(store.decide(event).values) == set(feature_names(Source.TRANSACTION))


def test_interactions_equal_the_in_memory_online_store() -> None:
    rng = np.random.default_rng(9)
    n = 500
    frame = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "timestamp": D + np.sort(rng.uniform(0, 10 * DAY, n)).round(3),
            "type": rng.choice(["view", "add_to_cart", "purchase", "search", "other"], n),
            "customer_id": rng.choice(["c1", "c2", "c3", None], n),
            "session_id": rng.choice(["s1", "s2", "s3", "s4", None], n),
            "sku": rng.choice(["A", "B", "C", "D", None], n),
            "category": rng.choice(["x", "y", None], n),
            "qty": rng.choice([1.0, 2.0, 5.0, np.nan], n),
        }
    )
    store = FeatureStore(MemoryBackend())
    f = interaction_features(interaction_events(frame))
    assert list(f.columns) == feature_names(Source.INTERACTION)
    for i, row in frame.iterrows():
        event = FeatureEvent(
            row["event_id"],
            Source.INTERACTION,
            row["type"],
            float(row["timestamp"]),
            {e: row[c] for c, e in IX_ENTITIES.items() if row[c]},
            {"qty": 1 if math.isnan(row["qty"]) else int(row["qty"])},
        )
        assert _differences(store.decide(event).values, f.loc[i]) == []
