"""an index for claims

The dispatcher claims the oldest queued messages by id. Through the (state, next_attempt_at) index that read
every queued message's entry and sorted their ids at each claim, which grows with the backlog; (state, id)
gives them in order, so a claim reads as many entries as it takes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_state_id"), ["state", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_state_id"))
