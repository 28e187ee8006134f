"""Commands on the suppression list: list it, add an address by hand, take one off with a reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from outreach.engine.events import SUPPRESSION_REASONS

if TYPE_CHECKING:
    from outreach.app import suppressions as app_suppressions
    from outreach.store import Store, rows

from outreach.cli import options, output


@click.group()
def suppressions() -> None:
    """The suppression list: addresses kept off every sequence and campaign.

    Unsubscribes, spam complaints and permanent bounces put addresses on it.
    Adding one by hand also stops the live sequences of the records with that
    address; taking one off needs a reason, kept in the records' activity.

    \b
    Examples:
      outreach suppressions list --reason bounced
      outreach suppressions add jo@example.org
      outreach suppressions remove jo@example.org --reason "asked to hear from us again"
    """


def _lines(found: tuple[rows.Suppression, ...]) -> list[str]:
    width = max([len("email"), *(len(s.email) for s in found)])
    header = f"{'email':<{width}}  {'reason':<12}  {'since':<20}  source"
    return [header, *(f"{s.email:<{width}}  {s.reason:<12}  {options.when(s.at):<20}  {s.source or ''}".rstrip()
                      for s in found)]  # fmt: skip


@suppressions.command("list")
@click.option(
    "--reason", type=click.Choice(SUPPRESSION_REASONS), help="Only addresses suppressed for this reason."
)
@click.option("--search", metavar="TEXT", help="Only addresses that contain TEXT (any case), e.g. a domain.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@output.output_format(help="text: for people; json: one object, the total and the addresses (times in ISO 8601).")
@options.rules_option
@options.db_option
def suppressions_list(reason: str | None, search: str | None, limit: int, fmt: str, rules_dir: str,
                      db_url: str | None) -> None:  # fmt: skip
    """List the suppressed addresses, newest first.

    Each line: the address, why it is suppressed, since when, and what put it
    there (cli, web, imap MAILBOX ...). The last line counts all that match.

    \b
    Examples:
      outreach suppressions list
      outreach suppressions list --reason unsubscribed --search @example.org --json
    """
    from outreach.app import suppressions as app_suppressions

    ruleset = options.load_rules(rules_dir)

    async def go(store: Store) -> app_suppressions.Listing:
        return await app_suppressions.listing(store, reason=reason, search=search, limit=limit)

    found = options.on_store(db_url, ruleset, go)
    if fmt == "json":
        entries = [{"email": s.email, "reason": s.reason, "at": s.at, "source": s.source} for s in found.suppressions]
        click.echo(options.dumps({"total": found.total, "suppressions": entries}))
        return
    if found.suppressions:
        for line in _lines(found.suppressions):
            click.echo(line)
    shown = len(found.suppressions)
    more = f" (the newest {shown}; --limit shows more)" if shown < found.total else ""
    click.echo(f"{output.plural(found.total, 'suppressed address', 'suppressed addresses')}{more}")


@suppressions.command("add")
@click.argument("email")
@click.option("--reason", type=click.Choice(SUPPRESSION_REASONS), default="manual", show_default=True,
              help="Why the address is kept off.")  # fmt: skip
@options.rules_option
@options.db_option
def suppressions_add(email: str, reason: str, rules_dir: str, db_url: str | None) -> None:
    """Suppress an address by hand; the live sequences of its records stop.

    The address is kept off every sequence and campaign, as after an
    unsubscribe. An address on the list already stays as it is (its first
    reason stays).

    \b
    Examples:
      outreach suppressions add jo@example.org
      outreach suppressions add info@kranich.example.de --reason complaint
    """
    from outreach.app import suppressions as app_suppressions

    try:
        app_suppressions.address(email)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="EMAIL") from None
    ruleset = options.load_rules(rules_dir)
    now = options.now()

    async def go(store: Store) -> app_suppressions.Added:
        return await app_suppressions.add(store, email, reason=reason, now=now)

    done = options.on_store(db_url, ruleset, go)
    if not done.added:
        was = done.existing
        since = f" since {options.when(was.at)}, source {was.source or 'unknown'}" if was is not None else ""
        click.echo(f"{done.email} is already suppressed ({done.reason}{since}); nothing changed")
        return
    if done.records:
        whose = f"; stopped {output.plural(done.stopped, 'live sequence')} of {', '.join(done.records)}"
    else:
        whose = "; no record has this address"
    click.echo(f"suppressed {done.email} ({done.reason}){whose}")


@suppressions.command("remove")
@click.argument("email")
@click.option("--reason", required=True, metavar="TEXT",
              help="Why the address may be mailed again (kept in the records' activity).")  # fmt: skip
@options.rules_option
@options.db_option
def suppressions_remove(email: str, reason: str, rules_dir: str, db_url: str | None) -> None:
    """Take an address off the suppression list, with the reason why.

    Its sequences are not restarted; its records can be enrolled again.

    \b
    Example:
      outreach suppressions remove jo@example.org --reason "opted in again on the webinar form"
    """
    from outreach.app import suppressions as app_suppressions

    if not email.strip():
        raise click.BadParameter("no address given", param_hint="EMAIL")
    if not reason.strip():
        raise click.BadParameter("say why the address may be mailed again", param_hint="--reason")
    ruleset = options.load_rules(rules_dir)
    now = options.now()

    async def go(store: Store) -> app_suppressions.Removed:
        return await app_suppressions.remove(store, email, reason=reason, now=now)

    done = options.on_store(db_url, ruleset, go)
    where = f"the activity of {', '.join(done.records)}" if done.records else "an event (no record has this address)"
    click.echo(f"removed {done.email} from the suppression list ({done.was.reason}, since "
               f"{options.when(done.was.at)}); the reason is kept in {where}")  # fmt: skip
    if done.was.reason in ("unsubscribed", "complaint"):
        click.echo(f"note: {done.email} had asked for no more mail; mail it only if the person opted in again",
                   err=True)  # fmt: skip
