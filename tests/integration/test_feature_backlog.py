"""Redis fails mid-stream: writes wait in the backlog and are replayed, in order, when it returns.

Two Redis servers of the test's own (never the shared one): one is stopped and restarted in the
middle of a stream of decisions, storefront events, labels and stock levels; the other takes the
same calls without a fault.  Afterwards both hold the same keys with the same contents.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from features.backends import RedisBackend
from features.connection import connect
from features.definitions import Entity, FeatureEvent, LabelEvent, Source
from features.store import FeatureStore
from tests.servers import RedisServer, redis_contents

pytestmark = pytest.mark.integration
T0 = 1_700_000_000.0


def _store(url: str, capacity: int = 100_000) -> FeatureStore:
    # A stopped server refuses at once whatever the timeout; a generous one keeps a busy CI
    # machine's scheduling stall from reading as an outage on the healthy server.
    return FeatureStore(
        RedisBackend(connect(url, timeout_ms=250)),
        bulk=RedisBackend(connect(url, timeout_ms=2000)),
        batch_size=50,
        backlog_capacity=capacity,
    )


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    with RedisServer(tmp_path / "faulty") as faulty, RedisServer(tmp_path / "steady") as steady:
        yield faulty, steady


def _stream(seed: int, start: float, n: int) -> Iterator[tuple[str, object]]:
    """Calls as the services make them: decisions on payments (one at a time), batches of
    storefront events, fraud labels, stock levels."""
    rng = random.Random(seed)
    customers = [f"c{i}" for i in range(8)]
    skus = [f"S{i}" for i in range(12)]
    for i in range(n):
        ts = start + i * 7.0
        roll = rng.random()
        if roll < 0.4:
            customer = rng.choice(customers)
            yield (
                "decide",
                FeatureEvent(
                    f"txn:{seed}-{i}",
                    Source.TRANSACTION,
                    "payment",
                    ts,
                    {
                        Entity.CUSTOMER: customer,
                        Entity.MERCHANT: f"m{rng.randrange(3)}",
                        Entity.CARD: f"card-{customer}",
                        Entity.IP: f"10.0.0.{rng.randrange(5)}",
                    },
                    {"amount": rng.randrange(100, 50_000)},
                    {"shipping_country": rng.choice(["DE", "FR", "US"])},
                ),
            )
        elif roll < 0.8:
            batch = []
            for j in range(rng.randrange(1, 6)):
                sku = rng.choice(skus)
                batch.append(
                    FeatureEvent(
                        f"ev:{seed}-{i}-{j}",
                        Source.INTERACTION,
                        rng.choice(["view", "add_to_cart", "purchase"]),
                        ts + j,
                        {
                            Entity.CUSTOMER: rng.choice(customers),
                            Entity.SESSION: f"s{rng.randrange(4)}",
                            Entity.SKU: sku,
                            Entity.CATEGORY: f"cat{int(sku[1:]) % 3}",
                        },
                        {"qty": 1},
                        {"sku": sku},
                    )
                )
            yield ("record", batch)
        elif roll < 0.9:
            customer = rng.choice(customers)
            yield (
                "label",
                LabelEvent(
                    f"lbl:{seed}-{i}",
                    ts - 86_400 * rng.randrange(1, 20),
                    ts,
                    {Entity.CUSTOMER: customer, Entity.MERCHANT: f"m{rng.randrange(3)}"},
                ),
            )
        else:
            yield ("stock", [(rng.choice(skus), f"w{rng.randrange(2)}", rng.randrange(0, 40))])


def _apply(store: FeatureStore, call: tuple[str, object]) -> bool:
    """Make the call; True when the store reported itself degraded."""
    kind, payload = call
    if kind == "decide":
        return store.decide(payload).degraded  # type: ignore[arg-type]
    if kind == "record":
        return store.record(payload).degraded  # type: ignore[arg-type]
    if kind == "label":
        return store.record_labels([payload], fast=True).degraded  # type: ignore[list-item]
    return not store.set_stock(payload, fast=True)  # type: ignore[arg-type]


def _assert_all_replayed(store: FeatureStore, faulty: RedisServer, steady: RedisServer) -> None:
    assert store.backlog.wait_empty(20), store.backlog_status()
    assert store.backlog_status().dropped == 0
    assert _cw(redis_contents(faulty.client())) == _cw(redis_contents(steady.client()))


def _cw(contents: dict[bytes, object]) -> dict[bytes, object]:
    return {k: v for k, v in contents.items() if k.startswith(b"cw:")}


def test_writes_during_an_outage_are_replayed_and_the_store_ends_equal(
    servers: tuple[RedisServer, RedisServer],
) -> None:
    faulty, steady = servers
    a, b = _store(faulty.url), _store(steady.url)
    try:
        for call in _stream(1, T0, 120):
            assert not _apply(a, call) and not _apply(b, call)

        faulty.stop()
        degraded = 0
        outage = list(_stream(2, T0 + 2000, 150))
        for call in outage:
            started = time.perf_counter()
            degraded += _apply(a, call)
            assert time.perf_counter() - started < 0.5  # fails fast, never stalls the caller
            assert not _apply(b, call)
        assert degraded == len(outage)  # every call during the outage said so
        status = a.backlog_status()
        assert status.pending > 0 and status.dropped == 0

        faulty.start()  # the same port and append-only file: its data is back
        assert a.backlog.wait_empty(20), a.backlog_status()
        after = a.backlog_status()
        assert after.pending == 0 and after.dropped == 0 and after.replayed == status.pending

        for call in _stream(3, T0 + 4000, 60):  # and writes go straight through again
            assert not _apply(a, call) and not _apply(b, call)
        got, want = _cw(redis_contents(faulty.client())), _cw(redis_contents(steady.client()))
        assert len(want) > 100
        assert got.keys() == want.keys()
        assert got == want
    finally:
        a.close()
        b.close()


def test_redis_flapping_during_the_replay_loses_nothing(
    servers: tuple[RedisServer, RedisServer],
) -> None:
    faulty, steady = servers
    a, b = _store(faulty.url), _store(steady.url)
    try:
        faulty.stop()
        for n, seed in enumerate((4, 5, 6)):
            for call in _stream(seed, T0 + n * 3000, 80):
                _apply(a, call)
                assert not _apply(b, call)
            faulty.start()
            time.sleep(0.05)  # the replay starts, then the server goes away again
            if n < 2:
                faulty.stop()
        _assert_all_replayed(a, faulty, steady)
    finally:
        a.close()
        b.close()


class Observed:
    """A ``BacklogObserver`` that keeps what it was told."""

    def __init__(self) -> None:
        self.pending_seen: list[int] = []
        self.replayed_n = self.dropped_n = 0

    def pending(self, n: int) -> None:
        self.pending_seen.append(n)

    def replayed(self, n: int) -> None:
        self.replayed_n += n

    def dropped(self, n: int) -> None:
        self.dropped_n += n


def test_a_full_backlog_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "r") as server:
        observed = Observed()
        store = _store(server.url, capacity=30)
        store.backlog.observer = observed
        try:
            server.stop()
            events = [
                FeatureEvent(
                    f"v{i}",
                    Source.INTERACTION,
                    "view",
                    T0 + i,
                    {Entity.SKU: "S1"},
                    {"qty": 1},
                    {"sku": "S1"},
                )
                for i in range(50)
            ]
            for e in events:
                assert store.record([e]).deferred == 1
            assert store.backlog_status().pending == 30
            assert store.backlog_status().dropped == 20
            assert max(observed.pending_seen) == 30 and observed.dropped_n == 20
            server.start()
            assert store.backlog.wait_empty(20)
            assert observed.pending_seen[-1] == 0 and observed.replayed_n == 30
            # only the 30 newest views reached the store
            views = store.inspect(Entity.SKU, "S1", now=T0 + 100)["views"]
            assert views["sku_activity"]["features"]["sku_activity.views_1d"] == 30.0  # type: ignore[index]
        finally:
            store.close()


def test_a_replay_cut_between_claims_and_writes_loses_nothing(
    servers: tuple[RedisServer, RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch path claims a chunk's ids before it sends their writes; a store that fails in
    between keeps the ids claimed.  A replay must not be cut there, or its next attempt skips
    those events as duplicates."""
    import features.pipeline

    faulty, steady = servers
    a, b = _store(faulty.url), _store(steady.url)
    try:
        faulty.stop()
        for call in _stream(7, T0, 100):
            _apply(a, call)
            assert not _apply(b, call)
        assert a.backlog_status().pending > 0

        real_calls = features.pipeline.calls
        cut = {"done": False}

        def cut_once(*args: object, **kwargs: object) -> object:
            if not cut["done"]:  # the claims are answered; the connection drops now
                cut["done"] = True
                raise redis.ConnectionError("dropped after the claims")
            return real_calls(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(features.pipeline, "calls", cut_once)
        faulty.start()
        _assert_all_replayed(a, faulty, steady)
    finally:
        a.close()
        b.close()


def _views(seed: int, n: int) -> list[FeatureEvent]:
    """``n`` storefront events over a few customers, sessions and SKUs (ids repeat a few)."""
    batch = [e for kind, call in _stream(seed, T0, 4 * n) if kind == "record" for e in call]  # type: ignore[union-attr]
    return (batch + batch[:5])[:n]  # type: ignore[operator]


def _cut_ingestion(
    monkeypatch: pytest.MonkeyPatch, after_calls: int, which: int = 0
) -> dict[str, bool]:
    """The ``which``-th chunk's calls (0: the first) go to Redis with the connection closed
    by the server after ``after_calls`` of them (``QUIT``): Redis applied those calls and
    the chunk's and the next chunk's claims; the client learns nothing more."""
    import features.pipeline

    real_calls = features.pipeline.calls
    state = {"seen": -1, "cut": False}

    def cut(*args: object, **kwargs: object) -> object:
        out = real_calls(*args, **kwargs)  # type: ignore[arg-type]
        if not state["cut"] and out and out[0][3]:  # batch ingestion's calls (with markers)
            state["seen"] += 1
            if state["seen"] == which:
                state["cut"] = True
                return [*out[:after_calls], ("QUIT",), *out[after_calls:]]
        return out

    monkeypatch.setattr(features.pipeline, "calls", cut)
    return state  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("after_calls", "which"),
    [(0, 0), (2, 0), (3, 1)],
    ids=["after-the-claims", "between-two-calls", "second-chunk"],
)
def test_batch_ingestion_cut_off_midway_is_finished_exactly_once(
    servers: tuple[RedisServer, RedisServer],
    monkeypatch: pytest.MonkeyPatch,
    after_calls: int,
    which: int,
) -> None:
    """Batch ingestion claims a chunk's ids, then sends its writes in several calls.  Cut off
    after the claims, or after some of the calls: what reached Redis is not applied twice and
    what did not is not lost (the chunk is replayed under its claim token)."""
    faulty, steady = servers
    a, b = _store(faulty.url), _store(steady.url)
    for store in (a, b):
        store.batch_size = 40
        store.bulk.max_call_args = 60  # type: ignore[attr-defined]
    try:
        events = _views(8, 130)
        assert not b.record(events).degraded
        state = _cut_ingestion(monkeypatch, after_calls, which)
        result = a.record(events)
        assert state["cut"] and result.degraded and result.deferred > 0
        assert a.backlog.wait_empty(20), a.backlog_status()
        assert a.backlog_status().dropped == 0
        markers = [k for k in _cw(redis_contents(faulty.client())) if k.startswith(b"cw:applied:")]
        got = {k: v for k, v in _cw(redis_contents(faulty.client())).items() if k not in markers}
        assert got == _cw(redis_contents(steady.client()))
        # the replayed chunks' markers are gone; a chunk done before the cut may keep its own
        # (the request that would delete them was cut too) until they expire
        assert len({m.rsplit(b":", 1)[0] for m in markers}) <= (1 if which else 0)
        again = a.record(events)  # and every id stays claimed once
        assert (again.accepted, again.degraded) == (0, False)
    finally:
        a.close()
        b.close()
