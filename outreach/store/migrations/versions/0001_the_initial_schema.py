"""the initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 15:36:06.630555
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import outreach.store.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "active_definitions",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("applied_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", name=op.f("pk_active_definitions")),
    )
    op.create_table(
        "campaign_runs",
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("send_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cursor", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("campaign", name=op.f("pk_campaign_runs")),
    )
    op.create_table(
        "definitions",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("applied_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", "hash", name=op.f("pk_definitions")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_kind_at"), ["kind", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_record_id_at"), ["record_id", "at"], unique=False)

    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "mailbox_state",
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name=op.f("pk_mailbox_state")),
    )
    op.create_table(
        "records",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("stage", sa.String(length=128), nullable=True),
        sa.Column("stage_entered_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("converted_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_records_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_type_stage"), ["type", "stage"], unique=False)

    op.create_table(
        "reminder_state",
        sa.Column("process", sa.String(length=200), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=128), nullable=False),
        sa.Column("overdue_since", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_sent_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_sent_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_due_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("process", "record_id", name=op.f("pk_reminder_state")),
    )
    with op.batch_alter_table("reminder_state", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reminder_state_next_due_at"), ["next_due_at"], unique=False)

    op.create_table(
        "suppressions",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("email", name=op.f("pk_suppressions")),
    )
    op.create_table(
        "appointments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("starts_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_appointments_record_id_records")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
    )
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_appointments_record_id_starts_at"), ["record_id", "starts_at"], unique=False
        )

    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("sequence", sa.String(length=200), nullable=False),
        sa.Column("sequence_hash", sa.String(length=64), nullable=False),
        sa.Column("enrolled_by", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("steps_done", sa.Integer(), nullable=False),
        sa.Column("next_due_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_step_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("thread_message_id", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_enrollments_record_id_records")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollments")),
    )
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrollments_record_id"), ["record_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_enrollments_sequence_status"), ["sequence", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_enrollments_status_next_due_at"), ["status", "next_due_at"], unique=False)
        batch_op.create_index(
            "uq_enrollments_live_email",
            ["sequence", "email"],
            unique=True,
            sqlite_where=sa.text("status IN ('active', 'blocked')"),
            postgresql_where=sa.text("status IN ('active', 'blocked')"),
        )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=True),
        sa.Column("campaign", sa.String(length=200), nullable=True),
        sa.Column("record_id", sa.String(length=64), nullable=True),
        sa.Column("template", sa.String(length=200), nullable=True),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=1000), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["enrollment_id"], ["enrollments.id"], name=op.f("fk_outbox_enrollment_id_enrollments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_outbox_message_id")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_record_id"), ["record_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_state_next_attempt_at"), ["state", "next_attempt_at"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("due_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("enrollment_id", sa.Integer(), nullable=True),
        sa.Column("step_id", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["enrollment_id"], ["enrollments.id"], name=op.f("fk_tasks_enrollment_id_enrollments")),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_tasks_record_id_records")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tasks_record_id_completed_at"), ["record_id", "completed_at"], unique=False
        )

    op.create_table(
        "campaign_recipients",
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("opened_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("clicked_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("bounced_at", outreach.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], name=op.f("fk_campaign_recipients_outbox_id_outbox")),
        sa.PrimaryKeyConstraint("campaign", "step", "record_id", name=op.f("pk_campaign_recipients")),
    )


def downgrade() -> None:
    op.drop_table("campaign_recipients")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_record_id_completed_at"))

    op.drop_table("tasks")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_state_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_outbox_record_id"))

    op.drop_table("outbox")
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_enrollments_live_email",
            sqlite_where=sa.text("status IN ('active', 'blocked')"),
            postgresql_where=sa.text("status IN ('active', 'blocked')"),
        )
        batch_op.drop_index(batch_op.f("ix_enrollments_status_next_due_at"))
        batch_op.drop_index(batch_op.f("ix_enrollments_sequence_status"))
        batch_op.drop_index(batch_op.f("ix_enrollments_record_id"))

    op.drop_table("enrollments")
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_appointments_record_id_starts_at"))

    op.drop_table("appointments")
    op.drop_table("suppressions")
    with op.batch_alter_table("reminder_state", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reminder_state_next_due_at"))

    op.drop_table("reminder_state")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_type_stage"))
        batch_op.drop_index(batch_op.f("ix_records_owner"))
        batch_op.drop_index(batch_op.f("ix_records_email"))

    op.drop_table("records")
    op.drop_table("mailbox_state")
    op.drop_table("leases")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_record_id_at"))
        batch_op.drop_index(batch_op.f("ix_events_kind_at"))

    op.drop_table("events")
    op.drop_table("definitions")
    op.drop_table("campaign_runs")
    op.drop_table("active_definitions")
