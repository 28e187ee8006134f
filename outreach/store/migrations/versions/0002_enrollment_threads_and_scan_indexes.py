"""enrollment threads, task waits, scan indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:04:46.450739
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("thread_subject", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("awaiting_task", sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step_id", sa.String(length=200), nullable=True))

    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_records_updated_at"), ["updated_at"], unique=False)

    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tasks_enrollment_id"), ["enrollment_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_enrollment_id"))

    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_updated_at"))

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("step_id")

    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_column("awaiting_task")
        batch_op.drop_column("thread_subject")
