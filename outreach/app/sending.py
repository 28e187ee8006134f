"""What sending needs from the rules: the transport Settings name, the signed links mail carries, the DKIM signer.

The daemon, `outreach doctor`, `outreach preview` and RuleTests build them here, so that each is built one way.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from outreach.engine import render, tracking
from outreach.engine import sequences as seq
from outreach.mail import credentials, dkim, links, smtp, verp
from outreach.mail import message as mail_message
from outreach.mail import transport as mail_transport
from outreach.rules import model

log = logging.getLogger("outreach")

UnsubscribeLinks = Callable[[seq.Enrollment], str | None]
WeakSecret = links.WeakSecret  # a signing secret under 32 bytes (for the CLI, which imports no mail internals)


class NotBuilt(Exception):
    """A part of the rules asks for something this version cannot do yet."""


def transport_for(ruleset: model.RuleSet) -> mail_transport.Transport:
    """The transport Settings name; credentials.MissingSecret when a secret it names is not there. Over SMTP with
    Settings.bounce_address, each message's envelope sender is its VERP address (signed as the daemon signs links)."""
    t = ruleset.settings.transport
    if t.type == "maildir":
        return mail_transport.MaildirTransport(t.maildir)
    if t.type == "smtp" and t.smtp is not None:
        bounces = verp.for_settings(ruleset.settings)
        return smtp.SmtpTransport(t.smtp, envelope=bounces.sender_for if bounces is not None else None)
    raise NotBuilt(f"the {t.type} transport is not built; use `transport: {{type: maildir}}` or smtp")


def signer_for(ruleset: model.RuleSet) -> dkim.Signer | None:
    """The DKIM signer of Settings.dkim, each key read and checked now; None without Settings.dkim.
    credentials.MissingSecret when a key is not there or cannot be read, or (dkim.KeyInvalid) cannot sign."""
    return dkim.signer_for(ruleset.settings)


def links_for(
    ruleset: model.RuleSet, *, keys: links.Keys | None = None, state_dir: str | Path | None = None
) -> links.Links | None:
    """The signed links mail carries (unsubscribe, open pixel, clicks), or None without Settings.tracking.

    Signed with `keys` (RuleTests sign with their own), else with the secret Settings.tracking names, else with
    the secret kept in `state_dir` (created there once, 0600, and said so). Without any of them (no state
    directory given) there are no links: a template that uses {{ unsubscribe_url }} then blocks with "missing
    merge field unsubscribe_url" rather than send a link that cannot work. WeakSecret: a secret under 32 bytes.
    """
    tracking = ruleset.settings.tracking
    if tracking is None:
        return None
    if keys is None:
        keys = links.configured_keys(tracking)
    if keys is None:
        named = tracking.secret_env or tracking.secret_file
        if state_dir is None:
            log.warning("links cannot be signed: %s", f"{named} is not set" if named else "no secret is set")
            return None
        keys, created = links.state_keys(state_dir)
        where = Path(state_dir) / links.STATE_SECRET_FILE
        why = f"{named} is not set" if named else "Settings.tracking names no secret"
        if created:
            log.warning("%s: links are signed with a secret created in %s (keep it; with several daemons set one "
                        "secret for all of them)", why, where)  # fmt: skip
        else:
            log.info("%s: links are signed with the secret in %s", why, where)
    return links.Links(tracking.base_url, keys, tracking.opens, tracking.clicks)


def daemon_links(ruleset: model.RuleSet) -> links.Links | None:
    """The links a daemon (or `outreach web`) signs and verifies: with the secret Settings names, else with the
    one in its state directory ($STATE_DIRECTORY under systemd, else var/), created there the first time."""
    return links_for(ruleset, state_dir=links.state_directory())


def facts(unsubscribe_url: str | None, *, sent_today: Mapping[str, tuple[int, dt.datetime | None]] | None = None,
          ) -> seq.Facts:  # fmt: skip
    """What the engine decides a step with, as every path that asks it knows it (the scheduler of the daemon, of
    `outreach test` and of `outreach simulate`, and `outreach preview`): the message's signed unsubscribe link
    (None: links cannot be signed), the senders' mail of the last 24 hours when counted, and the transport's
    check of the headers."""
    return seq.Facts(unsubscribe_url, sent_today, mail_message.header_problem)


def compose(
    rendered: render.Rendered, *, sender: tuple[str, str], to: str, now: dt.datetime, headers: Mapping[str, str],
    links_: links.Links | None, key: bytes | None, unsubscribe_url: str | None, list_unsubscribe: bool,
    signer: dkim.Signer | None, in_reply_to: str | None = None, reply_to: str | None = None,
) -> tuple[bytes, str, tuple[str, ...]]:  # fmt: skip
    """A rendered mail made a message, as sequences and campaigns send it: its bytes, its Message-ID, and the URLs
    its tracked links lead to. Its links are signed for `key` (clicks, the open pixel: Settings.tracking), the
    List-Unsubscribe headers name `unsubscribe_url` when `list_unsubscribe`, and it is DKIM-signed once, here,
    so the outbox keeps the signed bytes."""
    domain = sender[1].rpartition("@")[2]
    message_id = mail_message.new_message_id(domain, os.urandom(16).hex())
    content = tracking.Instrumented(rendered, ())
    if links_ is not None and key is not None and rendered.html is not None and (links_.clicks or links_.opens):
        signed = links_
        content = tracking.instrument(
            rendered, click=(lambda n: signed.click(key, n)) if signed.clicks else None,
            pixel=signed.pixel(key) if signed.opens else None, keep=unsubscribe_url,
        )  # fmt: skip
    out = content.rendered
    data = mail_message.build(
        sender=sender, to=to, subject=out.subject, text=out.text, html=out.html, message_id=message_id, date=now,
        in_reply_to=in_reply_to, reply_to=reply_to, extra_headers=headers,
        unsubscribe=(unsubscribe_url, None) if list_unsubscribe and unsubscribe_url else None,
    )  # fmt: skip
    if signer is not None:
        data = signer.sign(data, domain, now=now)
    return data, message_id, content.urls


def preview_links(ruleset: model.RuleSet) -> UnsubscribeLinks:
    """Unsubscribe URLs for a preview of an enrollment's steps, signed as the daemon signs them (with the secret
    Settings names, else the one in the state directory), each for a new key."""
    found = daemon_links(ruleset)
    if found is None:
        return lambda _e: None
    return lambda _e: found.unsubscribe(links.new_key())


async def check_relay(relay: model.Server) -> tuple[bool, str]:
    """Connect, say EHLO (and log in) to the relay, and QUIT, without sending: (whether it answered, what it
    said or what went wrong, for the operator)."""
    try:
        transport = smtp.SmtpTransport(relay)
    except credentials.MissingSecret as exc:
        return False, str(exc)
    try:
        await transport.check()
    except Exception as exc:  # what the relay or network said, shown to the operator
        return False, f"SMTP relay {transport.where}: {type(exc).__name__}: {exc}"
    login = f", logged in as {transport.username}" if transport.username else ""
    return True, f"SMTP relay {transport.where} answers{login}"
