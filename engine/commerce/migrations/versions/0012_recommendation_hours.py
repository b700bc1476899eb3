"""recommendation hours

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 01:30:00

Widget stats by the hour, kept by the writers (engine/recommend/rollup.py); filled here from
the recommendations and events already stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = {"view": "clicks", "add_to_cart": "add_to_carts", "purchase": "purchases"}


def upgrade() -> None:
    op.create_table(
        "recommendation_hours",
        sa.Column("widget", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.String(length=13), nullable=False),
        sa.Column("impressions", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("add_to_carts", sa.Integer(), nullable=False),
        sa.Column("purchases", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("widget", "channel", "hour", name=op.f("pk_recommendation_hours")),
    )
    recs = sa.table(
        "recommendations",
        sa.column("id"),
        sa.column("widget"),
        sa.column("channel_id"),
        sa.column("created_at"),
    )
    events = sa.table(
        "interactions", sa.column("event_id"), sa.column("type"), sa.column("recommendation_id")
    )
    hours = sa.table(
        "recommendation_hours",
        *(sa.column(c) for c in ("widget", "channel", "hour", "impressions", *OUTCOMES.values())),
    )
    if op.get_bind().dialect.name == "postgresql":
        hour = sa.func.to_char(sa.func.timezone("UTC", recs.c.created_at), "YYYY-MM-DD HH24")
    else:
        hour = sa.func.strftime("%Y-%m-%d %H", recs.c.created_at)
    channel = sa.func.coalesce(recs.c.channel_id, "")
    outcomes = [
        sa.func.count(sa.distinct(sa.case((events.c.type == kind, events.c.event_id), else_=None)))
        for kind in OUTCOMES
    ]
    counted = (
        sa.select(recs.c.widget, channel, hour, sa.func.count(sa.distinct(recs.c.id)), *outcomes)
        .select_from(recs.outerjoin(events, events.c.recommendation_id == recs.c.id))
        .group_by(recs.c.widget, channel, hour)
    )
    op.execute(hours.insert().from_select(list(hours.c.keys()), counted))


def downgrade() -> None:
    op.drop_table("recommendation_hours")
