"""KPIs and the funnel on a small store built by hand, on SQLite and PostgreSQL: exact numbers,
half-open periods, the channel filter, empty periods; and the ``channel`` of storefront events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from engine.analytics.service import Analytics
from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.domain import LineRequest, OrderAction
from engine.commerce.interactions import InteractionRequest, Interactions
from engine.commerce.orders import OrderRequest, Orders, PaymentRequest
from engine.commerce.schema import Interaction
from engine.errors import ValidationError
from engine.events import MessageBus
from engine.fraud.schema import FraudDecision, FraudFeedback
from engine.pricing.schema import FxRate, PriceChange
from engine.recommend.log import RecItem, Recommendation, RecommendationLog
from engine.recommend.schema import Recommendation as RecommendationRow
from tests.conftest import Store

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 10, tzinfo=UTC)
START, END = "2026-03-01", "2026-03-03"  # two days: [Mar 1, Mar 3)


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class Shop:
    """The ``store`` fixture's shop plus a second channel, customers, foreign-currency products
    and a way to place orders, payments and events at chosen times."""

    def __init__(self, db: Database, catalog: Catalog, store: Store) -> None:
        self.db, self.store = db, store
        self.clock = Clock()
        self.orders = Orders(db, MessageBus(), clock=self.clock)
        self.interactions = Interactions(db, MessageBus(), clock=lambda: NOW)
        catalog.create_channel(id="app", name="Mobile app", currency="EUR")
        for cid in ("cus-bob", "cus-cid"):
            catalog.create_customer(id=cid, email=f"{cid}@example.com", country="DE")
        for sku, price, currency in (("HAT", "25.00", "USD"), ("PEN", "1000", "JPY")):
            catalog.create_product(
                sku=sku, title=sku, category="misc", list_price=Decimal(price), currency=currency
            )
            catalog.set_stock(store.warehouse_de, sku, 10)

    def order(
        self,
        when: datetime,
        customer: str,
        channel: str,
        sku: str,
        qty: int = 1,
        *,
        currency: str = "EUR",
        paid: str | None = None,  # transaction id of an authorized payment (5 min later)
    ) -> str:
        self.clock.now = when
        req = OrderRequest(customer, currency, [LineRequest(sku, qty)], channel=channel)
        order_id = self.orders.place(req).order.id
        if paid is not None:
            self.clock.now = when + timedelta(minutes=5)
            pay = PaymentRequest(transaction_id=paid or None)
            self.orders.transition(order_id, OrderAction.PAY, payment=pay)
        self.clock.now = NOW
        return order_id

    def events(self, *rows: tuple[Any, ...]) -> None:
        """(when, type, customer, session, sku, channel[, recommendation_id])"""
        self.interactions.record(
            [
                InteractionRequest(
                    event_id=f"ev-{n}",
                    type=kind,
                    timestamp=when,
                    customer_id=customer,
                    session_id=session,
                    sku=sku,
                    channel=channel,
                    recommendation_id=rec[0] if rec else None,
                )
                for n, (when, kind, customer, session, sku, channel, *rec) in enumerate(rows)
            ]
        )

    def insert(self, model: Any, rows: list[dict[str, Any]]) -> None:
        with self.db.transaction() as s:
            s.execute(insert(model), rows)


def decision(tx: str, outcome: str, when: datetime, channel: str) -> dict[str, Any]:
    return {
        "id": f"dec-{tx}",
        "transaction_id": tx,
        "customer_id": "cus-ana",
        "amount": Decimal("10.00"),
        "currency": "EUR",
        "tx_at": when,
        "probability": 0.1,
        "risk_score": 10,
        "risk_level": "low",
        "outcome": outcome,
        "model_version": "test",
        "attributes": {"channel": channel},
    }


def price_change(strategy: str, when: datetime) -> dict[str, Any]:
    return {
        "sku": "TEE",
        "old_price": Decimal("19.99"),
        "new_price": Decimal("18.99"),
        "currency": "EUR",
        "strategy": strategy,
        "actor": "test",
        "reason": "test",
        "created_at": when,
    }


def recommendation(rec_id: str, widget: str, when: datetime, channel: str) -> Recommendation:
    return Recommendation(
        rec_id, widget, None, None, None, (RecItem("TEE", 1.0, "trending"),), None, False,
        created_at=when, channel=channel,
    )  # fmt: skip


@pytest.fixture
def shop(db: Database, catalog: Catalog, store: Store) -> Shop:
    shop = Shop(db, catalog, store)
    shop.insert(FxRate, [{"currency": "USD", "rate": Decimal("1.25"), "updated_by": "test"}])
    # orders: four counted in the period (one in JPY, which has no FX rate), the rest not
    o1 = shop.order(at(1, 10), "cus-ana", "web", "TEE", paid="t1")  # 19.99
    shop.order(at(2, 9), "cus-bob", "app", "MUG", 2)  # 17.00, placed, unpaid
    shop.order(at(1, 15), "cus-cid", "app", "HAT", currency="USD", paid="t6")  # 25 USD = 20 EUR
    shop.order(at(2, 20), "cus-cid", "web", "PEN", currency="JPY", paid="")  # no FX rate
    cancelled = shop.order(at(2, 12), "cus-ana", "web", "CAP")
    shop.orders.transition(cancelled, OrderAction.CANCEL)
    shop.order(at(3), "cus-cid", "web", "MUG")  # at `to`: excluded
    o5 = shop.order(at(28, 22, month=2), "cus-bob", "web", "TEE", paid="t5")
    shop.orders.file_chargeback(o1, filed_at=at(2, 8))  # fraudulent, on a payment in the period
    shop.orders.file_chargeback(o5, reason="product_not_received", filed_at=at(1, 8))
    shop.events(
        (at(1, 9), "view", "cus-ana", None, "TEE", "web", "rec-1"),
        (at(1, 9, 1), "add_to_cart", "cus-ana", None, "TEE", "web", "rec-1"),
        (at(1, 9, 2), "purchase", "cus-ana", None, "TEE", "web", "rec-1"),
        (at(2, 8), "view", "cus-bob", "s-bob", "MUG", "app"),
        (at(2, 8, 1), "add_to_cart", "cus-bob", "s-bob", "MUG", "app"),
        (at(1, 11), "view", None, "s-1", "CAP", "web"),
        (at(1, 11, 1), "add_to_cart", None, "s-1", "CAP", "web"),
        (at(1, 11, 2), "purchase", None, "s-1", "CAP", "web"),
        (at(2, 11), "search", None, "s-2", None, "web"),
        (at(2, 13), "view", None, "s-3", "TEE", "web", "rec-3"),
        (at(1, 14), "add_to_cart", "cus-cid", None, "HAT", "app"),  # a cart without a view
        (at(2, 15), "view", None, "s-6", "MUG", "web"),
        (at(2, 15, 1), "add_to_cart", None, "s-6", "MUG", "web"),
        (at(3), "view", None, "s-4", "MUG", "web"),  # at `to`: excluded
        (at(28, 23, month=2), "view", None, "s-5", "MUG", "web"),  # before: excluded
    )
    shop.insert(
        FraudDecision,
        [
            decision("t1", "allow", at(1, 10, 4), "web"),
            decision("t6", "review", at(1, 15, 4), "app"),
            decision("t8", "block", at(2, 18), "web"),
            decision("t9", "challenge", at(3), "web"),  # excluded
        ],
    )
    shop.insert(
        FraudFeedback,
        [
            {
                "id": "fb-1",
                "decision_id": "dec-t6",
                "transaction_id": "t6",
                "label": "fraud",
                "reported_at": at(5),
            }
        ],
    )
    log = RecommendationLog(shop.db)
    for rec in (
        recommendation("rec-1", "home", at(1, 8), "web"),
        recommendation("rec-2", "home", at(2, 8), "app"),
        recommendation("rec-3", "pdp", at(2, 12), "web"),
        recommendation("rec-4", "home", at(3), "web"),  # excluded
    ):
        log.append(rec)
    log.close()
    shop.insert(
        PriceChange,
        [
            price_change("competitor", at(1, 6)),
            price_change("competitor", at(2, 6)),
            price_change("markdown", at(2, 7)),
            price_change("markdown", at(3)),  # excluded
        ],
    )
    return shop


@pytest.fixture
def analytics(db: Database, shop: Shop) -> Analytics:
    return Analytics(db, shop.interactions.channels, clock=lambda: NOW)


def test_kpis_of_the_whole_store(analytics: Analytics) -> None:
    k = analytics.kpis(START, END)
    assert (k["from"], k["to"], k["channel"], k["currency"]) == (
        "2026-03-01T00:00:00+00:00",
        "2026-03-03T00:00:00+00:00",
        None,
        "EUR",
    )
    assert k["orders"] == 4  # paid, placed, paid in USD, paid in JPY
    assert k["revenue"] == 56.99  # 19.99 + 17.00 + 25 USD / 1.25; the JPY order has no rate
    assert k["average_order_value"] == 19.00  # 56.99 / the 3 valued orders
    assert k["visitors"] == 7  # ana, bob, cid, sessions s-1, s-2 (search), s-3, s-6
    assert k["buyers"] == 3
    assert k["conversion_rate"] == pytest.approx(3 / 7)
    assert k["fraud"] == {
        "decisions": 3,
        "outcomes": {"allow": 1, "review": 1, "block": 1, "challenge": 0},
        "fraud_rate": pytest.approx(2 / 3),  # 3 payments: t1 charged back, t6 reported
        "chargebacks": 2,  # by filing time, whatever the reason
        "chargeback_amount": 39.98,
    }
    assert k["recommendations"] == [
        {
            "widget": "home",
            "impressions": 2,
            "clicks": 1,
            "add_to_carts": 1,
            "purchases": 1,
            "click_through_rate": 0.5,
            "conversion_rate": 0.5,
        },
        {
            "widget": "pdp",
            "impressions": 1,
            "clicks": 1,
            "add_to_carts": 0,
            "purchases": 0,
            "click_through_rate": 1.0,
            "conversion_rate": 0.0,
        },
    ]
    assert k["price_changes"] == {"count": 3, "by_strategy": {"competitor": 2, "markdown": 1}}
    assert k["series"] == [
        {"day": "2026-03-01", "orders": 2, "revenue": 39.99, "visitors": 3, "fraud_decisions": 2},
        {"day": "2026-03-02", "orders": 2, "revenue": 17.0, "visitors": 4, "fraud_decisions": 1},
    ]


def test_kpis_of_one_channel(analytics: Analytics) -> None:
    web = analytics.kpis(START, END, "web")
    assert web["channel"] == "web"
    assert (web["orders"], web["revenue"], web["average_order_value"]) == (2, 19.99, 19.99)
    assert (web["visitors"], web["buyers"]) == (5, 2)  # ana, s-1, s-2, s-3, s-6; ana, cid
    assert web["fraud"]["outcomes"] == {"allow": 1, "review": 0, "block": 1, "challenge": 0}
    assert web["fraud"]["fraud_rate"] == 0.5  # t1 of the web payments t1, JPY
    assert (web["fraud"]["chargebacks"], web["fraud"]["chargeback_amount"]) == (2, 39.98)
    assert [(r["widget"], r["impressions"]) for r in web["recommendations"]] == [
        ("home", 1),
        ("pdp", 1),
    ]
    assert web["recommendations"][0]["click_through_rate"] == 1.0
    assert web["price_changes"]["count"] == 3  # store-wide
    app = analytics.kpis(START, END, "app")
    assert (app["orders"], app["revenue"], app["visitors"], app["buyers"]) == (2, 37.0, 2, 2)
    assert app["fraud"]["chargebacks"] == 0


def test_periods_are_half_open(analytics: Analytics) -> None:
    day2 = analytics.kpis("2026-03-02", "2026-03-03")
    assert (day2["orders"], day2["revenue"], day2["visitors"]) == (2, 17.0, 4)
    assert [s["day"] for s in day2["series"]] == ["2026-03-02"]
    one_more_second = analytics.kpis("2026-03-02", "2026-03-03T00:00:01Z")
    assert one_more_second["orders"] == 3  # the order placed exactly at midnight
    assert one_more_second["fraud"]["decisions"] == 2  # and the decision at midnight
    assert [s["day"] for s in one_more_second["series"]] == ["2026-03-02", "2026-03-03"]
    before = analytics.kpis("2026-02-28T22:00:00Z", "2026-03-01")
    assert (before["orders"], before["revenue"], before["visitors"]) == (1, 19.99, 1)
    assert analytics.kpis("2026-02-28T22:00:01Z", "2026-03-01")["orders"] == 0


def test_funnel_is_strict(analytics: Analytics) -> None:
    f = analytics.funnel(START, END)
    assert f["from"] == "2026-03-01T00:00:00+00:00" and f["channel"] is None
    assert f["steps"] == [
        {"step": "view", "visitors": 5, "rate_from_previous": 1.0, "rate_from_start": 1.0},
        {"step": "add_to_cart", "visitors": 4, "rate_from_previous": 0.8, "rate_from_start": 0.8},
        {
            "step": "purchase",  # ana (event and order), s-1 (event), bob (an order)
            "visitors": 3,
            "rate_from_previous": 0.75,
            "rate_from_start": 0.6,
        },
    ]
    web = [s["visitors"] for s in analytics.funnel(START, END, "web")["steps"]]
    assert web == [4, 3, 2]
    app = [s["visitors"] for s in analytics.funnel(START, END, "app")["steps"]]
    assert app == [1, 1, 1]  # bob; cid's cart without a view does not enter the funnel


def test_an_empty_period_is_all_zeros(analytics: Analytics) -> None:
    k = analytics.kpis("2026-01-01", "2026-01-03")
    assert (k["orders"], k["revenue"], k["average_order_value"]) == (0, 0.0, 0.0)
    assert (k["visitors"], k["buyers"], k["conversion_rate"]) == (0, 0, 0.0)
    assert k["fraud"]["fraud_rate"] == 0.0 and k["fraud"]["decisions"] == 0
    assert k["recommendations"] == [] and k["price_changes"] == {"count": 0, "by_strategy": {}}
    assert [s["orders"] for s in k["series"]] == [0, 0]
    steps = analytics.funnel("2026-01-01", "2026-01-03")["steps"]
    assert [(s["visitors"], s["rate_from_previous"], s["rate_from_start"]) for s in steps] == [
        (0, 0.0, 0.0)
    ] * 3


def test_default_period_is_the_last_30_days(analytics: Analytics) -> None:
    k = analytics.kpis()
    assert (k["from"], k["to"]) == ("2026-02-08T00:00:00+00:00", "2026-03-10T00:00:00+00:00")
    assert k["orders"] == 6  # every counted order, the one at midnight on Mar 3 included
    assert len(k["series"]) == 30


@pytest.mark.parametrize(
    ("start", "end", "channel", "field"),
    [
        ("2026-03-03", "2026-03-01", None, "from"),
        ("2026-03-01", "2026-03-01", None, "from"),
        ("2025-01-01", "2026-03-01", None, "from"),
        ("yesterday", None, None, "from"),
        ("2026-03-01", "2026-13-01", None, "to"),
        (START, END, "nope", "channel"),
    ],
)
def test_bad_requests_name_the_field(
    analytics: Analytics, start: str, end: str | None, channel: str | None, field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        analytics.kpis(start, end, channel)
    assert err.value.field == field
    with pytest.raises(ValidationError):
        analytics.funnel(start, end, channel)


def test_events_keep_their_channel_and_refuse_an_unknown_one(
    db: Database, shop: Shop, catalog: Catalog
) -> None:
    def count() -> int:
        with db.transaction(readonly=True) as s:
            return int(s.scalar(select(func.count()).select_from(Interaction)) or 0)

    before = count()
    good = InteractionRequest("new-1", "view", at(5), customer_id="cus-ana", sku="TEE")
    bad = InteractionRequest(
        "new-2", "view", at(5), customer_id="cus-ana", sku="MUG", channel="kiosk"
    )
    with pytest.raises(ValidationError) as err:
        shop.interactions.record([good, bad])
    assert err.value.field == "events[1].channel" and err.value.code == "invalid_event"
    assert count() == before  # nothing stored
    catalog.create_channel(id="kiosk", name="Kiosk", currency="EUR")  # found on the next miss
    assert len(shop.interactions.record([good, bad]).accepted) == 2
    with db.transaction(readonly=True) as s:
        stored = dict(s.execute(select(Interaction.event_id, Interaction.channel_id)).all())
    assert (stored["new-1"], stored["new-2"], stored["ev-0"]) == (None, "kiosk", "web")


def test_recommendations_log_their_channel(db: Database, shop: Shop) -> None:
    with db.transaction(readonly=True) as s:
        logged = dict(s.execute(select(RecommendationRow.id, RecommendationRow.channel_id)).all())
    assert logged == {"rec-1": "web", "rec-2": "app", "rec-3": "web", "rec-4": "web"}
