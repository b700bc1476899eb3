"""experiments

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 02:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.commerce.schema

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("running_target", sa.String(length=100), nullable=True),
        sa.Column("created_at", engine.commerce.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", engine.commerce.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", engine.commerce.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_experiments")),
        sa.UniqueConstraint("running_target", name=op.f("uq_experiments_running_target")),
    )
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_experiments_status"), ["status"], unique=False)

    op.create_table(
        "experiment_exposures",
        sa.Column("experiment_key", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column(
            "first_exposed_at", engine.commerce.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("exposures", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_key"],
            ["experiments.key"],
            name=op.f("fk_experiment_exposures_experiment_key_experiments"),
        ),
        sa.PrimaryKeyConstraint(
            "experiment_key", "customer_id", name=op.f("pk_experiment_exposures")
        ),
    )
    with op.batch_alter_table("experiment_exposures", schema=None) as batch_op:
        batch_op.create_index(
            "ix_experiment_exposures_key_variant", ["experiment_key", "variant"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("experiment_exposures", schema=None) as batch_op:
        batch_op.drop_index("ix_experiment_exposures_key_variant")

    op.drop_table("experiment_exposures")
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiments_status"))

    op.drop_table("experiments")
