"""`outreach doctor`: what needs an operator — rules, store, secrets, DKIM keys, transport, mailboxes, mail in doubt."""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    pass

from outreach.cli import options


@click.command()
@click.option(
    "--connect",
    is_flag=True,
    help="Also connect to the SMTP relay (EHLO, login, QUIT; nothing is sent) and log in to every IMAP mailbox "
    "(LOGIN, SELECT, LOGOUT; nothing is read).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@options.rules_option
@options.db_option
def doctor(connect: bool, as_json: bool, rules_dir: str, db_url: str | None) -> None:
    """Check what the daemon needs and list what needs an operator; exit 1 if anything is a problem.

    Checks that the rules are valid, the database schema is current, every secret
    Settings name is set (never printing it), every DKIM key can sign (printing the
    DNS TXT record to publish for it), the transport can be built (and with
    --connect, that the SMTP relay answers and that every IMAP mailbox takes
    the login and has its folder), and lists mail in state `unknown` (being
    sent when the daemon stopped), failed mail and blocked enrollments.

    \b
    Examples:
      outreach doctor
      outreach doctor --connect --json
    """
    from outreach.app import doctor as checks

    ruleset = options.load_rules(rules_dir)
    found = [checks.Finding("ok", "rules", f"{rules_dir} is valid")]
    found += checks.secrets_of(ruleset.settings)
    found += checks.check_dkim(ruleset.settings)
    found += options.run(checks.check_transport(ruleset, connect=connect))
    if connect:
        found += options.run(checks.check_mailboxes(ruleset.settings))
    found += options.on_store(db_url, ruleset, checks.check_store)
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
