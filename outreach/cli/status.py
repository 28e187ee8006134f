"""`outreach status`: the daemons on the database, the work each holds, and when each last ticked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from outreach.app import status as app_status
    from outreach.store import Store, rows

from outreach.cli import options, output


@click.command("status")
@output.output_format(help="text: for people; json: the daemons and the leases, one object (times in ISO 8601).")
@options.rules_option
@options.db_option
def status(fmt: str, rules_dir: str, db_url: str | None) -> None:
    """List the daemons that run on the database: alive (their lease runs) or gone, the singleton work each holds
    (a mailbox's reading, the reminder run, housekeeping), when each last ticked and what it sent today.

    A daemon renews its lease every few seconds; one that dies holds nothing once
    its lease expires (30 s by default), and another daemon takes its work over.

    \b
    Examples:
      outreach status
      outreach status --json --db postgresql://outreach@db.internal/outreach
    """
    from outreach.app import status as app_status

    ruleset = options.load_rules(rules_dir)
    now = options.now()

    async def go(store: Store) -> tuple[list[app_status.DaemonState], list[rows.Lease]]:
        return await app_status.daemons(store, now)

    found, work = options.on_store(db_url, ruleset, go)
    if fmt == "json":
        click.echo(options.dumps({
            "daemons": [{"id": d.id, "alive": d.alive, "host": d.host, "pid": d.pid, "last_tick": d.last_tick,
                         "sent_today": d.sent_today, "holds": list(d.holds), "expires_at": d.expires_at,
                         "renewed_at": d.renewed_at} for d in found],
            "leases": [{"name": x.name, "holder": x.holder, "expires_at": x.expires_at} for x in work],
        }))  # fmt: skip
        return
    if not found:
        click.echo("no daemon has run on this database")
        return
    click.echo(f"{'daemon':<34} {'state':<6} {'last tick':<26} {'sent today':>10}  holds")
    for d in found:
        state = "alive" if d.alive else "gone"
        tick = d.last_tick or "-"
        sent = "-" if d.sent_today is None else str(d.sent_today)
        holds = ", ".join(d.holds) if d.alive else f"nothing (lease expired {options.when(d.expires_at)})"
        click.echo(f"{d.id:<34} {state:<6} {tick:<26} {sent:>10}  {holds or 'nothing'}")
    alive = sum(d.alive for d in found)
    click.echo(f"{output.plural(alive, 'daemon')} alive, {len(found) - alive} gone")
