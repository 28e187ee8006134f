"""campaigns that send

Campaigns had tables from the first schema that nothing wrote (campaigns validated and were never sent; a rename
was the only statement to touch them). They are made again with what sending needs: a run's module, owner, status
reason and last change; one row per recipient and step with an id (the order in which its mail is rendered), the
address (one mail per address and step) and the count of automated opens; and a table of follow-ups' progress.
An index on the outbox's (campaign, step_id, state) counts a campaign's mail by state without reading the
messages. A task gets a status (a campaign's trigger action sets one). The old campaign tables are dropped with whatever they held: no version of outreach wrote to them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 21:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outreach.store.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("campaign_recipients")
    op.drop_table("campaign_runs")
    op.create_table(
        "campaign_runs",
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("module", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("send_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("cursor", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("changed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("campaign", name=op.f("pk_campaign_runs")),
    )
    op.create_index(op.f("ix_campaign_runs_status_send_at"), "campaign_runs", ["status", "send_at"])
    op.create_table(
        "campaign_steps",
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("cursor", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("campaign", "step", name=op.f("pk_campaign_steps")),
    )
    op.create_table(
        "campaign_recipients",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("opened_at", UTCDateTime(), nullable=True),
        sa.Column("clicked_at", UTCDateTime(), nullable=True),
        sa.Column("bounced_at", UTCDateTime(), nullable=True),
        sa.Column("automated_opens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("held_until", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], name=op.f("fk_campaign_recipients_outbox_id_outbox")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_recipients")),
        sa.UniqueConstraint("campaign", "step", "record_id",
                            name=op.f("uq_campaign_recipients_campaign_step_record_id")),
    )
    op.create_index(op.f("ix_campaign_recipients_campaign_step_status_id"), "campaign_recipients",
                    ["campaign", "step", "status", "id"])  # fmt: skip
    op.create_index(op.f("ix_campaign_recipients_campaign_step_email"), "campaign_recipients",
                    ["campaign", "step", "email"])  # fmt: skip
    op.create_index(op.f("ix_campaign_recipients_outbox_id"), "campaign_recipients", ["outbox_id"])
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=True))
    op.create_index(op.f("ix_outbox_campaign_step_id_state"), "outbox", ["campaign", "step_id", "state"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_campaign_step_id_state"), table_name="outbox")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("status")
    op.drop_table("campaign_recipients")
    op.drop_table("campaign_steps")
    op.drop_table("campaign_runs")
    op.create_table(
        "campaign_runs",
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("send_at", UTCDateTime(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("cursor", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("campaign", name=op.f("pk_campaign_runs")),
    )
    op.create_table(
        "campaign_recipients",
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("opened_at", UTCDateTime(), nullable=True),
        sa.Column("clicked_at", UTCDateTime(), nullable=True),
        sa.Column("bounced_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], name=op.f("fk_campaign_recipients_outbox_id_outbox")),
        sa.PrimaryKeyConstraint("campaign", "step", "record_id", name=op.f("pk_campaign_recipients")),
    )
