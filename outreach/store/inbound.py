"""The store's verbs for mail that comes back: where each mailbox was read up to, what we sent, and what a reply,
an auto-reply or a bounce does.

Mixed into Store. The IMAP poller (outreach/mail/imap.py) asks which Message-IDs are ours and what we sent to an
address, classifies a message (outreach/mail/inbound.py), and hands the result to `apply_inbound`, which writes
its effects and the mailbox's new position in one transaction: a message is applied once, or not at all.

A mailbox's position (`mailbox_state`) is its UIDVALIDITY and the last UID handled; `updated_at` is when the
mailbox was last known to be read up to there. Moving it is a compare-and-set (`last_uid < uid`), so two daemons
reading one mailbox (PostgreSQL) never apply one message twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outreach.store import sequencing, tables

if TYPE_CHECKING:
    from outreach.mail import inbound

SOURCE = "imap"
# The events a message of a mailbox leaves; a resynchronisation skips the messages that left one already.
EVENT_KINDS = ("replied", "auto_reply", "bounced", "bounce_delayed")
# Outbox states of a message that may have reached its recipient: a bounce can only be about one of these.
_MAYBE_DELIVERED = ("sent", "unknown", "sending")
_MAX_IDS = 100


@dataclasses.dataclass(frozen=True)
class MailboxPosition:
    """How far a mailbox has been read: its UIDVALIDITY and the last UID handled (None: never read), and when
    it was last known to be read up to there."""

    uidvalidity: int | None
    last_uid: int | None
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Applied:
    """What one message did: the records it touched, the sequences it stopped or blocked, the outbox messages it
    marked bounced and the addresses it suppressed."""

    kind: str
    records: tuple[str, ...] = ()
    stopped: int = 0
    blocked: int = 0
    bounced: tuple[int, ...] = ()
    suppressed: tuple[str, ...] = ()


class InboundVerbs:
    engine: AsyncEngine
    dialect: str

    # --- where a mailbox was read up to ------------------------------------------------------------

    async def mailbox_position(self, mailbox: str) -> MailboxPosition | None:
        m = tables.mailbox_state
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(m).where(m.c.mailbox == mailbox))).first()
        return MailboxPosition(row.uidvalidity, row.last_uid, row.updated_at) if row else None

    async def set_mailbox_position(self, mailbox: str, uidvalidity: int, last_uid: int, now: dt.datetime) -> bool:
        """Take up a mailbox at (UIDVALIDITY, last UID): after a first look or a resynchronisation. False when it is
        there or further already (another daemon did it)."""
        m = tables.mailbox_state
        newer = sa.or_(m.c.uidvalidity.is_(None), m.c.uidvalidity != uidvalidity, m.c.last_uid.is_(None),
                       m.c.last_uid < last_uid)  # fmt: skip
        for _ in range(2):
            try:
                async with self.engine.begin() as conn:
                    if (await conn.execute(sa.select(m.c.mailbox).where(m.c.mailbox == mailbox))).first() is None:
                        values = {"uidvalidity": uidvalidity, "last_uid": last_uid, "updated_at": now}
                        await conn.execute(sa.insert(m).values(mailbox=mailbox, **values))
                        return True
                    done = await conn.execute(
                        sa.update(m)
                        .where(m.c.mailbox == mailbox, newer)
                        .values(uidvalidity=uidvalidity, last_uid=last_uid, updated_at=now)
                    )
                    return bool(done.rowcount)
            except sa.exc.IntegrityError:  # another daemon inserted it between our look and our insert
                continue
        return False

    async def advance_mailbox(self, mailbox: str, uidvalidity: int, uid: int, now: dt.datetime) -> bool:
        """Mark every message up to `uid` handled (messages that caused nothing). False when the position is
        elsewhere: further already, or under another UIDVALIDITY."""
        async with self.engine.begin() as conn:
            return await _advance(conn, mailbox, uidvalidity, uid, now)

    async def mailbox_checked(self, mailbox: str, uidvalidity: int, now: dt.datetime) -> None:
        """The mailbox was read to its end at `now`: a resynchronisation later reads again only from here."""
        m = tables.mailbox_state
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(m)
                .where(m.c.mailbox == mailbox, m.c.uidvalidity == uidvalidity, m.c.updated_at < now)
                .values(updated_at=now)
            )

    # --- what we sent (the classifier's questions) -------------------------------------------------------

    async def our_message_ids(self, message_ids: Collection[str]) -> set[str]:
        """Those of `message_ids` that are Message-IDs of mail we wrote (any outbox message: they are random, so
        whoever names one has seen it)."""
        ids = list(dict.fromkeys(message_ids))[:_MAX_IDS]
        if not ids:
            return set()
        o = tables.outbox
        async with self.engine.connect() as conn:
            return set((await conn.execute(sa.select(o.c.message_id).where(o.c.message_id.in_(ids)))).scalars())

    async def sent_subjects_to(self, address: str, senders: Collection[str]) -> list[str]:
        """The subjects of our mail to `address` in its live enrollments, sent from one of `senders` (the mailbox's
        users; empty: from anyone)."""
        o, e, r = tables.outbox, tables.enrollments, tables.records
        query = (
            sa.select(o.c.subject)
            .distinct()
            .select_from(o.join(e, e.c.id == o.c.enrollment_id).join(r, r.c.id == o.c.record_id))
            .where(r.c.email == address.lower(), e.c.status.in_(sequencing.LIVE), o.c.state.in_(_MAYBE_DELIVERED))
        )
        if senders:
            query = query.where(sa.func.lower(o.c.sender).in_([s.lower() for s in senders]))
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def first_sent_at(self, senders: Collection[str]) -> dt.datetime | None:
        """When the first of our messages from `senders` (empty: from anyone) went out; None before any did."""
        o = tables.outbox
        query = sa.select(sa.func.min(o.c.sent_at))
        if senders:
            query = query.where(sa.func.lower(o.c.sender).in_([s.lower() for s in senders]))
        async with self.engine.connect() as conn:
            value: dt.datetime | None = (await conn.execute(query)).scalar()
        return value

    # --- applying one message ---------------------------------------------------------------------------

    async def apply_inbound(
        self,
        mailbox: str,
        uidvalidity: int,
        uid: int,
        message: inbound.Inbound,
        *,
        senders: Collection[str],
        now: dt.datetime,
        resync_since: dt.datetime | None = None,
    ) -> Applied | None:
        """Apply one classified message and move the mailbox's position to `uid`, in one transaction.

        - reply: a `replied` event on the record of our message (or, for a reply found by its subject, on each
          record with a live enrollment at the sender's address), which stops every live sequence of the person;
        - auto_reply: an `auto_reply` event on the record's activity; its sequences go on;
        - bounce: our message becomes `bounced`, the live enrollments of its address are blocked with the
          diagnostic ("bounced: 550 5.1.1 user unknown"), the address is suppressed (reason `bounced`) and the
          record gets a `bounced` event;
        - delayed: a `bounce_delayed` event only, a warning;
        - ignored: nothing but the position.

        Returns None, and changes nothing, when the message was applied already: the position is at `uid` or
        further (another daemon), or, while resynchronising (`resync_since`, the position is left alone), a
        message with its Message-ID left an event of this mailbox since then.
        """
        async with self.engine.begin() as conn:
            if resync_since is None:
                if not await _advance(conn, mailbox, uidvalidity, uid, now):
                    return None
            else:
                m = tables.mailbox_state
                # A write first: it takes SQLite's write lock and PostgreSQL's row lock before the check below.
                await conn.execute(sa.update(m).where(m.c.mailbox == mailbox).values(mailbox=m.c.mailbox))
                if message.message_id and await _left_event(conn, mailbox, message.message_id, resync_since):
                    return None
            data = {
                "mailbox": mailbox, "uid": uid, "message_id": message.message_id, "from": message.from_address,
                "subject": message.subject, "reason": message.reason,
            }  # fmt: skip
            kind = str(message.kind)
            if kind == "reply":
                return await _reply(conn, message, senders, data, now)
            if kind == "auto_reply":
                records = await _records(conn, message, senders)
                for record_id in records:
                    await sequencing.insert_event(conn, record_id, "auto_reply", now, data, SOURCE)
                return Applied(kind, tuple(records))
            if kind in ("bounce", "delayed"):
                return await _bounce(conn, mailbox, message, senders, data, now)
            return Applied(kind)


async def _advance(conn: AsyncConnection, mailbox: str, uidvalidity: int, uid: int, now: dt.datetime) -> bool:
    m = tables.mailbox_state
    done = await conn.execute(
        sa.update(m)
        .where(m.c.mailbox == mailbox, m.c.uidvalidity == uidvalidity, m.c.last_uid < uid)
        .values(last_uid=uid, updated_at=now)
    )
    return bool(done.rowcount)


async def _left_event(conn: AsyncConnection, mailbox: str, message_id: str, since: dt.datetime) -> bool:
    """Whether a message with this Message-ID left an event of this mailbox at or after `since`."""
    e = tables.events
    query = (
        sa.select(e.c.id)
        .where(
            e.c.kind.in_(EVENT_KINDS),
            e.c.at >= since,
            e.c.source == SOURCE,
            e.c.data["message_id"].as_string() == message_id,
            e.c.data["mailbox"].as_string() == mailbox,
        )
        .limit(1)
    )
    return (await conn.execute(query)).first() is not None


async def _records(conn: AsyncConnection, message: inbound.Inbound, senders: Collection[str]) -> list[str]:
    """The records a reply or an auto-reply is about: those our referenced mail went to, else those with a live
    enrollment at the sender's address (mail from one of `senders`)."""
    o, e, r = tables.outbox, tables.enrollments, tables.records
    if message.our_message_ids:
        # Mail to people only: a rep's answer to a reminder about a record is no reply of that record.
        query = (
            sa.select(o.c.record_id)
            .distinct()
            .where(
                o.c.message_id.in_(list(message.our_message_ids)),
                o.c.record_id.is_not(None),
                sa.or_(o.c.enrollment_id.is_not(None), o.c.campaign.is_not(None)),
            )
        )
        return sorted((await conn.execute(query)).scalars())
    if not message.from_address:
        return []
    mailed = sa.select(o.c.id).where(o.c.enrollment_id == e.c.id)
    if senders:
        mailed = mailed.where(sa.func.lower(o.c.sender).in_([s.lower() for s in senders]))
    query = (
        sa.select(e.c.record_id)
        .distinct()
        .select_from(e.join(r, r.c.id == e.c.record_id))
        .where(r.c.email == message.from_address.lower(), e.c.status.in_(sequencing.LIVE), sa.exists(mailed))
    )
    return sorted((await conn.execute(query)).scalars())


async def _reply(
    conn: AsyncConnection, message: inbound.Inbound, senders: Collection[str], data: Mapping[str, Any],
    now: dt.datetime,
) -> Applied:  # fmt: skip
    records = await _records(conn, message, senders)
    stopped = 0
    for record_id in records:
        await sequencing.insert_event(conn, record_id, "replied", now, data, SOURCE)
        stopped += await sequencing.halt_record(conn, record_id, "replied", now)
    return Applied("reply", tuple(records), stopped=stopped)


async def _bounce(
    conn: AsyncConnection, mailbox: str, message: inbound.Inbound, senders: Collection[str],
    data: Mapping[str, Any], now: dt.datetime,
) -> Applied:  # fmt: skip
    """A permanent bounce or a delay warning, applied to each of our messages it is about."""
    permanent = str(message.kind) == "bounce"
    o = tables.outbox
    columns = (o.c.id, o.c.record_id, o.c.recipient, o.c.message_id)
    reported = [b for b in message.bounced if b.permanent == permanent] or list(message.bounced)
    if message.our_message_ids:
        query = sa.select(*columns).where(
            o.c.message_id.in_(list(message.our_message_ids)), o.c.state.in_(_MAYBE_DELIVERED)
        )
        rows: Sequence[Any] = (await conn.execute(query.order_by(o.c.id))).all()
    else:  # no copy of our message in the report: our latest mail to each address it names
        rows = []
        for address in dict.fromkeys(b.address for b in reported):
            query = sa.select(*columns).where(sa.func.lower(o.c.recipient) == address, o.c.state.in_(_MAYBE_DELIVERED))
            if senders:
                query = query.where(sa.func.lower(o.c.sender).in_([s.lower() for s in senders]))
            row = (await conn.execute(query.order_by(o.c.id.desc()).limit(1))).first()
            if row is not None:
                rows.append(row)
    records: list[str] = []
    bounced: list[int] = []
    suppressed: list[str] = []
    blocked = 0
    for row in rows:
        recipient = str(row.recipient).lower()
        about = next((b for b in reported if recipient in (b.address, b.final_recipient)), None)
        about = about or (reported[0] if reported else None)
        status = about.status if about else ""
        diagnostic = _diagnostic(status, about.diagnostic if about else "") or message.reason
        details = {**data, "outbox": row.id, "recipient": recipient, "original": row.message_id,
                   "status": status, "diagnostic": diagnostic}  # fmt: skip
        if row.record_id is not None:
            records.append(row.record_id)
        if not permanent:
            if row.record_id is not None:
                await sequencing.insert_event(conn, row.record_id, "bounce_delayed", now, details, SOURCE)
            continue
        reason = f"bounced: {diagnostic}"
        await conn.execute(sa.update(o).where(o.c.id == row.id).values(state="bounced", last_error=reason[:1000]))
        c = tables.campaign_recipients
        await conn.execute(sa.update(c).where(c.c.outbox_id == row.id).values(status="bounced", bounced_at=now))
        e = tables.enrollments
        done = await conn.execute(
            sa.update(e)
            .where(sa.func.lower(e.c.email) == recipient, e.c.status.in_(sequencing.LIVE))
            .values(status="blocked", reason=reason[:500])
        )
        blocked += int(done.rowcount or 0)
        if await _suppress(conn, recipient, now, f"{SOURCE} {mailbox}"):
            suppressed.append(recipient)
        bounced.append(row.id)
        if row.record_id is not None:
            await sequencing.insert_event(
                conn, row.record_id, "bounced", now, {**details, "blocked": int(done.rowcount or 0)}, SOURCE
            )
    return Applied(str(message.kind), tuple(dict.fromkeys(records)), blocked=blocked, bounced=tuple(bounced),
                   suppressed=tuple(suppressed))  # fmt: skip


def _diagnostic(status: str, diagnostic: str) -> str:
    """`550 5.1.1 user unknown`: the server's words, with the status in front when they lack it."""
    if diagnostic and status and status not in diagnostic:
        return f"{status} {diagnostic}"
    return diagnostic or status


async def _suppress(conn: AsyncConnection, email: str, now: dt.datetime, source: str) -> bool:
    """Keep an address off every sequence and campaign (reason `bounced`); False when it was already."""
    s = tables.suppressions
    if (await conn.execute(sa.select(s.c.email).where(s.c.email == email))).first() is not None:
        return False
    await conn.execute(sa.insert(s).values(email=email, reason="bounced", at=now, source=source[:200]))
    return True
