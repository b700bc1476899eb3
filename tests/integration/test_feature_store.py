"""The online store on the real Redis: TTLs, idempotency, one round trip, degraded reads,
the stock mirror, domain events through the bus, and rebuild from the database."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.domain import LineRequest, OrderAction
from engine.commerce.history import history
from engine.commerce.interactions import InteractionRequest, Interactions
from engine.commerce.orders import CardInfo, OrderRequest, Orders, PaymentRequest
from engine.events import MessageBus
from features.backends import RedisBackend
from features.connection import connect
from features.definitions import DAY, VIEWS_BY_NAME, Entity, FeatureEvent, LabelEvent, Source
from features.ingest import FeatureIngestor
from features.rebuild import rebuild
from features.store import FeatureStore
from serving.embedded import start_server
from tests.servers import free_port

pytestmark = pytest.mark.integration
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_STORE", "redis://127.0.0.1:6379/12")
T0 = 1_700_000_000.0
ALL = {
    Entity.CUSTOMER: "c1",
    Entity.CARD: "k1",
    Entity.DEVICE: "d1",
    Entity.IP: "10.0.0.1",
    Entity.EMAIL: "a@example.com",
    Entity.MERCHANT: "m1",
}


@pytest.fixture
def client(flushed_redis: Callable[[str], Any]) -> Iterator[redis.Redis]:
    with flushed_redis(URL) as c:
        yield c


@pytest.fixture
def store(client: redis.Redis) -> FeatureStore:
    return FeatureStore(RedisBackend(client))


def tx(event_id: str, ts: float, amount_cents: int = 1000, **entities: str) -> FeatureEvent:
    ents = dict(ALL) | {Entity(k): v for k, v in entities.items()}
    return FeatureEvent(
        event_id,
        Source.TRANSACTION,
        "payment",
        ts,
        ents,
        {"amount": amount_cents},
        {"shipping_country": "DE"},
    )


class CountingConnection(redis.Connection):
    """Logs what the client does on the wire: S = one request sent, R = one reply read."""

    log: list[str] = []

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        CountingConnection.log.append("S")
        return super().send_packed_command(command, check_health)

    def read_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        CountingConnection.log.append("R")
        return super().read_response(*args, **kwargs)


def round_trips(log: list[str]) -> int:
    """Requests the client waited on (a request followed by at least one reply)."""
    text = "".join(log)
    return sum(1 for i, c in enumerate(text) if c == "S" and text[i + 1 : i + 2] == "R")


def test_decide_reads_before_recording_in_one_round_trip(store: FeatureStore) -> None:
    pool = redis.ConnectionPool.from_url(URL, connection_class=CountingConnection)
    counted = FeatureStore(RedisBackend(redis.Redis(connection_pool=pool)))
    counted.decide(tx("t1", T0, 1000))  # loads the write function on first use
    CountingConnection.log = []
    read = counted.decide(tx("t2", T0 + 30, 2550))
    assert round_trips(CountingConnection.log) == 1
    # the writes follow the answered reads in a second request that answers nothing
    assert CountingConnection.log[-1] == "S"
    assert CountingConnection.log.count("S") == 2
    assert read.values["customer_txn.txn_count_10m"] == 1.0
    assert read.values["customer_txn.amount_sum_1d"] == 10.0
    assert read.values["customer_txn.last_txn_age_s"] == 30.0
    again = store.decide(tx("t3", T0 + 60, 100))
    assert again.values["customer_txn.txn_count_10m"] == 2.0
    assert again.values["customer_txn.amount_sum_1d"] == pytest.approx(35.5)
    assert again.values["customer_txn.amount_mean_1d"] == pytest.approx(17.75)


def test_replayed_event_ids_count_once(store: FeatureStore) -> None:
    events = [tx(f"e{i}", T0 + i, 100) for i in range(20)]
    first = store.record(events)
    assert (first.accepted, first.duplicates) == (20, 0)
    for _ in range(3):
        again = store.record(events[:10])
        assert (again.accepted, again.duplicates) == (0, 10)
    assert store.decide(tx("e5", T0 + 25)).duplicate is True
    values = store.read(ALL, now=T0 + 30).values
    assert values["customer_txn.txn_count_1h"] == 20.0
    assert values["card_txn.txn_count_1h"] == 20.0


def test_view_ttl_is_enforced_per_view(store: FeatureStore) -> None:
    store.record([tx("a", T0)])
    ip_ttl = VIEWS_BY_NAME["ip_txn"].ttl  # 2 days; the customer view keeps 31 days
    fresh = store.read(ALL, now=T0 + ip_ttl - 1).values
    assert fresh["ip_txn.customers_1d"] == 0.0  # window passed, view alive
    assert fresh["customer_txn.txn_count_7d"] == 1.0
    late = store.read(ALL, now=T0 + ip_ttl + 1).values
    assert late["customer_txn.txn_count_7d"] == 1.0
    assert late["customer_txn.last_txn"] == "DE"
    gone = store.read(ALL, now=T0 + VIEWS_BY_NAME["customer_txn"].ttl + 1).values
    assert gone["customer_txn.txn_count_30d"] == 0.0
    assert gone["customer_txn.last_txn"] is None
    assert gone["customer_txn.last_txn_age_s"] == -1.0


def test_redis_expires_view_zset_and_hll_keys(store: FeatureStore, client: redis.Redis) -> None:
    now = time.time()
    store.record([tx("x", now)])
    view_ttl = client.ttl("cw:v:customer_txn:c1")
    assert VIEWS_BY_NAME["customer_txn"].ttl < view_ttl <= VIEWS_BY_NAME["customer_txn"].ttl + DAY
    assert client.type("cw:z:customer_txn:cards:c1") == b"zset"
    assert 0 < client.ttl("cw:z:customer_txn:cards:c1") <= VIEWS_BY_NAME["customer_txn"].ttl + DAY
    hll = client.keys("cw:h:ip_txn:cards:*:10.0.0.1")  # approximate distinct counts
    assert len(hll) == 1
    assert 0 < client.ttl(hll[0]) <= 3600 + 600 + 60
    assert 0 < client.ttl("cw:seen:x") <= 7 * DAY


def test_windows_slide_and_old_buckets_are_trimmed(
    store: FeatureStore, client: redis.Redis
) -> None:
    for i in range(40):  # one transaction a day for 40 days
        store.record([tx(f"d{i}", T0 + i * DAY)])
    values = store.read(ALL, now=T0 + 39 * DAY + 1).values
    assert values["customer_txn.txn_count_30d"] == 30.0
    assert values["customer_txn.txn_count_7d"] == 7.0  # 28 six-hour buckets cover 7 days
    total, last, snapshots = client.hget("cw:v:customer_txn:c1", "txn_count@86400").split(b";")
    assert (total, int(last)) == (b"40", int((T0 + 39 * DAY) // DAY))
    assert len(snapshots.split(b",")) == 30  # only the buckets a 30-day window can still need
    minute = client.hget("cw:v:customer_txn:c1", "txn_count@60").split(b";")[2]
    assert len(minute.split(b",")) == 1
    members = client.zrange("cw:z:customer_txn:cards:c1", 0, -1)
    assert members == [b"k1"]


def test_label_delayed_ratio_counts_labels_known_by_then(store: FeatureStore) -> None:
    for i in range(10):
        store.record([tx(f"m{i}", T0 + i * 3600, merchant="mX")])
    label = LabelEvent("cb1", T0, T0 + 3 * DAY, {Entity.MERCHANT: "mX"})
    read_at = T0 + 8 * DAY
    base = "merchant_txn.fraud_7d_delay7d"
    assert store.read({Entity.MERCHANT: "mX"}, now=read_at).values[f"{base}_frauds"] == 0.0
    store.record_labels([label])
    assert store.record_labels([label]).duplicates == 1
    values = store.read({Entity.MERCHANT: "mX"}, now=read_at).values
    assert values[f"{base}_count"] == 10.0
    assert values[f"{base}_frauds"] == 1.0
    assert values[f"{base}_ratio"] == pytest.approx(0.1)
    shown = store.inspect(Entity.MERCHANT, "mX", now=read_at)["views"]["merchant_txn"]
    assert shown["features"] == {k: v for k, v in values.items() if k.startswith("merchant_txn.")}


def test_unreachable_redis_degrades_instead_of_raising() -> None:
    port = free_port()
    server = start_server(port)  # a server of this test's own, on its own port
    try:
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(100):
            try:
                if redis.Redis.from_url(url).ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.05)
        # a killed server refuses at once; the generous timeout keeps the healthy call healthy
        fs = FeatureStore(RedisBackend(connect(url, timeout_ms=250)))
        assert fs.decide(tx("ok", T0)).degraded is False
        server.kill()
        server.wait()
        started = time.perf_counter()
        read = fs.decide(tx("down", T0 + 1))
        elapsed = time.perf_counter() - started
        assert read.degraded is True
        assert read.values["customer_txn.txn_count_1h"] == 0.0
        assert read.values["customer_txn.last_txn"] is None
        assert elapsed < 1.0  # fails fast (the benchmark measures the real figure)
        assert fs.record([tx("w", T0 + 2)]).degraded is True
        assert fs.available(["S1"]) == ({}, True)
        assert fs.inspect(Entity.CUSTOMER, "c1")["degraded"] is True
    finally:
        server.kill()


def test_blackholed_redis_times_out_fast() -> None:
    """A server that accepts connections but never answers: reads give up at the timeout."""
    with socket.socket() as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen(16)
        url = f"redis://127.0.0.1:{sink.getsockname()[1]}/0"
        fs = FeatureStore(RedisBackend(connect(url, timeout_ms=20)))
        started = time.perf_counter()
        read = fs.decide(tx("slow", T0))
        assert read.degraded is True
        assert time.perf_counter() - started < 1.0


@pytest.fixture
def commerce(
    tmp_path: Path, store: FeatureStore
) -> Iterator[tuple[Catalog, Orders, Interactions, Database]]:
    db = Database(f"sqlite:///{tmp_path}/c.db")
    db.migrate()
    bus = MessageBus()
    FeatureIngestor(store).subscribe(bus)
    yield Catalog(db, bus), Orders(db, bus), Interactions(db, bus), db
    db.dispose()


def test_domain_events_feed_the_store_and_rebuild_restores_it(
    commerce: tuple[Catalog, Orders, Interactions, Database], store: FeatureStore
) -> None:
    catalog, orders, interactions, db = commerce
    catalog.create_customer(id="c1", email="c1@example.com", country="DE")
    catalog.create_merchant(id="m1", name="M1")
    catalog.create_warehouse(id="w1", name="W1", country="DE")
    catalog.create_product(
        sku="S1", title="s", category="shoes", list_price=Decimal("10"), currency="EUR"
    )
    catalog.set_stock("w1", "S1", 10)
    assert store.available(["S1"]) == ({"S1": 10}, False)
    now = datetime.now(UTC)
    recorded = interactions.record(
        [
            InteractionRequest(
                f"v{i}",
                "view",
                now - timedelta(minutes=5 - i),
                customer_id="c1",
                session_id="s1",
                sku="S1",
            )
            for i in range(3)
        ]
    )
    assert len(recorded.accepted) == 3
    assert (
        interactions.record(
            [InteractionRequest("v0", "view", now, customer_id="c1", sku="S1")]
        ).duplicates
        == 1
    )
    placed = orders.place(
        OrderRequest("c1", "EUR", [LineRequest("S1", 2)], merchant_id="m1", shipping_country="DE")
    )
    assert store.available(["S1"]) == ({"S1": 8}, False)
    orders.transition(
        placed.order.id,
        OrderAction.PAY,
        payment=PaymentRequest(card=CardInfo(fingerprint="fp1"), device_id="dev1", ip="10.1.1.1"),
    )
    orders.file_chargeback(placed.order.id)

    entities = {
        Entity.CUSTOMER: "c1",
        Entity.SKU: "S1",
        Entity.CATEGORY: "shoes",
        Entity.SESSION: "s1",
        Entity.CARD: "fp1",
        Entity.MERCHANT: "m1",
        Entity.DEVICE: "dev1",
        Entity.IP: "10.1.1.1",
        Entity.EMAIL: "c1@example.com",
    }
    at = time.time()
    live = store.read(entities, now=at).values
    assert live["sku_activity.views_1h"] == 3.0
    assert live["sku_activity.units_sold_1d"] == 2.0
    assert live["customer_txn.txn_count_1h"] == 1.0
    assert live["customer_txn.amount_sum_1d"] == 20.0
    assert live["card_txn.frauds_known"] == 1.0
    assert live["session_activity.skus_1h"] == 1.0

    summary = rebuild(store, history(db))
    assert summary.removed_keys > 0
    assert not summary.degraded
    assert summary.counts["payments"] == 1
    assert store.read(entities, now=at).values == live
    assert store.available(["S1"]) == ({"S1": 8}, False)


def test_late_events_land_in_their_bucket(store: FeatureStore) -> None:
    """Out-of-order arrival: a late event counts in the windows that cover its time."""
    store.record([tx("a", T0 + 2 * DAY), tx("b", T0 + 3 * DAY)])
    store.record([tx("late", T0 + 1 * DAY, 500)])
    values = store.read(ALL, now=T0 + 3 * DAY + 1).values
    assert values["customer_txn.txn_count_7d"] == 3.0
    assert values["customer_txn.amount_sum_7d"] == pytest.approx(25.0)
    assert values["customer_txn.txn_count_1d"] == 1.0
    assert values["customer_txn.last_txn_age_s"] == pytest.approx(1.0)
    old = store.record([tx("too-late", T0 - 40 * DAY)])  # older than any window keeps
    assert old.accepted == 1
    assert store.read(ALL, now=T0 + 3 * DAY + 1).values["customer_txn.txn_count_30d"] == 3.0


def test_commerce_keeps_working_and_reports_degraded_when_the_store_hangs(
    tmp_path: Path,
) -> None:
    """A store that accepts connections but never answers: orders and events are still
    written to SQL promptly (single events use the short decision timeout), and the ingestor
    reports that the online store did not take them."""
    with socket.socket() as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen(64)
        url = f"redis://127.0.0.1:{sink.getsockname()[1]}/0"
        hung = FeatureStore(
            RedisBackend(connect(url, timeout_ms=20)),
            bulk=RedisBackend(connect(url, timeout_ms=200)),
        )
        db = Database(f"sqlite:///{tmp_path}/hung.db")
        db.migrate()
        bus = MessageBus()
        ingestor = FeatureIngestor(hung)
        ingestor.subscribe(bus)
        catalog, orders, interactions = Catalog(db, bus), Orders(db, bus), Interactions(db, bus)
        catalog.create_customer(id="c1", email="c1@example.com")
        catalog.create_warehouse(id="w1", name="W1", country="DE")
        catalog.create_product(
            sku="S1", title="s", category="shoes", list_price=Decimal("5"), currency="EUR"
        )
        ingestor.reset_thread()
        started = time.perf_counter()
        catalog.set_stock("w1", "S1", 3)
        placed = orders.place(OrderRequest("c1", "EUR", [LineRequest("S1", 1)]))
        elapsed = time.perf_counter() - started
        assert ingestor.degraded_in_thread() is True
        assert elapsed < 1.0  # two events, each gives up at the 20 ms timeout
        assert orders.get(placed.order.id).status == "placed"
        ingestor.reset_thread()
        recorded = interactions.record(
            [InteractionRequest("hv1", "view", datetime.now(UTC), customer_id="c1", sku="S1")]
        )
        assert len(recorded.accepted) == 1  # in SQL: a rebuild brings it to Redis later
        assert ingestor.degraded_in_thread() is True
        db.dispose()


def test_batch_ingestion_counts_an_id_once_inside_and_across_batches(
    client: redis.Redis,
) -> None:
    store = FeatureStore(RedisBackend(client), batch_size=3)
    events = [tx("b1", T0), tx("b2", T0 + 1), tx("b1", T0 + 2), tx("b3", T0 + 3)]
    first = store.record(events)  # b1 again in the first chunk, b3 in the second
    assert (first.accepted, first.duplicates) == (3, 1)
    again = store.record([tx("b3", T0 + 4), tx("b4", T0 + 5, 700)])
    assert (again.accepted, again.duplicates) == (1, 1)
    values = store.read(ALL, now=T0 + 6).values
    assert values["customer_txn.txn_count_10m"] == 4.0
    assert values["customer_txn.amount_sum_1h"] == pytest.approx(37.0)
    assert values["customer_txn.amount_max_7d"] == pytest.approx(10.0)
    assert client.ttl("cw:seen:b4") > 6 * 86_400  # claimed for 7 days
    assert not list(client.scan_iter(match="cw:applied:*"))  # markers go once a chunk is done


def test_batch_ingestion_reloads_its_function_after_a_restart() -> None:
    """The functions are gone (FUNCTION FLUSH stands in for a restart): the batch's calls are
    sent again once the library is loaded, and no event is lost or counted twice.  On a
    server of this test's own (the packaged Valkey)."""
    port = free_port()
    server = start_server(port)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(100):
            try:
                if redis.Redis.from_url(url).ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.05)
        own = redis.Redis.from_url(url)
        store = FeatureStore(RedisBackend(own))
        assert store.record([tx("r1", T0), tx("r2", T0 + 1)]).accepted == 2
        own.function_flush()
        result = store.record([tx("r3", T0 + 2), tx("r1", T0 + 3)])
        assert (result.accepted, result.duplicates, result.degraded) == (1, 1, False)
        assert store.read(ALL, now=T0 + 4).values["customer_txn.txn_count_10m"] == 3.0
        own.close()
    finally:
        server.kill()
        server.wait()
