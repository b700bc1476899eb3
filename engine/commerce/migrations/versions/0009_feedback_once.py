"""one feedback row per decision and label

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a label given twice to one decision was stored twice: keep the first
    op.execute(
        """
        DELETE FROM fraud_feedback
        WHERE id IN (
            SELECT id FROM (
                SELECT id, row_number() OVER (
                    PARTITION BY decision_id, label ORDER BY created_at, id
                ) AS n
                FROM fraud_feedback
            ) ranked
            WHERE n > 1
        )
        """
    )
    with op.batch_alter_table("fraud_feedback", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_fraud_feedback_decision_id"), ["decision_id", "label"]
        )


def downgrade() -> None:
    with op.batch_alter_table("fraud_feedback", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_fraud_feedback_decision_id"), type_="unique")
