"""The demo-store generator without a database: determinism, power law, tastes, consistency."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from engine.commerce.domain import TRANSITIONS, OrderStatus
from training.demo.behaviour import Attempt, Checkout, customer_weights, simulate_browsing
from training.demo.catalogue import build_catalogue, build_merchants, zipf_weights
from training.demo.common import DAY, Window, stage_rng
from training.demo.customers import draw_taste, generate_customers
from training.demo.ledger import build_ledger, chargeback_delay
from training.demo.seed import TABLES, SeedConfig, generate_store
from training.demo.vocabulary import TOP_DEMAND
from training.demo.warehouses import build_warehouses, stock_levels

pytestmark = pytest.mark.unit

END = datetime(2026, 6, 1, tzinfo=UTC)
WINDOW = Window.ending(END, 30)
SMALL = SeedConfig(seed=11, customers=150, products=80, merchants=6, days=30, end=END)


@pytest.fixture(scope="module")
def small_store():  # type: ignore[no-untyped-def]
    return generate_store(SMALL)


@pytest.fixture(scope="module")
def shop():  # type: ignore[no-untyped-def]
    """A mid-sized catalogue, its customers and their browsing (no fraud, no ledger)."""
    merchants = build_merchants(5, 10, WINDOW)
    cat = build_catalogue(5, 400, [m["id"] for m in merchants], WINDOW)
    customers = generate_customers(5, 600, WINDOW, TOP_DEMAND)
    return cat, customers, simulate_browsing(5, customers, cat, WINDOW, 8.0)


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_same_store(small_store) -> None:  # type: ignore[no-untyped-def]
    again = generate_store(SMALL)
    for table in TABLES:
        assert again.rows[table] == small_store.rows[table], table
    assert again.fraud_payments == small_store.fraud_payments


def test_other_seed_other_store(small_store) -> None:  # type: ignore[no-untyped-def]
    other = generate_store(SeedConfig(**{**SMALL.__dict__, "seed": 12}))
    assert other.rows["products"] != small_store.rows["products"]
    assert other.rows["interactions"] != small_store.rows["interactions"]


def test_pure_parts_are_deterministic() -> None:
    a = build_catalogue(3, 50, ["mer_0001", "mer_0002"], WINDOW)
    b = build_catalogue(3, 50, ["mer_0001", "mer_0002"], WINDOW)
    assert a.rows == b.rows
    np.testing.assert_array_equal(a.popularity, b.popularity)
    assert stock_levels(3, a, build_warehouses(4)) == stock_levels(3, b, build_warehouses(4))
    c1 = generate_customers(3, 40, WINDOW, TOP_DEMAND)
    c2 = generate_customers(3, 40, WINDOW, TOP_DEMAND)
    assert [c.row(WINDOW) for c in c1] == [c.row(WINDOW) for c in c2]
    assert all(np.array_equal(x.taste, y.taste) for x, y in zip(c1, c2, strict=True))
    assert [c.cards for c in c1] == [c.cards for c in c2]


def test_stages_have_independent_streams() -> None:
    """More customers must not change the catalogue (each stage has its own stream)."""
    small = generate_store(SeedConfig(**{**SMALL.__dict__, "customers": 60}))
    big = generate_store(SeedConfig(**{**SMALL.__dict__, "customers": 90}))
    assert small.rows["products"] == big.rows["products"]
    assert stage_rng(1, "a").random() != stage_rng(1, "b").random()


def test_ids_are_counters_in_time_order(small_store) -> None:  # type: ignore[no-untyped-def]
    rows = small_store.rows
    assert [p["sku"] for p in rows["products"]][:3] == ["SKU-00001", "SKU-00002", "SKU-00003"]
    assert rows["customers"][0]["id"] == "cus_000001"
    assert rows["merchants"][0]["id"] == "mer_0001"
    for table, key, ts in (
        ("orders", "id", "created_at"),
        ("payments", "id", "created_at"),
        ("interactions", "event_id", "ts"),
    ):
        ids = [r[key] for r in rows[table]]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        times = [r[ts] for r in sorted(rows[table], key=lambda r: r[key])]
        assert times == sorted(times), table


# --- distributions --------------------------------------------------------------------------------


def test_zipf_weights_are_a_power_law() -> None:
    w = np.sort(zipf_weights(np.random.default_rng(0), 1000))[::-1]
    assert w.sum() == pytest.approx(1.0)
    assert w[:100].sum() > 0.6
    # log-log slope of rank vs weight is the exponent
    slope = np.polyfit(np.log(np.arange(1, 1001)), np.log(w), 1)[0]
    assert slope == pytest.approx(-1.1, abs=0.01)


def test_top_tenth_of_products_gets_most_views(shop) -> None:  # type: ignore[no-untyped-def]
    cat, _, browsing = shop
    views = Counter(
        item for s in browsing.sessions for _, kind, item, _ in s.events if kind == "view"
    )
    counts = sorted(views.values(), reverse=True)
    share = sum(counts[: len(cat) // 10]) / sum(counts)
    assert share > 0.45, share
    assert len(views) > 0.5 * len(cat)  # the long tail is still seen


def test_tastes_concentrate_on_few_categories() -> None:
    rng = np.random.default_rng(1)
    tastes = np.array([draw_taste(rng, TOP_DEMAND) for _ in range(2000)])
    np.testing.assert_allclose(tastes.sum(axis=1), 1.0)
    top3 = np.sort(tastes, axis=1)[:, -3:].sum(axis=1)
    assert top3.min() >= 0.89
    assert np.median(np.sort(tastes, axis=1)[:, -1]) > 0.5
    # favourites follow demand: electronics (largest demand) is a favourite more than grocery
    fav = Counter(int(np.argmax(t)) for t in tastes)
    assert fav[0] > fav[len(TOP_DEMAND) - 1]


def test_views_follow_the_customers_taste(shop) -> None:  # type: ignore[no-untyped-def]
    cat, customers, browsing = shop
    by_id = {c.id: c for c in customers}
    favourite_hits = total = 0
    for s in browsing.sessions:
        fav = int(np.argmax(by_id[s.customer_id].taste))
        for _, kind, item, _ in s.events:
            if kind == "view" and item is not None:
                favourite_hits += int(cat.top[item]) == fav
                total += 1
    assert favourite_hits / total > 0.4
    w = customer_weights(cat, customers[0])
    assert w.sum() == pytest.approx(1.0) and (w[cat.popularity == 0] == 0).all()


def test_chargeback_delay_between_3_and_30_days() -> None:
    rng = np.random.default_rng(2)
    delays = np.array([chargeback_delay(rng) for _ in range(5000)]) / DAY
    assert delays.min() >= 3 and delays.max() <= 30
    assert 5 < np.median(delays) < 15


# --- consistency of the generated rows ------------------------------------------------------------


def test_order_totals_and_lifecycle(small_store) -> None:  # type: ignore[no-untyped-def]
    rows = small_store.rows
    lines: dict[str, Decimal] = Counter()  # type: ignore[assignment]
    for ln in rows["order_lines"]:
        assert ln["line_total"] == ln["unit_price"] * ln["qty"]
        lines[ln["order_id"]] += ln["line_total"]
    events: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for ev in rows["order_events"]:
        events.setdefault(ev["order_id"], []).append(ev)
    for order in rows["orders"]:
        assert order["total"] == lines[order["id"]]
        steps = [e for e in events[order["id"]] if e["to_status"] is not None]
        assert steps[0]["type"] == "placed"
        status = OrderStatus.PLACED
        for e in steps[1:]:
            assert e["from_status"] == status.value
            assert OrderStatus(e["to_status"]) in TRANSITIONS[status]
            status = OrderStatus(e["to_status"])
        assert order["status"] == status.value


def test_every_pattern_and_share(small_store) -> None:  # type: ignore[no-untyped-def]
    assert all(n > 0 for n in small_store.fraud_payments.values()), small_store.fraud_payments
    notes = Counter(
        c["note"] for c in small_store.rows["chargebacks"] if c["reason"] == "fraudulent"
    )
    assert dict(notes) == {k: v for k, v in small_store.fraud_chargebacks.items() if v}
    assert set(notes) == set(small_store.fraud_payments)
    assert sum(small_store.fraud_payments.values()) < 0.15 * len(small_store.rows["payments"])


def test_labels_filed_after_the_end_are_withheld() -> None:
    cat = build_catalogue(4, 10, [], WINDOW)
    warehouses = build_warehouses(2)
    customer = generate_customers(4, 1, WINDOW, TOP_DEMAND)[0]
    item = int(np.flatnonzero(cat.popularity > 0)[0])

    def fraud_at(ts: int) -> Checkout:
        pay = Attempt(30, "authorized", "card", customer.cards[0], customer.devices[0], "1.2.3.4")
        return Checkout(customer, ts, "web-de", [(item, 1)], "FR", False, [pay], "stolen_card")

    early, late = fraud_at(DAY), fraud_at(WINDOW.seconds - 2 * DAY)
    led = build_ledger(4, [early, late], cat, warehouses, stock_levels(4, cat, warehouses), WINDOW)
    assert led.fraud_payments == {"stolen_card": 2}
    assert led.withheld == {"stolen_card": 1}  # the late one's label is not known yet
    (cb,) = led.chargebacks
    paid = led.payments[0]["created_at"]
    assert cb["payment_id"] == led.payments[0]["id"] and cb["note"] == "stolen_card"
    assert timedelta(days=3) <= cb["filed_at"] - paid <= timedelta(days=30)
    assert [e["type"] for e in led.events].count("chargeback") == 1


def test_no_fraud_when_rate_is_zero() -> None:
    store = generate_store(SeedConfig(**{**SMALL.__dict__, "fraud_rate": 0.0}))
    assert sum(store.fraud_payments.values()) == 0
    assert all(c["reason"] != "fraudulent" for c in store.rows["chargebacks"])


def test_default_end_is_the_current_hour() -> None:
    window = Window.ending(None, 10)
    now = datetime.now(UTC)
    assert window.end <= now < window.end + timedelta(hours=1)
    assert window.end.minute == window.end.second == window.end.microsecond == 0
    assert window.end - window.start == timedelta(days=10)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customers", 0),
        ("products", 0),
        ("days", 0),
        ("fraud_rate", 0.7),
        ("merchants", -1),
        ("end", datetime(2026, 1, 1)),  # naive on purpose
    ],
)
def test_bad_config_is_refused(field: str, value: object) -> None:
    from engine.errors import ValidationError

    with pytest.raises(ValidationError) as err:
        generate_store(SeedConfig(**{**SMALL.__dict__, field: value}))
    assert err.value.field == field


def test_sessions_carry_the_channel_of_their_checkout(shop, small_store) -> None:  # type: ignore[no-untyped-def]
    _, customers, browsing = shop
    by_checkout = {(c.customer.id, c.ts): c.channel_id for c in browsing.checkouts}
    checked_out = 0
    for s in browsing.sessions:
        bought = [ts for ts, kind, _, _ in s.events if kind == "purchase"]
        if bought:
            checked_out += 1
            assert s.channel == by_checkout[(s.customer_id, bought[0])]
    assert checked_out > 50
    app_users = {c.id for c in customers if c.app_user}
    assert {s.channel for s in browsing.sessions if s.customer_id not in app_users} <= {
        "web-de",
        "web-fr",
        "web-nl",
        "web-es",
    }
    channels = {c["id"] for c in small_store.rows["channels"]}
    seen = {r["channel_id"] for r in small_store.rows["interactions"]}
    assert seen == channels  # every event has a channel, and every channel is used
