"""an index for daily limits

The scheduler counts each sender's mail of the last 24 hours before it sends (users' daily_limit); without an
index on created_at that reads the whole outbox, which only grows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 19:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_created_at"))
