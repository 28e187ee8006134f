"""Mail that comes back, recorded: what a reply, an auto-reply, a bounce, a delay warning or a complaint read over IMAP
means.

The IMAP poller (outreach/mail/imap.py) reads and classifies each message (outreach/mail/inbound.py) and hands
it to `InboundMail.apply_inbound`, which opens the message's transaction in the store (the mailbox's position moves in
it), finds the records and messages of ours it is about, asks the engine what it means
(outreach/engine/events.py) and writes the answer (outreach/app/events.py `write`):

- reply: a `replied` event on the record of our message (or, for a reply found by its subject, on each record
  with a live enrollment at the sender's address), and every live sequence of the person stops ("replied");
- auto_reply: an `auto_reply` event on the record's activity; its sequences go on;
- bounce: for each message of ours it names, the report's word on that message's recipient (the recipient it
  names as that address, or its one recipient, or, with no recipient named, what it says overall: a VERP bounce
  names the message by the address it was delivered to). A failure: our message becomes `bounced` and the record
  gets a `bounced` event; when the address does not take mail (`permanent`: user or domain unknown), the live
  enrollments of the address are also blocked with the diagnostic ("bounced: 550 5.1.1 user unknown") and the
  address is suppressed (reason `bounced`). A full mailbox, spam, a block, an expired message: the message
  bounced, the address is fine, nothing is blocked. A delay: a `bounce_delayed` event only;
- complaint: for each message of ours it names, a `complained` event on its record, every live sequence of the
  person stops ("complained") and the recipient's address is suppressed (reason `complaint`);
- a bounce, delay warning or complaint that refers to no message of ours (the classifier says it is not
  `verified`), or names addresses none of ours went to: one `unverified` event on no record, with what it
  claims; nothing else changes. Anyone can mail us a report naming anyone;
- other: nothing but the position.

A report acts only on the recipient of a message of ours it refers to, never on other addresses it names: a DSN that
lists 20,000 addresses and references one of our messages affects that message's recipient at most.

The poller asks the store itself where each mailbox was read up to and what we sent (mail/imap.py's InboxStore);
`InboundMail` is where it hands each classified message (its Recorder). `classify_alone` is the classifier as
`outreach inbound classify` runs it: given no store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from outreach.app import campaigns, enrolling
from outreach.app import events as recording
from outreach.engine import events
from outreach.mail import inbound, mime
from outreach.rules import model
from outreach.store import inbound as store_inbound

SOURCE = store_inbound.SOURCE  # the events' source: a resynchronisation finds a message's events by it
UNVERIFIED = "unverified"  # the event of a report that refers to no message of ours
_MAX_LISTED = 100  # addresses an unverified event lists


@dataclasses.dataclass(frozen=True)
class Applied:
    """What one message did: the records it touched, the sequences it stopped or blocked, the outbox messages it
    marked bounced and the addresses it suppressed; `kind` is the message's, or `unverified`."""

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

    def __init__(self, store: InboundStore, ruleset: Callable[[], model.RuleSet | None] = lambda: None) -> None:
        self.store = store
        self.ruleset = ruleset  # the rule set in force: what a campaign's `bounced` trigger does

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
            if message.kind in inbound.REPORTS and not message.our_message_ids:  # not `verified`
                return await _unverified(tx, message, data, now)
            if message.kind in (inbound.Kind.BOUNCE, inbound.Kind.DELAYED):
                return await _bounce(tx, mailbox, message, data, now, self.ruleset())
            if message.kind is inbound.Kind.COMPLAINT:
                return await _complaint(tx, mailbox, message, data, now)
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


async def _unverified(
    tx: store_inbound.InboundChanges, message: inbound.Inbound, data: Mapping[str, Any], now: dt.datetime,
    why: str | None = None,
) -> Applied:  # fmt: skip
    """A report that is not about our mail (or not about the addresses our mail went to): kept, acting on nothing."""
    named = [r.address for r in message.bounced] or list(message.complainants)
    details = {**data, "kind": str(message.kind), "addresses": named[:_MAX_LISTED], "named": len(named),
               "original": message.original_message_id}  # fmt: skip
    if why is not None:
        details["why"] = why
    await tx.event(None, UNVERIFIED, now, details, SOURCE)
    return Applied(UNVERIFIED)


def about(message: inbound.Inbound, recipient: str) -> inbound.BouncedRecipient | None:
    """What a bounce says about our message's `recipient`: the recipient it names as that address (or as its final
    recipient, after a forward), else its one named recipient (a forward it does not say), else, when it names
    none, what it says overall; None when it names only other addresses."""
    recipient = recipient.lower()
    named = [r for r in message.bounced if recipient in (r.address, r.final_recipient)]
    if named:
        return next((r for r in named if r.action == "failed"), named[0])
    if len(message.bounced) == 1:
        return message.bounced[0]
    if not message.bounced and message.overall is not None:
        return dataclasses.replace(message.overall, address=recipient, final_recipient=recipient)
    return None


async def _bounce(
    tx: store_inbound.InboundChanges, mailbox: str, message: inbound.Inbound, data: Mapping[str, Any],
    now: dt.datetime, ruleset: model.RuleSet | None = None,
) -> Applied:  # fmt: skip
    """A bounce or a delay warning, applied to the recipient of each of our messages it is about."""
    ours = await tx.messages_of(message.our_message_ids)
    records: list[str] = []
    bounced: list[int] = []
    suppressed: list[str] = []
    blocked = 0
    for m in ours:
        recipient = m.recipient.lower()
        said = about(message, recipient)
        if said is None:
            continue
        diagnostic = _diagnostic(said.status, said.diagnostic) or message.reason
        details = {**data, "outbox": m.outbox_id, "recipient": recipient, "original": m.message_id,
                   "status": said.status, "diagnostic": diagnostic, "reason_code": said.reason,
                   "permanent": said.permanent}  # fmt: skip
        if m.record_id is not None:
            records.append(m.record_id)
        if said.action != "failed":
            if m.record_id is not None:
                await tx.event(m.record_id, events.Kind.BOUNCE_DELAYED, now, details, SOURCE)
            continue
        first = await tx.mark_bounced(m.outbox_id, f"bounced: {diagnostic}", now)
        if first is not None:  # a campaign mail's first bounce: its `bounced` trigger's field updates
            await campaigns.fire(tx, ruleset, first[0], first[1], first[2], ("bounced",), now, SOURCE)
        bounced.append(m.outbox_id)
        blocks = 0
        if said.permanent:  # the address does not take mail: its enrollments are blocked, the address suppressed
            live = [enrolling.enrollment_of(r) for r in await tx.enrollments(emails=[recipient])]
            effects = events.of_bounce(live=live, address=recipient, diagnostic=diagnostic, permanent=True)
            suppressed += await recording.write(tx, effects, now=now, source=f"{SOURCE} {mailbox}")
            blocks = effects.blocked
            blocked += blocks
        if m.record_id is not None:
            await tx.event(m.record_id, events.Kind.BOUNCED, now, {**details, "blocked": blocks}, SOURCE)
    if not records and not bounced:
        return await _unverified(tx, message, data, now, "names no address our message went to")
    return Applied(str(message.kind), tuple(dict.fromkeys(records)), blocked=blocked, bounced=tuple(bounced),
                   suppressed=tuple(suppressed))  # fmt: skip


async def _complaint(
    tx: store_inbound.InboundChanges, mailbox: str, message: inbound.Inbound, data: Mapping[str, Any],
    now: dt.datetime,
) -> Applied:  # fmt: skip
    """A complaint about our messages: their recipients' sequences stop and their addresses are suppressed."""
    ours = await tx.messages_of(message.our_message_ids, people_only=True)
    records: list[str] = []
    suppressed: list[str] = []
    stopped = 0
    for m in ours:
        recipient = m.recipient.lower()
        if message.complainants and recipient not in message.complainants and len(message.complainants) > 1:
            continue  # it names others (a redacted or single complainant is the message's recipient)
        details = {**data, "outbox": m.outbox_id, "recipient": recipient, "original": m.message_id}
        live = []
        if m.record_id is not None:
            records.append(m.record_id)
            await tx.event(m.record_id, events.Kind.COMPLAINED, now, details, SOURCE)
            live = [enrolling.enrollment_of(r) for r in await tx.enrollments(record_ids=[m.record_id])]
        effects = events.of_record_event(events.Kind.COMPLAINED, live=live, email=recipient, now=now)
        suppressed += await recording.write(tx, effects, now=now, source=f"{SOURCE} {mailbox}")
        stopped += effects.stopped
    if not ours:
        return await _unverified(tx, message, data, now, "names no message of ours to a person")
    return Applied(str(message.kind), tuple(dict.fromkeys(records)), stopped=stopped,
                   suppressed=tuple(suppressed))  # fmt: skip


def _diagnostic(status: str, diagnostic: str) -> str:
    """`550 5.1.1 user unknown`: the server's words, with the status in front when they lack it."""
    if diagnostic and status and status not in diagnostic:
        return f"{status} {diagnostic}"
    return diagnostic or status


def classify_file(path: str) -> inbound.Inbound:
    """`classify_alone` of a message in a file (an .eml, a Maildir file), read as the poller fetches one: the first
    MiB. OSError when it cannot be read."""
    with open(path, "rb") as f:
        return classify_alone(f.read(mime.MAX_BYTES + 1))


def classify_alone(data: bytes) -> inbound.Inbound:
    """What the poller makes of a message, given no store: every Message-ID it refers to (but its own) is taken for
    one of ours, and no address for one we write to; the reason says so. A report that refers to no Message-ID stays
    unverified: it would change nothing."""
    facts = inbound.read(data)
    assumed = frozenset(i for i in facts.candidate_ids if i != facts.message_id)
    return inbound.decide(facts, inbound.Sent(assumed), assumed=True)
