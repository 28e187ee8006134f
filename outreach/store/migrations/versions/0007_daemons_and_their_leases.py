"""daemons and their leases

Several daemons on one PostgreSQL database: an outbox row in `sending` names the daemon that claimed it, so that
only the rows of a daemon that is gone become `unknown`; a lease keeps when it was renewed and, for a daemon's own
lease, what it last did (`outreach status`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outreach.store.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("daemon_id", sa.String(200), nullable=True))
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("renewed_at", UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("info", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_column("info")
        batch_op.drop_column("renewed_at")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("daemon_id")
