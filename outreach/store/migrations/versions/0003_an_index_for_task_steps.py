"""an index for task steps

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:52:28.000411
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_enrollments_awaiting_task_status"), ["awaiting_task", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollments_awaiting_task_status"))
