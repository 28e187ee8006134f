"""signed links and their hits

Each message keeps the key its signed links name (unsubscribe, open pixel, clicks) and the URLs its tracked links
lead to, recorded at send time so that a click redirects only there; `link_hits` keeps each open and click, with
why it looks automated when it does.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outreach.store.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_key", sa.String(32), nullable=True))
        batch_op.add_column(sa.Column("link_urls", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("language", sa.String(8), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_outbox_link_key"), ["link_key"])
    op.create_table(
        "link_hits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("link", sa.Integer(), nullable=True),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("automated", sa.String(200), nullable=True),
        sa.Column("user_agent", sa.String(300), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], name=op.f("fk_link_hits_outbox_id_outbox")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_hits")),
    )
    op.create_index(op.f("ix_link_hits_outbox_id_at"), "link_hits", ["outbox_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_link_hits_outbox_id_at"), table_name="link_hits")
    op.drop_table("link_hits")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_outbox_link_key"), type_="unique")
        batch_op.drop_column("language")
        batch_op.drop_column("link_urls")
        batch_op.drop_column("link_key")
