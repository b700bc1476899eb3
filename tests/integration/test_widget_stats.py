"""Widget stats read from the hourly counts (engine/recommend/rollup.py) equal the full join
of the log and the events, on both databases: whatever the period's edges, with events that
arrive before the recommendation they name is written, with writes retried, and with the log
and the events written concurrently."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, select
from sqlalchemy import event as sa_event

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.interactions import InteractionRequest, Interactions
from engine.events import MessageBus
from engine.recommend import rollup
from engine.recommend.log import (
    RecItem,
    Recommendation,
    RecommendationLog,
    _row,
    _shown,
    widget_stats,
)
from engine.recommend.schema import Recommendation as RecommendationRow
from engine.recommend.schema import RecommendationHour

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
SKU = "WS-1"


@pytest.fixture
def shop(db: Database, catalog: Catalog) -> Iterator[tuple[Interactions, RecommendationLog]]:
    catalog.create_product(
        sku=SKU, title="W", category="misc", list_price=Decimal("1.00"), currency="EUR"
    )
    log = RecommendationLog(db)
    yield Interactions(db, MessageBus(), within_insert=[rollup.recorded]), log
    log.close()


def rec(widget: str, at: datetime, channel: str | None = None) -> Recommendation:
    return Recommendation(
        recommendation_id=uuid.uuid4().hex,
        widget=widget,
        customer_id="c",
        session_id="s",
        context_sku=None,
        items=(RecItem(SKU, 1.0, "trending"),),
        model_version=None,
        degraded=False,
        created_at=at,
        channel=channel,
    )


def event(kind: str, rec_id: str, event_id: str | None = None) -> InteractionRequest:
    return InteractionRequest(
        event_id=event_id or uuid.uuid4().hex,
        type=kind,
        timestamp=datetime.now(UTC),
        session_id="s",
        sku=SKU,
        recommendation_id=rec_id,
    )


def full_join(db: Database, since: datetime, until: datetime | None, **kw: str) -> dict:
    with db.transaction(readonly=True) as s:
        return {w: dict(c) for w, c in _shown(s, since, until, kw.get("channel"),
                                              kw.get("widget")).items()}  # fmt: skip


def from_hours(db: Database, since: datetime, until: datetime | None, **kw: str) -> dict:
    with db.transaction(readonly=True) as s:
        found = widget_stats(s, since=since, until=until, **kw)
    names = ("impressions", "clicks", "add_to_carts", "purchases")
    return {f["widget"]: {n: f[n] for n in names} for f in found}


def fill(interactions: Interactions, log: RecommendationLog) -> None:
    """Recommendations over five hours, two widgets, two channels; events for some of them,
    half sent before the log wrote the recommendation they name."""
    for n in range(60):
        r = rec(("home", "cart")[n % 2], NOW - timedelta(minutes=17 * n), ("web", None)[n % 3 == 0])
        early = n % 4 == 0
        if early:  # the event comes back before the log writes its recommendation
            interactions.record([event("view", r.recommendation_id)])
        log.append(r)
        log.flush()
        if not early and n % 2 == 0:
            interactions.record([event("view", r.recommendation_id)])
        if n % 5 == 0:
            interactions.record([event("add_to_cart", r.recommendation_id)])
        if n % 7 == 0:
            interactions.record([event("purchase", r.recommendation_id)])


def test_the_hours_give_the_figures_of_the_full_join(
    db: Database, shop: tuple[Interactions, RecommendationLog]
) -> None:
    interactions, log = shop
    fill(interactions, log)
    windows = [
        (NOW - timedelta(hours=20), None),  # every row
        (NOW - timedelta(hours=8, minutes=5), NOW - timedelta(minutes=50)),  # partial edges
        (NOW - timedelta(hours=6, minutes=30), NOW - timedelta(hours=2, minutes=30)),  # whole
        (NOW - timedelta(minutes=40), NOW - timedelta(minutes=10)),  # inside one hour
    ]
    for since, until in windows:
        expected = full_join(db, since, until)
        assert from_hours(db, since, until) == expected
        assert from_hours(db, since, until, channel="web") == full_join(
            db, since, until, channel="web"
        )
        assert from_hours(db, since, until, widget="cart") == full_join(
            db, since, until, widget="cart"
        )
    everything = full_join(db, NOW - timedelta(hours=20), None)
    assert everything["home"]["clicks"] > 0 and everything["cart"]["purchases"] > 0


def test_whole_hours_are_read_from_the_counts(
    db: Database, shop: tuple[Interactions, RecommendationLog]
) -> None:
    """With the rows of whole hours gone, stats over those hours stay as they were."""
    interactions, log = shop
    fill(interactions, log)
    since, until = NOW - timedelta(hours=6, minutes=30), NOW - timedelta(hours=2, minutes=30)
    before = from_hours(db, since, until)
    with db.transaction() as s:
        s.execute(delete(RecommendationRow))
    assert full_join(db, since, until) == {}
    assert from_hours(db, since, until) == before and before["home"]["impressions"] > 0


def test_a_retried_write_and_a_resent_event_count_once(
    db: Database, shop: tuple[Interactions, RecommendationLog]
) -> None:
    interactions, log = shop
    r = rec("home", NOW)
    log.append(r)
    log.flush()
    row = {"id": r.recommendation_id, "widget": "home", "channel_id": None, "created_at": NOW}
    with db.transaction() as s:  # the log's batch written again after an unclear failure
        rollup.shown(s, [row])
    same = event("view", r.recommendation_id, event_id="resent")
    interactions.record([same])
    interactions.record([same])
    with db.transaction(readonly=True) as s:
        counts = s.execute(select(RecommendationHour)).scalars().all()
    assert [(c.widget, c.impressions, c.clicks) for c in counts] == [("home", 1, 1)]


def test_concurrent_log_and_events_count_every_pair_once(
    db: Database, shop: tuple[Interactions, RecommendationLog]
) -> None:
    """Events sent while the log is writing the recommendations they name (PostgreSQL runs
    the two transactions at once; the advisory lock orders them)."""
    interactions, log = shop
    recs = [rec("home", NOW) for _ in range(200)]
    start = threading.Barrier(3)

    def write_log() -> None:
        start.wait()
        for r in recs:
            log.append(r)
        log.flush()

    def send(part: list[Recommendation]) -> None:
        start.wait()
        for r in part:
            interactions.record([event("view", r.recommendation_id)])

    threads = [
        threading.Thread(target=write_log),
        threading.Thread(target=send, args=(recs[::2],)),
        threading.Thread(target=send, args=(recs[1::2],)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    since = NOW - timedelta(hours=1)
    assert from_hours(db, since, None) == full_join(db, since, None)
    assert from_hours(db, since, None)["home"] == {
        "impressions": 200,
        "clicks": 200,
        "add_to_carts": 0,
        "purchases": 0,
    }


def test_an_event_sent_while_its_recommendation_is_being_written_counts_once(
    db: Database, shop: tuple[Interactions, RecommendationLog]
) -> None:
    """The events' transaction waits for the log's open one (SQLite: the write lock;
    PostgreSQL: the advisory lock), then finds the recommendation it names."""
    interactions, log = shop
    r = rec("home", NOW)
    sent = threading.Thread(
        target=lambda: interactions.record([event("view", r.recommendation_id)])
    )
    with db.transaction() as s:  # the log's transaction, held open
        rows = [_row(r)]
        rollup.shown(s, rows)
        s.execute(log._insert, rows)
        sent.start()
        sent.join(0.5)
        assert sent.is_alive()  # waiting for the log's transaction
    sent.join(30)
    since = NOW - timedelta(hours=1)
    assert from_hours(db, since, None)["home"]["clicks"] == 1
    assert from_hours(db, since, None) == full_join(db, since, None)


def test_the_migration_counts_what_was_stored_before_it(
    db: Database, shop: tuple[Interactions, RecommendationLog]
) -> None:
    from alembic import command
    from alembic.config import Config

    from engine.commerce.db import MIGRATIONS

    interactions, log = shop
    fill(interactions, log)
    log.flush()
    since = NOW - timedelta(hours=20)
    expected = full_join(db, since, None)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection_engine"] = db.engine
    command.downgrade(cfg, "0011")  # the hours are dropped, the rows stay
    db.migrate()
    assert from_hours(db, since, None) == expected
    with db.transaction(readonly=True) as s:
        assert s.execute(select(RecommendationHour)).first() is not None


def test_a_widgets_stats_count_whole_hours_from_the_counts_alone(
    db: Database, shop: tuple[Interactions, RecommendationLog]
) -> None:
    interactions, log = shop
    fill(interactions, log)  # 17 hours of recommendations
    queries: list[str] = []
    listen = lambda *a: queries.append(a[2])  # noqa: E731
    sa_event.listen(db.engine, "before_cursor_execute", listen)
    try:
        stats = log.stats("home", days=1)
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", listen)
    assert not [q for q in queries if "FROM recommendations" in q]  # no row of the log read
    since = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    expected = full_join(db, since, None, widget="home")["home"]
    assert {k: stats[k] for k in expected} == expected and expected["impressions"] == 30
