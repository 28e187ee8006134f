"""`outreach doctor`: what needs an operator — rules, store, secrets, transport, and mail in doubt."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import click

from outreach import credentials
from outreach import daemon as daemon_module
from outreach.cli import options
from outreach.mail import smtp
from outreach.rules import model
from outreach.store import Store, migrate


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
    tracking = "tracking secret (signs unsubscribe links)"
    if settings.tracking is not None:
        named.append((tracking, {"env": settings.tracking.secret_env, "file": settings.tracking.secret_file}))
    for what, where in named:
        try:
            value = credentials.read(what, **where)
        except credentials.MissingSecret as exc:
            # without the tracking secret mail goes out without unsubscribe links (the daemon warns); without
            # the others, nothing is sent or no reply is seen
            found.append(Finding("warning" if what == tracking else "problem", "secret", str(exc)))
            continue
        if value is not None:
            found.append(Finding("ok", "secret", f"{what}: set"))
    return found


async def check_store(store: Store) -> list[Finding]:
    found = []
    revision, head = await store.revision(), migrate.head()
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


async def check_relay(relay: model.Server) -> Finding:
    """Connect, say EHLO (and log in) to the relay, and QUIT, without sending."""
    try:
        transport = smtp.SmtpTransport(relay)
    except credentials.MissingSecret as exc:
        return Finding("problem", "transport", str(exc))
    try:
        await transport.check()
    except Exception as exc:  # what the relay or network said, shown to the operator
        return Finding("problem", "transport", f"SMTP relay {transport.where}: {type(exc).__name__}: {exc}")
    login = f", logged in as {transport.username}" if transport.username else ""
    return Finding("ok", "transport", f"SMTP relay {transport.where} answers{login}")


@click.command()
@click.option("--connect", is_flag=True, help="Also connect to the SMTP relay (EHLO, login, QUIT; nothing is sent).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@options.rules_option
@options.db_option
def doctor(connect: bool, as_json: bool, rules_dir: str, db_url: str | None) -> None:
    """Check what the daemon needs and list what needs an operator; exit 1 if anything is a problem.

    Checks that the rules are valid, the database schema is current, every secret
    Settings name is set (never printing it), the transport can be built (and with
    --connect, that the SMTP relay answers), and lists mail in state `unknown`
    (being sent when the daemon stopped), failed mail and blocked enrollments.

    \b
    Examples:
      outreach doctor
      outreach doctor --connect --json
    """
    ruleset = options.load_rules(rules_dir)
    found = [Finding("ok", "rules", f"{rules_dir} is valid")]
    found += secrets_of(ruleset.settings)
    transport = ruleset.settings.transport
    try:
        daemon_module.transport_for(ruleset)
    except (daemon_module.NotBuilt, credentials.MissingSecret) as exc:
        found.append(Finding("problem", "transport", str(exc)))
    else:
        if transport.type == "maildir":
            existing = os.path.abspath(transport.maildir)
            while not os.path.exists(existing):  # the daemon makes the missing directories
                existing = os.path.dirname(existing)
            ok = os.access(existing, os.W_OK)
            found.append(Finding("ok" if ok else "problem", "transport",
                                 f"maildir {transport.maildir} {'is writable' if ok else 'cannot be written'}"))  # fmt: skip
        elif connect and transport.smtp is not None:
            found.append(options.run(check_relay(transport.smtp)))
    found += options.on_store(db_url, ruleset, check_store)
    if as_json:
        click.echo(options.dumps([dataclasses.asdict(f) for f in found]))
    else:
        for f in found:
            click.echo(f"{f.level:<8} {f.what:<12} {f.detail}")
    problems = sum(f.level == "problem" for f in found)
    if not as_json:
        click.echo(f"{problems} problem(s), {sum(f.level == 'warning' for f in found)} warning(s)")
    if problems:
        sys.exit(1)
