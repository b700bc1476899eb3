"""Widget stats by the hour (``recommendation_hours``), kept by the writers themselves.

A widget's stats are the recommendations it showed in a period and the distinct storefront
events sent back with their ids, whenever those came.  Joining the log to the events for every
read costs a scan of every recommendation in the period (170 ms for 310k rows, and a busy store
shows millions a day), so the counts are kept per widget, channel and UTC hour of the
recommendation, in the same transactions that write the rows they count:

- the recommendation log's insert adds its new rows as impressions (``shown``), and
- an events insert adds its new events that name a recommendation (``recorded``).

An event can be written before the recommendation it names (the log writes behind the response
that carried the id, by up to its flush interval), so each side also counts the other's rows
that are already there: ``shown`` counts the events already recorded for its new
recommendations, ``recorded`` counts only events whose recommendation it finds.  Each pair is
counted exactly once because the two transactions exclude each other while they look: on SQLite
every writing transaction holds the one write lock; on PostgreSQL both take the same
transaction-scoped advisory lock before they look, so the later one sees the earlier one's rows.
Every row counted is a new row (an insert that ignores conflicts), so a retried write does not
count twice.

Reads add whole hours from this table to the raw rows of the period's partial first and last
hour (``engine/recommend/log.py``), so the figures are the same as the full join's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import BindParameter, Connection, Table, bindparam, func, select
from sqlalchemy.orm import Session

from engine.commerce.db import add_on_conflict
from engine.commerce.schema import Interaction
from engine.recommend.schema import Recommendation, RecommendationHour

OUTCOMES = {"view": "clicks", "add_to_cart": "add_to_carts", "purchase": "purchases"}
COUNTS = ("impressions", *OUTCOMES.values())
LOCK_KEY = 0x63770001  # pg_advisory_xact_lock key the two writers share
IN_CHUNK = 500  # ids per IN (...) list

Key = tuple[str, str, str]  # widget, channel ("" for none), hour


def hour_of(t: datetime) -> str:
    """``YYYY-MM-DD HH`` of a datetime in UTC (naive datetimes are taken as UTC)."""
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%d %H")


def shown(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """In the recommendation log's writing transaction, before it inserts ``rows`` (the
    log's rows: id, widget, channel_id, created_at): count the new ones, and the events
    already recorded for them."""
    conn = _exclusive(session)
    known = {row[0] for row in _chunked(conn, _KNOWN, [r["id"] for r in rows])}
    new = {r["id"]: _key(r["widget"], r["channel_id"], r["created_at"]) for r in rows
           if r["id"] not in known}  # fmt: skip
    counts: dict[Key, Counter[str]] = defaultdict(Counter)
    for key in new.values():
        counts[key]["impressions"] += 1
    for rec_id, kind, n in _chunked(conn, _OUTCOMES_OF, list(new)):
        counts[new[rec_id]][OUTCOMES[kind]] += n
    _add(conn, counts)


def recorded(session: Session, rows: Iterable[dict[str, Any]]) -> None:
    """In the events' writing transaction, after it inserted ``rows`` (new events only):
    count those that name a recommendation already in the log."""
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        if r.get("recommendation_id") and r["type"] in OUTCOMES:
            kinds[r["recommendation_id"]][OUTCOMES[r["type"]]] += 1
    if not kinds:
        return
    conn = _exclusive(session)
    counts: dict[Key, Counter[str]] = defaultdict(Counter)
    for rec_id, widget, channel, created_at in _chunked(conn, _RECS, list(kinds)):
        counts[_key(widget, channel, created_at)].update(kinds[rec_id])
    _add(conn, counts)


def hours(
    session: Session,
    first: str,
    last: str | None,
    *,
    channel: str | None = None,
    widget: str | None = None,
) -> dict[str, Counter[str]]:
    """Per widget, the counts of the hours ``[first, last)`` (``YYYY-MM-DD HH``; ``last``
    None: every hour from ``first`` on)."""
    t = RecommendationHour
    stmt = (
        select(t.widget, *(func.sum(getattr(t, c)) for c in COUNTS))
        .where(t.hour >= first)
        .group_by(t.widget)
    )
    if last is not None:
        stmt = stmt.where(t.hour < last)
    if channel is not None:
        stmt = stmt.where(t.channel == channel)
    if widget is not None:
        stmt = stmt.where(t.widget == widget)
    return {
        name: Counter(dict(zip(COUNTS, map(int, sums), strict=True)))
        for name, *sums in session.execute(stmt)
    }


def _key(widget: str, channel: str | None, created_at: datetime) -> Key:
    return widget, channel or "", hour_of(created_at)


def _exclusive(session: Session) -> Connection:
    """The transaction's connection; on PostgreSQL once the other writer's transaction is
    over (SQLite: the write lock already orders them)."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK)
    return conn


def _chunked(conn: Connection, statement: Any, ids: list[str]) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(ids), IN_CHUNK):
        out += conn.execute(statement, {"ids": ids[start : start + IN_CHUNK]}).all()
    return out


def _add(conn: Connection, counts: dict[Key, Counter[str]]) -> None:
    if not counts:
        return
    rows = [
        {"widget": w, "channel": c, "hour": h, **{name: n.get(name, 0) for name in COUNTS}}
        for (w, c, h), n in sorted(counts.items())
    ]
    conn.execute(_UPSERTS[conn.dialect.name], rows)


# Core statements built once (their compiled forms are cached): the ORM's paths cost several
# times more CPU per call, inside the write lock.
_recs = cast(Table, Recommendation.__table__)
_events = cast(Table, Interaction.__table__)
_ids: BindParameter[list[str]] = bindparam("ids", expanding=True)
_KNOWN = select(_recs.c.id).where(_recs.c.id.in_(_ids))
_RECS = select(_recs.c.id, _recs.c.widget, _recs.c.channel_id, _recs.c.created_at).where(
    _recs.c.id.in_(_ids)
)
_OUTCOMES_OF = (
    select(_events.c.recommendation_id, _events.c.type, func.count())
    .where(_events.c.recommendation_id.in_(_ids), _events.c.type.in_(list(OUTCOMES)))
    .group_by(_events.c.recommendation_id, _events.c.type)
)
_LOCK = select(func.pg_advisory_xact_lock(LOCK_KEY))
_UPSERTS = {
    dialect: add_on_conflict(dialect, RecommendationHour, ["widget", "channel", "hour"], COUNTS)
    for dialect in ("postgresql", "sqlite")
}
