"""Mail that comes back, recorded: what a reply, an auto-reply, a bounce or a delay warning read over IMAP means.

The IMAP poller (outreach/mail/imap.py) reads and classifies each message (outreach/mail/inbound.py) and hands
it to `InboundMail.apply_inbound`, which opens the message's transaction in the store (the mailbox's position moves in
it), finds the records and messages of ours it is about, asks the engine what it means
(outreach/engine/events.py) and writes the answer (outreach/app/events.py `write`):

- reply: a `replied` event on the record of our message (or, for a reply found by its subject, on each record
  with a live enrollment at the sender's address), and every live sequence of the person stops ("replied");
- auto_reply: an `auto_reply` event on the record's activity; its sequences go on;
- bounce: our message becomes `bounced`, the live enrollments of its address are blocked with the diagnostic
  ("bounced: 550 5.1.1 user unknown"), the address is suppressed (reason `bounced`) and the record gets a
  `bounced` event;
- delayed: a `bounce_delayed` event only, a warning;
- ignored: nothing but the position.

The poller asks the store itself where each mailbox was read up to and what we sent (mail/imap.py's InboxStore);
`InboundMail` is where it hands each classified message (its Recorder).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from outreach.app import enrolling
from outreach.app import events as recording
from outreach.engine import events
from outreach.mail import inbound
from outreach.store import inbound as store_inbound

SOURCE = store_inbound.SOURCE  # the events' source: a resynchronisation finds a message's events by it


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


class InboundStore(Protocol):
    """The store's verb for one inbound message's transaction (outreach.store.Store has it)."""

    def inbound_message(
        self, mailbox: str, uidvalidity: int, uid: int, *, message_id: str | None, now: dt.datetime,
        resync_since: dt.datetime | None = None,
    ) -> AbstractAsyncContextManager[store_inbound.InboundChanges | None]: ...  # fmt: skip


class InboundMail:
    """What a classified message means, recorded (the IMAP poller's Recorder, mail/imap.py)."""

    def __init__(self, store: InboundStore) -> None:
        self.store = store

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
        """Apply one classified message and move the mailbox's position to `uid`, in one transaction (see the
        module's docstring). None, and nothing changed, when the message was applied already."""
        async with self.store.inbound_message(mailbox, uidvalidity, uid, message_id=message.message_id, now=now,
                                              resync_since=resync_since) as tx:  # fmt: skip
            if tx is None:
                return None
            data = {
                "mailbox": mailbox, "uid": uid, "message_id": message.message_id, "from": message.from_address,
                "subject": message.subject, "reason": message.reason,
            }  # fmt: skip
            if message.kind is inbound.Kind.REPLY:
                return await _reply(tx, message, senders, data, now)
            if message.kind is inbound.Kind.AUTO_REPLY:
                records = await tx.records_of(message.our_message_ids, message.from_address, senders)
                for record_id in records:
                    await tx.event(record_id, events.Kind.AUTO_REPLY, now, data, SOURCE)
                return Applied(str(message.kind), tuple(records))
            if message.kind in (inbound.Kind.BOUNCE, inbound.Kind.DELAYED):
                return await _bounce(tx, mailbox, message, senders, data, now)
            return Applied(str(message.kind))


async def _reply(
    tx: store_inbound.InboundChanges, message: inbound.Inbound, senders: Collection[str], data: Mapping[str, Any],
    now: dt.datetime,
) -> Applied:  # fmt: skip
    records = await tx.records_of(message.our_message_ids, message.from_address, senders)
    stopped = 0
    for record_id in records:
        await tx.event(record_id, events.Kind.REPLIED, now, data, SOURCE)
        live = [enrolling.enrollment_of(r) for r in await tx.enrollments(record_ids=[record_id])]
        effects = events.of_record_event(events.Kind.REPLIED, live=live, email=None, now=now)
        await recording.write(tx, effects, now=now, source=SOURCE)
        stopped += effects.stopped
    return Applied(str(message.kind), tuple(records), stopped=stopped)


async def _bounce(
    tx: store_inbound.InboundChanges, mailbox: str, message: inbound.Inbound, senders: Collection[str],
    data: Mapping[str, Any], now: dt.datetime,
) -> Applied:  # fmt: skip
    """A permanent bounce or a delay warning, applied to each of our messages it is about."""
    permanent = message.kind is inbound.Kind.BOUNCE
    reported = [b for b in message.bounced if b.permanent == permanent] or list(message.bounced)
    ours = await tx.messages_of(message.our_message_ids, [b.address for b in reported], senders)
    records: list[str] = []
    bounced: list[int] = []
    suppressed: list[str] = []
    blocked = 0
    for m in ours:
        recipient = m.recipient.lower()
        about = next((b for b in reported if recipient in (b.address, b.final_recipient)), None)
        about = about or (reported[0] if reported else None)
        status = about.status if about else ""
        diagnostic = _diagnostic(status, about.diagnostic if about else "") or message.reason
        details = {**data, "outbox": m.outbox_id, "recipient": recipient, "original": m.message_id,
                   "status": status, "diagnostic": diagnostic}  # fmt: skip
        if m.record_id is not None:
            records.append(m.record_id)
        if not permanent:
            if m.record_id is not None:
                await tx.event(m.record_id, events.Kind.BOUNCE_DELAYED, now, details, SOURCE)
            continue
        await tx.mark_bounced(m.outbox_id, f"bounced: {diagnostic}", now)
        live = [enrolling.enrollment_of(r) for r in await tx.enrollments(emails=[recipient])]
        effects = events.of_bounce(live=live, address=recipient, diagnostic=diagnostic, permanent=True)
        suppressed += await recording.write(tx, effects, now=now, source=f"{SOURCE} {mailbox}")
        blocked += effects.blocked
        bounced.append(m.outbox_id)
        if m.record_id is not None:
            await tx.event(m.record_id, events.Kind.BOUNCED, now, {**details, "blocked": effects.blocked}, SOURCE)
    return Applied(str(message.kind), tuple(dict.fromkeys(records)), blocked=blocked, bounced=tuple(bounced),
                   suppressed=tuple(suppressed))  # fmt: skip


def _diagnostic(status: str, diagnostic: str) -> str:
    """`550 5.1.1 user unknown`: the server's words, with the status in front when they lack it."""
    if diagnostic and status and status not in diagnostic:
        return f"{status} {diagnostic}"
    return diagnostic or status
