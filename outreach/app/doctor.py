"""What needs an operator: secrets, DKIM keys, the transport, the mailboxes, the store's schema, mail in doubt,
blocked enrollments.

`outreach doctor` prints these findings; each check is here, so that what the command reports is what the daemon
would meet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import ssl
from typing import Any, Protocol

from outreach import store as store_module
from outreach.app import ingest, sending
from outreach.mail import credentials, dkim, imap, links
from outreach.rules import model


class DoctorStore(Protocol):
    async def revision(self) -> str | None: ...

    async def outbox_counts(self) -> dict[str, int]: ...

    async def outbox(self, *, state: str | None = None, record_id: str | None = None) -> list[dict[str, Any]]: ...

    async def blocked_reasons(self, limit: int = 10) -> list[tuple[str, int]]: ...


@dataclasses.dataclass
class Finding:
    level: str  # ok | warning | problem
    what: str
    detail: str


def secrets_of(settings: model.Settings) -> list[Finding]:
    """Each secret Settings name is there (nothing is printed of it)."""
    found = []
    named: list[tuple[str, dict[str, Any]]] = []
    if settings.transport.type == "smtp" and settings.transport.smtp is not None:
        relay = settings.transport.smtp
        named.append(("SMTP user name", {"env": relay.username_env, "file": relay.username_file,
                                         "literal": relay.username}))  # fmt: skip
        named.append(("SMTP password", {"env": relay.password_env, "file": relay.password_file}))
    for name, box in settings.mailboxes.items():
        named.append((f"IMAP user name of mailbox {name}", {"env": box.username_env, "file": box.username_file,
                                                            "literal": box.username}))  # fmt: skip
        named.append((f"IMAP password of mailbox {name}", {"env": box.password_env, "file": box.password_file}))
    tracking = "tracking secret (signs unsubscribe, open and click links)"
    if settings.tracking is not None:
        named.append((tracking, {"env": settings.tracking.secret_env, "file": settings.tracking.secret_file}))
    api = "ingest API token"
    if settings.web.api_token_env or settings.web.api_token_file:
        named.append((api, {"env": settings.web.api_token_env, "file": settings.web.api_token_file}))
    for what, where in named:
        try:
            value = credentials.read(what, **where)
        except credentials.MissingSecret as exc:
            # without the tracking secret the daemon signs with one it keeps in its state directory, and without
            # the API token the ingest API is off (both warn); without the others, nothing is sent or no reply
            # is seen
            if what == tracking:
                found.append(Finding("warning", "secret", f"{exc}: links are signed with the secret the daemon "
                                     "keeps in its state directory; set one when several daemons or `outreach "
                                     "web` share the work"))  # fmt: skip
            else:
                found.append(Finding("warning" if what == api else "problem", "secret", str(exc)))
            continue
        if value is None:
            continue
        if what == tracking:
            try:
                links.Keys.parse(value)
            except links.WeakSecret as exc:
                found.append(Finding("problem", "secret", f"{what}: {exc}"))
                continue
        if what == api:
            try:
                ingest.api_token(settings)
            except ingest.WeakSecret as exc:
                found.append(Finding("problem", "secret", f"{what}: {exc}; the ingest API is off"))
                continue
        found.append(Finding("ok", "secret", f"{what}: set"))
    return found


def check_dkim(settings: model.Settings) -> list[Finding]:
    """Each DKIM key Settings.dkim names can sign, with the TXT record to publish for it (computed from the
    private key); a sending address whose domain no key signs for is a warning."""
    found = []
    for entry in settings.dkim:
        try:
            key = dkim.load_key(entry)
        except credentials.MissingSecret as exc:  # dkim.KeyInvalid too: there, but no key that can sign
            found.append(Finding("problem", "dkim", str(exc)))  # "the DKIM key of example.com: ..."
            continue
        name, value = dkim.dns_record(key)
        found.append(Finding("ok", "dkim", f"{entry.domain}: selector {entry.selector}, publish TXT {name} "
                             f"{dkim.zone_text(value)}"))  # fmt: skip
        if key.key_type == "rsa" and key.bits < 2048:
            found.append(Finding("warning", "dkim", f"{entry.domain}: the RSA key has {key.bits} bits; receivers "
                                 "may stop trusting keys under 2048 bits"))  # fmt: skip
    if settings.dkim:
        senders = [u.email for u in settings.users.values()]
        if settings.organization is not None:
            senders.append(settings.organization.email)
        domains = {entry.domain for entry in settings.dkim}
        for domain in dict.fromkeys(address.rpartition("@")[2].lower() for address in senders):
            if dkim.signing_domain(domain, domains) is None:
                found.append(Finding("warning", "dkim", f"mail from {domain} is not signed: Settings.dkim has no "
                                     "key for it or a parent domain"))  # fmt: skip
    return found


async def check_store(store: DoctorStore) -> list[Finding]:
    found = []
    revision, head = await store.revision(), store_module.Store.schema_head()
    if revision == head:
        found.append(Finding("ok", "store", f"schema at revision {revision}"))
    else:
        found.append(Finding("problem", "store", f"schema at revision {revision}, the code needs {head} "
                                                 "(outreach db upgrade)"))  # fmt: skip
    counts = await store.outbox_counts()
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "empty"
    found.append(Finding("ok", "outbox", summary))
    for m in await store.outbox(state="unknown"):
        found.append(Finding("problem", "outbox", f"message {m['id']} to {m['recipient']} ({m['subject']!r}) was "
                             f"being sent when the daemon stopped: it may or may not have gone out; check the relay's "
                             f"log, then `outreach outbox requeue {m['id']}` to send it again"))  # fmt: skip
    if counts.get("failed"):
        found.append(Finding("warning", "outbox", f"{counts['failed']} message(s) failed for good "
                                                  "(outreach outbox list --state failed)"))  # fmt: skip
    for reason, n in await store.blocked_reasons():
        found.append(Finding("warning", "enrollments", f"{n} blocked: {reason}"))
    return found


async def check_transport(ruleset: model.RuleSet, *, connect: bool) -> list[Finding]:
    """The transport Settings name can be built: a maildir that can be written, or an SMTP relay whose secrets are
    set (and with `connect`, that answers: EHLO, login, QUIT; nothing is sent)."""
    transport = ruleset.settings.transport
    try:
        sending.transport_for(ruleset)
    except (sending.NotBuilt, credentials.MissingSecret) as exc:
        return [Finding("problem", "transport", str(exc))]
    if transport.type == "maildir":
        existing = os.path.abspath(transport.maildir)
        while not os.path.exists(existing):  # the daemon makes the missing directories
            existing = os.path.dirname(existing)
        ok = os.access(existing, os.W_OK)
        return [Finding("ok" if ok else "problem", "transport",
                        f"maildir {transport.maildir} {'is writable' if ok else 'cannot be written'}")]  # fmt: skip
    if connect and transport.smtp is not None:
        ok, detail = await sending.check_relay(transport.smtp)
        return [Finding("ok" if ok else "problem", "transport", detail)]
    return []


async def check_mailboxes(settings: model.Settings, *, tls_context: ssl.SSLContext | None = None) -> list[Finding]:
    """Each mailbox of Settings can be read (`--connect`): log in as the daemon's poller does, SELECT the folder
    and log out, reading nothing; all side by side, each within its mailbox's timeout."""

    async def one(mailbox: imap.Mailbox) -> Finding:
        at = f"{mailbox.name} at {imap.where(mailbox.server)}"
        try:
            said = await imap.check(mailbox, tls_context=tls_context)
        except imap.CheckFailed as exc:
            return Finding("problem", "mailbox", f"{at}: {exc}")
        return Finding("ok", "mailbox", f"{at}: {said}")

    return list(await asyncio.gather(*(one(m) for m in imap.mailboxes(settings).values())))
