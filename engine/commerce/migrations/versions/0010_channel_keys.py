"""channel keys

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 09:00:00

API keys of the sales channels: publishable keys kept whole (they are public by design),
secret keys kept only as their SHA-256 digest and the first characters they are shown by.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.commerce.schema

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_keys",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("display", sa.String(length=16), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=True),
        sa.Column("created_at", engine.commerce.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", engine.commerce.schema.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('publishable', 'secret')", name=op.f("ck_channel_keys_kind")),
        sa.CheckConstraint(
            "kind = 'publishable' OR token IS NULL", name=op.f("ck_channel_keys_secret_not_kept")
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_channel_keys_channel_id_channels")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_keys")),
        sa.UniqueConstraint("digest", name=op.f("uq_channel_keys_digest")),
    )
    with op.batch_alter_table("channel_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_channel_keys_channel_id"), ["channel_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("channel_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channel_keys_channel_id"))
    op.drop_table("channel_keys")
