"""model shadow log

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 09:00:00

A challenger model's output beside the champion's for the same request, while it runs in
shadow; ``cartwise models compare`` reads it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.commerce.schema

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_shadow",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=128), nullable=True),
        sa.Column("champion_version", sa.String(length=64), nullable=False),
        sa.Column("challenger_version", sa.String(length=64), nullable=False),
        sa.Column("champion", sa.JSON(), nullable=False),
        sa.Column("challenger", sa.JSON(), nullable=False),
        sa.Column("created_at", engine.commerce.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_shadow")),
    )
    with op.batch_alter_table("model_shadow", schema=None) as batch_op:
        batch_op.create_index(
            "ix_model_shadow_model_created", ["model", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_model_shadow_request_id"), ["request_id"])
        batch_op.create_index(batch_op.f("ix_model_shadow_created_at"), ["created_at"])


def downgrade() -> None:
    op.drop_table("model_shadow")
