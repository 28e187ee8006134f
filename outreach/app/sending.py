"""What sending needs from the rules: the transport Settings name, and the signed links mail carries.

The daemon, `outreach doctor`, `outreach preview` and RuleTests build both here, so that each is built one way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from outreach.engine import sequences as seq
from outreach.mail import credentials, links, smtp
from outreach.mail import transport as mail_transport
from outreach.rules import model

log = logging.getLogger("outreach")

UnsubscribeLinks = Callable[[seq.Enrollment], str | None]


class NotBuilt(Exception):
    """A part of the rules asks for something this version cannot do yet."""


def transport_for(ruleset: model.RuleSet) -> mail_transport.Transport:
    """The transport Settings name; credentials.MissingSecret when a secret it names is not there."""
    t = ruleset.settings.transport
    if t.type == "maildir":
        return mail_transport.MaildirTransport(t.maildir)
    if t.type == "smtp" and t.smtp is not None:
        return smtp.SmtpTransport(t.smtp)
    raise NotBuilt(f"the {t.type} transport is not built; use `transport: {{type: maildir}}` or smtp")


def unsubscribe_links(ruleset: model.RuleSet, *, secret: bytes | None = None) -> UnsubscribeLinks:
    """Signed unsubscribe URLs for sequence mail: with `secret` (RuleTests sign with one of their own), else with
    the secret Settings.tracking names; none without Settings.tracking or its secret.

    A template that uses {{ unsubscribe_url }} then blocks with "missing merge field unsubscribe_url" (the daemon
    warns at start), rather than send a link that cannot work.
    """
    tracking = ruleset.settings.tracking
    if tracking is None:
        return _no_link
    key = secret if secret is not None else links.secret(tracking)
    if key is None:
        log.warning("unsubscribe links cannot be signed: %s is not set", tracking.secret_env or tracking.secret_file)
        return _no_link
    return lambda e: links.unsubscribe_url(tracking, key, e.email, f"e{e.id}")


def _no_link(_e: seq.Enrollment) -> str | None:
    return None


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
