"""analytics channels

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 02:45:00

The storefront channel of each interaction and of each logged recommendation (nullable: rows
written before this revision, and clients that do not send one, have none).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("interactions", "recommendations")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("channel_id", sa.String(length=64), nullable=True))
            batch_op.create_index(
                batch_op.f(f"ix_{table}_channel_id"), ["channel_id"], unique=False
            )


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_channel_id"))
            batch_op.drop_column("channel_id")
