"""reminder periods, stops and blocks, the outbox's process, an index for overdue records

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 18:05:00.000000

`reminder_state.stage_entered_at` is NOT NULL without a server default: the table
has been empty in every release so far (nothing wrote reminder states before this
revision), so there are no rows to fill.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import outreach.store.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reminder_state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stage_entered_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False)
        )
        batch_op.add_column(sa.Column("stopped", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("stopped_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("blocked", sa.String(length=500), nullable=True))

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("process", sa.String(length=200), nullable=True))

    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_type_stage"))
        batch_op.create_index(
            batch_op.f("ix_records_type_stage_stage_entered_at"), ["type", "stage", "stage_entered_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_type_stage_stage_entered_at"))
        batch_op.create_index(batch_op.f("ix_records_type_stage"), ["type", "stage"], unique=False)

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("process")

    with op.batch_alter_table("reminder_state", schema=None) as batch_op:
        batch_op.drop_column("blocked")
        batch_op.drop_column("stopped_at")
        batch_op.drop_column("stopped")
        batch_op.drop_column("stage_entered_at")
