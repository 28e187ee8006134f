"""live enrollments compare addresses without case

One live (active or blocked) enrollment per address and sequence, the address compared without case as the
suppression list compares it: `Sam.Jones@example.com` and `sam.jones@example.com` are one person, who must not get
a sequence's mail twice. The unique index moves from (sequence, email) to (sequence, lower(email)).

A database may already hold live enrollments that differ only in the case of their address (the old index let
them in). The one enrolled first (the lowest id) stays live; each later one is stopped, with the reason
"duplicate of enrollment N (the same address in another case)" and a `sequence_stopped` event in its record's
activity (source `migration`). A migration reads no clock (time is a parameter, and the store never asks for
it): they are stopped as of the latest event the database holds, the last moment it knows of. Nothing else
changes; `outreach enrollments list` shows the stopped ones. The downgrade restores the case-sensitive index (the
stopped enrollments stay stopped).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 10:00:00.000000
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

from outreach.store.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEX = "uq_enrollments_live_email"
LIVE = sa.text("status IN ('active', 'blocked')")

_enrollments = sa.table(
    "enrollments",
    sa.column("id", sa.Integer),
    sa.column("record_id", sa.String),
    sa.column("email", sa.String),
    sa.column("sequence", sa.String),
    sa.column("status", sa.String),
    sa.column("reason", sa.String),
    sa.column("next_due_at", UTCDateTime()),
    sa.column("started_at", UTCDateTime()),
    sa.column("ended_at", UTCDateTime()),
)
_events = sa.table(
    "events",
    sa.column("record_id", sa.String),
    sa.column("kind", sa.String),
    sa.column("at", UTCDateTime()),
    sa.column("data", sa.JSON),
    sa.column("source", sa.String),
)


def upgrade() -> None:
    _stop_duplicates()
    op.drop_index(INDEX, table_name="enrollments", sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_index(INDEX, "enrollments", ["sequence", sa.text("lower(email)")], unique=True, sqlite_where=LIVE,
                    postgresql_where=LIVE)  # fmt: skip


def downgrade() -> None:
    op.drop_index(INDEX, table_name="enrollments", sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_index(INDEX, "enrollments", ["sequence", "email"], unique=True, sqlite_where=LIVE, postgresql_where=LIVE)


def _stop_duplicates() -> None:
    """Stop every live enrollment but the first of those that share a sequence and an address without case."""
    e = _enrollments
    key = sa.func.lower(e.c.email)
    live = e.c.status.in_(("active", "blocked"))
    groups = (
        sa.select(e.c.sequence, key.label("address"))
        .where(live)
        .group_by(e.c.sequence, key)
        .having(sa.func.count() > 1)
        .subquery()
    )
    found = sa.select(e.c.id, e.c.record_id, e.c.sequence, key).join(
        groups, sa.and_(e.c.sequence == groups.c.sequence, key == groups.c.address)
    ).where(live).order_by(e.c.id)  # fmt: skip
    conn = op.get_bind()
    duplicates = conn.execute(found).all()
    if not duplicates:
        return
    # every enrollment has its "enrolled" event, so there is one; the enrollments' start is a fallback all the same
    now = conn.execute(sa.select(sa.func.max(_events.c.at))).scalar() or conn.execute(
        sa.select(sa.func.max(e.c.started_at))).scalar()  # fmt: skip
    if isinstance(now, str):  # SQLite: max() of a column comes back as its text
        now = dt.datetime.fromisoformat(now)
    assert isinstance(now, dt.datetime)  # the duplicates have a start
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    first: dict[tuple[str, str], int] = {}
    for enrollment_id, record_id, sequence, address in duplicates:
        kept = first.setdefault((sequence, address), enrollment_id)
        if kept == enrollment_id:
            continue
        reason = f"duplicate of enrollment {kept} (the same address in another case)"
        conn.execute(sa.update(e).where(e.c.id == enrollment_id).values(status="stopped", reason=reason,
                                                                        next_due_at=None, ended_at=now))  # fmt: skip
        conn.execute(sa.insert(_events).values(record_id=record_id, kind="sequence_stopped", at=now,
                                               data={"sequence": sequence, "reason": reason, "enrollment": enrollment_id},
                                               source="migration"))  # fmt: skip
