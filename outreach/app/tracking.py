"""What a request for a signed link means: the unsubscribe page, an unsubscribe, an open, a click.

The web handlers call these and decide nothing. A token is checked first (outreach/mail/links.py: HMAC-SHA256,
constant time, every secret of the rotation); anything that is not one of our tokens, or names no message we
sent, is `BadLink` and changes nothing. An unsubscribe puts the address on the suppression list and stops every
live sequence of the address and of its record ("unsubscribed") in one transaction; a second one changes nothing. An open or a click
is kept with the message (`link_hits`) and as an event on the record, flagged when it looks automated
(outreach/engine/tracking.py decides); a flagged one fires nothing. A person's first open or click of a campaign
mail fires the campaign's trigger actions (outreach/app/campaigns.py `fire`) in the same transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from outreach.app import campaigns, enrolling
from outreach.app import events as recording
from outreach.engine import events, tracking
from outreach.mail import links
from outreach.rules import model
from outreach.store import changes, rows

Keys = links.Keys  # the signing secrets, for the web side (which imports no mail internals)


class BadLink(LookupError):
    """A forged, altered or truncated token, or one that names no message of ours."""


class LinkStore(Protocol):
    """The store's verbs that signed links use (outreach.store.Store has them)."""

    def changing(self) -> AbstractAsyncContextManager[changes.Changes]: ...

    async def message_by_link(self, key: str) -> rows.LinkedMessage | None: ...

    async def links_clicked(self, outbox_id: int, since: dt.datetime) -> set[int]: ...

    async def get_suppression(self, email: str) -> rows.Suppression | None: ...


async def _message(store: LinkStore, keys: links.Keys | None, token: str, kind: str) -> tuple[links.Token,
                                                                                                   rows.LinkedMessage]:  # fmt: skip
    if keys is None:
        raise BadLink("this installation signs no links (no Settings.tracking)")
    try:
        found = links.verify(keys, token)
    except links.BadToken as exc:
        raise BadLink(str(exc)) from None
    if found.kind != kind:
        raise BadLink("a token for another kind of link")
    message = await store.message_by_link(found.key.hex())
    if message is None:
        raise BadLink("a token of a message this store does not hold")
    return found, message


@dataclasses.dataclass(frozen=True)
class Subscription:
    """What the unsubscribe page shows: the address, the page's language, and whether it is unsubscribed."""

    email: str
    language: str
    unsubscribed: bool


async def subscription(store: LinkStore, keys: links.Keys | None, token: str) -> Subscription:
    """The unsubscribe page of a link (GET): nothing changes."""
    _found, message = await _message(store, keys, token, links.UNSUBSCRIBE)
    suppressed = await store.get_suppression(message.recipient) is not None  # a read: scanners GET every link
    return Subscription(message.recipient, message.language, suppressed)


@dataclasses.dataclass(frozen=True)
class Unsubscribed:
    email: str
    language: str
    already: bool  # it was unsubscribed (or suppressed) before: nothing changed
    stopped: int = 0


async def unsubscribe(store: LinkStore, keys: links.Keys | None, token: str, *, now: dt.datetime,
                      one_click: bool = False) -> Unsubscribed:  # fmt: skip
    """The person asked for no more mail (the page's button, or a mail provider's RFC 8058 one-click POST): the
    address is suppressed and every live sequence of the address and of the record stops ("unsubscribed"), at
    once. A second one changes nothing."""
    _found, message = await _message(store, keys, token, links.UNSUBSCRIBE)
    data = {"outbox": message.outbox_id, "via": "one-click" if one_click else "page", "email": message.recipient}
    async with store.changing() as tx:
        live = await tx.enrollments(emails=[message.recipient])  # every live sequence of the address ...
        if message.record_id is not None:  # ... and of the record it was sent to
            seen = {r["id"] for r in live}
            live += [r for r in await tx.enrollments(record_ids=[message.record_id]) if r["id"] not in seen]
        if await tx.suppressed(message.recipient) and not live:
            return Unsubscribed(message.recipient, message.language, already=True)
        await tx.event(message.record_id, str(events.Kind.UNSUBSCRIBED), now, data, "web")
        effects = events.of_record_event(events.Kind.UNSUBSCRIBED, live=[enrolling.enrollment_of(r) for r in live],
                                         email=message.recipient, now=now)  # fmt: skip
        await recording.write(tx, effects, now=now, source="web")
    return Unsubscribed(message.recipient, message.language, already=False, stopped=effects.stopped)


@dataclasses.dataclass(frozen=True)
class Tracked:
    outbox_id: int
    automated: str | None  # why it looks automated; None: a person
    url: str | None = None  # a click: where it leads


async def _track(store: LinkStore, message: rows.LinkedMessage, kind: events.Kind, link: int | None,
                 hit: tracking.Hit, url: str | None, ruleset: model.RuleSet | None) -> Tracked:  # fmt: skip
    why = tracking.automated(hit)
    data: dict[str, object] = {"outbox": message.outbox_id, "automated": why is not None}
    if why is not None:
        data["why"] = why
    if link is not None:
        data |= {"link": link, "url": url}
    async with store.changing() as tx:
        await tx.hit(message.outbox_id, "click" if link is not None else "open", link, hit.at, why, hit.user_agent)
        await tx.event(message.record_id, str(kind), hit.at, data, "web")
        if message.campaign is not None:  # a person's first open or click fires the campaign's trigger actions
            found = await tx.campaign_hit(message.outbox_id, "click" if link is not None else "open", hit.at,
                                          why is not None)  # fmt: skip
            if found is not None and found[3]:
                await campaigns.fire(tx, ruleset, found[0], found[1], found[2], found[3], hit.at, "web")
    return Tracked(message.outbox_id, why, url)


async def opened(store: LinkStore, keys: links.Keys | None, token: str, *, now: dt.datetime, method: str = "GET",
                 user_agent: str = "", ruleset: model.RuleSet | None = None) -> Tracked:  # fmt: skip
    """The open pixel was fetched: an open of the message, by a person or flagged as automated. A campaign
    mail's first open by a person fires its `opened` trigger (the rule set in force says what it does)."""
    _found, message = await _message(store, keys, token, links.OPEN)
    hit = tracking.Hit(method, user_agent, now, message.sent_at)
    return await _track(store, message, events.Kind.OPENED, None, hit, None, ruleset)


async def clicked(store: LinkStore, keys: links.Keys | None, token: str, *, now: dt.datetime, method: str = "GET",
                  user_agent: str = "", ruleset: model.RuleSet | None = None) -> Tracked:  # fmt: skip
    """A tracked link was followed: where it leads (the URL recorded when the message was sent), and the click."""
    found, message = await _message(store, keys, token, links.CLICK)
    if found.link >= len(message.urls):
        raise BadLink("a token of a link the message does not have")
    others = await store.links_clicked(message.outbox_id, now - tracking.BURST)
    hit = tracking.Hit(method, user_agent, now, message.sent_at, len(others - {found.link}))
    return await _track(store, message, events.Kind.CLICKED, found.link, hit, message.urls[found.link], ruleset)
