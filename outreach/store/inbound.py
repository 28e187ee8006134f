"""The store's verbs for mail that comes back: where each mailbox was read up to, what we sent, and one
transaction per message for what it means.

A bounce or complaint is about the messages of ours it names (by Message-ID: its returned original, its
references, a VERP address, or an enrollment's step sent to the address it reports, `message_ids_of_step`), never
about whatever our latest mail to an address it names was: anyone can write a report naming anyone.

Mixed into Store. The IMAP poller (outreach/mail/imap.py) asks which Message-IDs are ours and what we sent to an
address, classifies a message (outreach/mail/inbound.py), and hands it to the application layer
(outreach/app/inbox.py), which opens `inbound_message`: in its transaction the mailbox's position moves, the
records and messages the message is about are read, and what the engine decided (outreach/engine/events.py) is
written. A message is applied once, or not at all.

A mailbox's position (`mailbox_state`) is its UIDVALIDITY and the last UID handled; `updated_at` is when the
mailbox was last known to be read up to there. Moving it is a compare-and-set (`last_uid < uid`), so two daemons
reading one mailbox (PostgreSQL) never apply one message twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outreach.store import changes, rows, tables

SOURCE = "imap"
# The events a message of a mailbox leaves; a resynchronisation skips the messages that left one already.
# `unverified`: a bounce or complaint that refers to no message of ours, recorded on no record, acting on nothing.
EVENT_KINDS = ("replied", "auto_reply", "bounced", "bounce_delayed", "complained", "unverified")
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


class InboundVerbs:
    engine: AsyncEngine
    dialect: str
    _record_of: Callable[[Mapping[Any, Any]], rows.Record]
    _write_lock: Callable[[AsyncConnection], Awaitable[None]]

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

    async def message_ids_of_step(self, enrollment_id: int, step_id: str, recipients: Collection[str]) -> set[str]:
        """The Message-IDs of our mail of enrollment `enrollment_id`'s step `step_id` to one of `recipients` that may
        have reached them: what a bounce's returned `X-Outreach-Enrollment` and `X-Outreach-Step` name, when the
        address it reports is the one we wrote to (the numbers alone can be guessed; with the address they name one
        message)."""
        addresses = [r.lower() for r in list(dict.fromkeys(recipients))[:_MAX_IDS]]
        if not addresses or not step_id:
            return set()
        o = tables.outbox
        query = sa.select(o.c.message_id).where(
            o.c.enrollment_id == enrollment_id, o.c.step_id == step_id, sa.func.lower(o.c.recipient).in_(addresses),
            o.c.state.in_(_MAYBE_DELIVERED),
        )  # fmt: skip
        async with self.engine.connect() as conn:
            return set((await conn.execute(query)).scalars())

    async def sent_subjects_to(self, address: str, senders: Collection[str]) -> list[str]:
        """The subjects of our mail to `address` in its live enrollments, sent from one of `senders` (the mailbox's
        users; empty: from anyone)."""
        o, e, r = tables.outbox, tables.enrollments, tables.records
        query = (
            sa.select(o.c.subject)
            .distinct()
            .select_from(o.join(e, e.c.id == o.c.enrollment_id).join(r, r.c.id == o.c.record_id))
            .where(r.c.email == address.lower(), e.c.status.in_(changes.LIVE), o.c.state.in_(_MAYBE_DELIVERED))
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

    @contextlib.asynccontextmanager
    async def inbound_message(
        self,
        mailbox: str,
        uidvalidity: int,
        uid: int,
        *,
        message_id: str | None,
        now: dt.datetime,
        resync_since: dt.datetime | None = None,
    ) -> AsyncIterator[InboundChanges | None]:
        """One transaction for one classified message: the mailbox's position moves to `uid`, and the application
        layer reads what the message is about and writes what it means (outreach/app/inbox.py) through the
        InboundChanges yielded: a message is applied once, or not at all.

        Yields None, and changes nothing, when the message was applied already: the position is at `uid` or
        further (another daemon), or, while resynchronising (`resync_since`, the position is left alone), a
        message with its Message-ID left an event of this mailbox since then.
        """
        async with self.engine.begin() as conn:
            await self._write_lock(conn)
            if resync_since is None:
                if not await _advance(conn, mailbox, uidvalidity, uid, now):
                    yield None
                    return
            else:
                m = tables.mailbox_state
                # A write first: it takes PostgreSQL's row lock before the check below (SQLite's lock is held).
                await conn.execute(sa.update(m).where(m.c.mailbox == mailbox).values(mailbox=m.c.mailbox))
                if message_id and await _left_event(conn, mailbox, message_id, resync_since):
                    yield None
                    return
            yield InboundChanges(conn, self.dialect, self._record_of)


@dataclasses.dataclass
class OurMessage:
    """A message of ours that an inbound message is about: its outbox row's id, record, recipient, Message-ID."""

    outbox_id: int
    record_id: str | None
    recipient: str
    message_id: str


class InboundChanges(changes.Changes):
    """The reads and writes of one inbound message's transaction (Changes, and what only mail that comes back
    needs: which of our messages and records it is about, and an outbox message marked bounced)."""

    async def records_of(
        self, our_message_ids: Collection[str], from_address: str | None, senders: Collection[str]
    ) -> list[str]:
        """The records a reply or an auto-reply is about: those our referenced mail went to, else those with a live
        enrollment at the sender's address (mail from one of `senders`)."""
        o, e, r = tables.outbox, tables.enrollments, tables.records
        if our_message_ids:
            # Mail to people only: a rep's answer to a reminder about a record is no reply of that record.
            query = (
                sa.select(o.c.record_id)
                .distinct()
                .where(
                    o.c.message_id.in_(list(our_message_ids)),
                    o.c.record_id.is_not(None),
                    sa.or_(o.c.enrollment_id.is_not(None), o.c.campaign.is_not(None)),
                )
            )
            return sorted((await self.conn.execute(query)).scalars())
        if not from_address:
            return []
        mailed = sa.select(o.c.id).where(o.c.enrollment_id == e.c.id)
        if senders:
            mailed = mailed.where(sa.func.lower(o.c.sender).in_([s.lower() for s in senders]))
        query = (
            sa.select(e.c.record_id)
            .distinct()
            .select_from(e.join(r, r.c.id == e.c.record_id))
            .where(r.c.email == from_address.lower(), e.c.status.in_(changes.LIVE), sa.exists(mailed))
        )
        return sorted((await self.conn.execute(query)).scalars())

    async def messages_of(self, our_message_ids: Collection[str], *, people_only: bool = False) -> list[OurMessage]:
        """The messages of ours a bounce or complaint is about (it names them), of those that may have reached their
        recipient; with `people_only`, not a reminder to a rep."""
        if not our_message_ids:
            return []
        o = tables.outbox
        query = sa.select(o.c.id, o.c.record_id, o.c.recipient, o.c.message_id).where(
            o.c.message_id.in_(list(our_message_ids)[:_MAX_IDS]), o.c.state.in_(_MAYBE_DELIVERED)
        )
        if people_only:
            query = query.where(sa.or_(o.c.enrollment_id.is_not(None), o.c.campaign.is_not(None)))
        found: Sequence[Any] = (await self.conn.execute(query.order_by(o.c.id))).all()
        return [OurMessage(row.id, row.record_id, str(row.recipient), row.message_id) for row in found]

    async def mark_bounced(self, outbox_id: int, reason: str, now: dt.datetime) -> tuple[str, int, str] | None:
        """Our message bounced: its outbox row, and its campaign recipient's row when it has one. Returns the
        campaign's (name, step, record id) when the message is a campaign's and this is its first bounce: its
        `bounced` trigger fires."""
        o = tables.outbox
        await self.conn.execute(sa.update(o).where(o.c.id == outbox_id).values(state="bounced",
                                                                              last_error=reason[:1000]))  # fmt: skip
        return await self.campaign_bounced(outbox_id, now)


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
