"""The tables the engine keeps, in SQLAlchemy Core, for SQLite and PostgreSQL alike.

Alembic owns the schema (outreach/store/migrations); this module is what the
migrations must produce, and a test checks that they do.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """An aware UTC datetime in both dialects (SQLite keeps no offset; PostgreSQL timestamptz)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store keeps aware datetimes only")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        parsed: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _ts(name: str, nullable: bool = True) -> sa.Column[dt.datetime]:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


records = sa.Table(
    "records",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("email", sa.String(320)),  # normalized; NULL: the record cannot be mailed
    sa.Column("owner", sa.String(64)),
    sa.Column("stage", sa.String(128)),
    _ts("stage_entered_at"),
    sa.Column("timezone", sa.String(64)),
    sa.Column("fields", sa.JSON, nullable=False),  # declared custom fields; datetimes as UTC ISO text
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    _ts("converted_at"),
    _ts("deleted_at"),
    sa.Index(None, "email"),
    sa.Index(None, "type", "stage", "stage_entered_at"),  # overdue records of a stage: one range
    sa.Index(None, "owner"),
    sa.Index(None, "updated_at"),  # auto-enrollment looks only at records changed since its last look
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("email", sa.String(320), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),  # unsubscribed | bounced | complaint | manual
    _ts("at", nullable=False),
    sa.Column("source", sa.String(200)),
)

# Every version of every definition ever applied, by content hash.
definitions = sa.Table(
    "definitions",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("body", sa.JSON, nullable=False),
    _ts("applied_at", nullable=False),  # when this version was first applied
)

# Which version of each definition is in force; a removed definition has no row.
active_definitions = sa.Table(
    "active_definitions",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("hash", sa.String(64), nullable=False),
    _ts("applied_at", nullable=False),
)

enrollments = sa.Table(
    "enrollments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.String(64), sa.ForeignKey("records.id"), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("sequence", sa.String(200), nullable=False),
    sa.Column("sequence_hash", sa.String(64), nullable=False),
    sa.Column("enrolled_by", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active | blocked | completed | stopped
    sa.Column("reason", sa.String(500)),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("steps_done", sa.Integer, nullable=False),
    _ts("next_due_at"),
    _ts("started_at", nullable=False),
    _ts("last_step_at"),
    _ts("ended_at"),
    sa.Column("thread_message_id", sa.String(300)),
    sa.Column("thread_subject", sa.String(1000)),
    sa.Column("awaiting_task", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index(None, "status", "next_due_at"),
    sa.Index(None, "awaiting_task", "status"),  # task steps waiting: found without reading every enrollment
    sa.Index(None, "record_id"),
    sa.Index(None, "sequence", "status"),
)
# One live enrollment per address and sequence, the address compared without case as the suppression list compares
# it: Sam.Jones@... and sam.jones@... are one person (migration 0009).
sa.Index(
    "uq_enrollments_live_email",
    enrollments.c.sequence,
    sa.func.lower(enrollments.c.email),
    unique=True,
    sqlite_where=sa.text("status IN ('active', 'blocked')"),
    postgresql_where=sa.text("status IN ('active', 'blocked')"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("enrollment_id", sa.Integer, sa.ForeignKey("enrollments.id")),
    sa.Column("campaign", sa.String(200)),
    sa.Column("record_id", sa.String(64)),
    sa.Column("template", sa.String(200)),
    sa.Column("step_id", sa.String(200)),
    sa.Column("process", sa.String(200)),  # reminder mail: the SalesProcess that sent it
    sa.Column("sender", sa.String(320), nullable=False),
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("subject", sa.String(1000), nullable=False),
    sa.Column("message_id", sa.String(300), nullable=False, unique=True),
    sa.Column("message", sa.LargeBinary, nullable=False),  # rendered once, sent as is
    sa.Column(
        "state", sa.String(16), nullable=False
    ),  # queued | sending | sent | deferred | failed | unknown | bounced
    sa.Column("attempt_id", sa.String(64)),
    sa.Column("daemon_id", sa.String(200)),  # the daemon that marked it `sending`
    sa.Column("attempts", sa.Integer, nullable=False),
    _ts("next_attempt_at"),
    sa.Column("last_error", sa.String(1000)),
    _ts("created_at", nullable=False),
    _ts("sent_at"),
    # the key the message's signed links name (hex of 16 random bytes), the URLs its tracked links lead to (a list,
    # in order, as written in the template; NULL: none), and the language of its unsubscribe page
    sa.Column("link_key", sa.String(32), unique=True),
    sa.Column("link_urls", sa.JSON),
    sa.Column("language", sa.String(8)),
    sa.Index(None, "state", "next_attempt_at"),
    sa.Index(None, "state", "id"),  # claims: the oldest queued messages, read in order (migration 0009)
    sa.Index(None, "record_id"),
    sa.Index(None, "created_at"),  # the senders' mail of the last 24 hours (daily limits)
    sa.Index(None, "campaign", "step_id", "state"),  # a campaign's statistics, without reading its messages
)

link_hits = sa.Table(  # opens and clicks of a message's tracked links
    "link_hits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("outbox_id", sa.Integer, sa.ForeignKey("outbox.id"), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # open | click
    sa.Column("link", sa.Integer),  # a click: which link of the message
    _ts("at", nullable=False),
    sa.Column("automated", sa.String(200)),  # why it looks automated (a scanner, a prefetch); NULL: a person
    sa.Column("user_agent", sa.String(300)),
    sa.Index(None, "outbox_id", "at"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.String(64)),
    sa.Column("kind", sa.String(32), nullable=False),
    _ts("at", nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),  # cli | import | api | engine | imap | web
    sa.Index(None, "record_id", "at"),
    sa.Index(None, "kind", "at"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.String(64), sa.ForeignKey("records.id"), nullable=False),
    sa.Column("subject", sa.String(500), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),  # call | email | todo | meeting
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16)),  # as a campaign's trigger set it (not started, in progress ...); NULL: none
    sa.Column("owner", sa.String(64)),
    _ts("due_at"),
    _ts("created_at", nullable=False),
    _ts("completed_at"),
    sa.Column("enrollment_id", sa.Integer, sa.ForeignKey("enrollments.id")),
    sa.Column("step_id", sa.String(200)),
    sa.Index(None, "record_id", "completed_at"),
    sa.Index(None, "enrollment_id"),
)

appointments = sa.Table(
    "appointments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.String(64), sa.ForeignKey("records.id"), nullable=False),
    sa.Column("subject", sa.String(500), nullable=False),
    _ts("starts_at", nullable=False),
    _ts("created_at", nullable=False),
    sa.Index(None, "record_id", "starts_at"),
)

campaign_runs = sa.Table(  # a campaign's run: its status and how far its campaign mail's recipients were picked
    "campaign_runs",
    metadata,
    sa.Column("campaign", sa.String(200), primary_key=True),
    sa.Column("hash", sa.String(64), nullable=False),  # the definition applied last
    sa.Column("module", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # scheduled | sending | sent | stopped | deleted
    _ts("send_at", nullable=False),
    _ts("started_at"),  # when its campaign mail started going (follow-ups count from it)
    _ts("finished_at"),  # when every recipient of its campaign mail was mailed or skipped
    sa.Column("cursor", sa.String(64)),  # the last record id looked at, so a restart resumes after it after it
    sa.Column("reason", sa.String(500)),  # why it is stopped, or why its mail waits
    _ts("changed_at"),
    sa.Index(None, "status", "send_at"),
)

campaign_steps = sa.Table(  # a follow-up's progress (step 1 to 3; the campaign mail is campaign_runs')
    "campaign_steps",
    metadata,
    sa.Column("campaign", sa.String(200), primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # sending | sent
    _ts("started_at", nullable=False),
    _ts("finished_at"),
    sa.Column("cursor", sa.String(64)),
)

campaign_recipients = sa.Table(  # who a step mails (or skipped, and why), and what each did with it
    "campaign_recipients",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("campaign", sa.String(200), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),  # 0 the campaign mail, 1..3 follow-ups
    sa.Column("record_id", sa.String(64), nullable=False),
    sa.Column("email", sa.String(320)),  # lower case: one mail per address and step
    sa.Column("status", sa.String(16), nullable=False),  # queued | mailed | skipped
    sa.Column("reason", sa.String(300)),  # skipped: why; queued: why it waits
    sa.Column("outbox_id", sa.Integer, sa.ForeignKey("outbox.id")),
    _ts("opened_at"),  # the first open by a person (its triggers fired then)
    _ts("clicked_at"),
    _ts("bounced_at"),
    sa.Column("automated_opens", sa.Integer, nullable=False, server_default="0"),
    _ts("held_until"),  # queued mail that waits (a send window, a daily limit) is not rendered before this
    sa.UniqueConstraint("campaign", "step", "record_id"),
    sa.Index(None, "campaign", "step", "status", "id"),  # rendering takes the queued in order; stats count by step
    sa.Index(None, "campaign", "step", "email"),
    sa.Index(None, "outbox_id"),
)

reminder_state = sa.Table(
    "reminder_state",
    metadata,
    sa.Column("process", sa.String(200), primary_key=True),
    sa.Column("record_id", sa.String(64), primary_key=True),
    sa.Column("stage", sa.String(128), nullable=False),
    _ts("overdue_since", nullable=False),
    _ts("first_sent_at"),
    _ts("last_sent_at"),
    _ts("next_due_at"),
    sa.Column("sent", sa.Integer, nullable=False),
    _ts("stage_entered_at", nullable=False),  # with stage and overdue_since: which overdue period this is
    sa.Column("stopped", sa.String(16)),  # task | appointment: stopped before the record left the stage
    _ts("stopped_at"),
    sa.Column("blocked", sa.String(500)),  # why the due reminder cannot go (no such user, a template problem)
    sa.Index(None, "next_due_at"),
)

mailbox_state = sa.Table(
    "mailbox_state",
    metadata,
    sa.Column("mailbox", sa.String(200), primary_key=True),
    sa.Column("uidvalidity", sa.BigInteger),
    sa.Column("last_uid", sa.BigInteger),
    _ts("updated_at", nullable=False),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),  # mailbox:anna, reminders, housekeeping, daemon:<id>
    sa.Column("holder", sa.String(200), nullable=False),  # the daemon's id
    _ts("expires_at", nullable=False),
    _ts("renewed_at"),
    sa.Column("info", sa.JSON),  # a daemon's own lease: its host, pid, last tick, queue
)
