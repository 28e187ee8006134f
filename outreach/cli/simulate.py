"""`outreach simulate --process`: when a record in a stage becomes overdue and every reminder it would get."""

from __future__ import annotations

import datetime as dt

import click

from outreach.cli import options
from outreach.engine import reminders
from outreach.rules import model, timing

DEFAULT_SPAN = dt.timedelta(days=30)


def timeline(
    process: model.SalesProcess, stage: str, entered: dt.datetime, until: dt.datetime, settings: model.Settings
) -> list[tuple[dt.datetime, str]]:
    """(instant, what happens) for a record entering `stage` at `entered` and staying there until `until`."""
    found = reminders.stage_of(process, stage)
    if found is None:
        names = ", ".join(s.name for s in process.stages)
        raise click.UsageError(f"{process.name} has no stage {stage!r} (its stages: {names})")
    events = [(entered, f"enters {stage}" + (f" (max {found.max})" if found.max is not None else " (no max)"))]
    since = reminders.overdue_since(process, stage, entered, settings=settings)
    if since is None:
        return events
    if since < until:
        events.append((since, f"overdue in {stage}"))
    policy = process.follow_up
    if policy.enabled:
        to = "the record's owner" if policy.to.kind == "record_owner" else f"user {policy.to.user}"
        times = reminders.reminder_times(process, stage, entered, entered, until, settings=settings)
        for n, at in enumerate(times, 1):
            events.append((at, f"reminder {n} to {to} ({policy.template})"))
    return events


def instant(option: str, text: str) -> dt.datetime:
    """An ISO 8601 date or date and time; without an offset it is UTC."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 date and time", param_hint=option) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def line(at: dt.datetime, what: str, local: str) -> str:
    zone = timing.zone(local)
    mine = at.astimezone(zone)
    return f"  {at:%a %Y-%m-%d %H:%M} UTC  {mine:%a %H:%M} {mine.tzname():<5}  {what}"


@click.command()
@click.option("--process", "process_name", required=True, metavar="NAME", help="The SalesProcess to simulate.")
@click.option("--stage", required=True, metavar="STAGE", help="The stage the record is in.")
@click.option("--entered", required=True, metavar="TIME", help="When it entered the stage (ISO 8601; UTC if no zone).")
@click.option("--until", "until_text", metavar="TIME", help="Up to when (default: 30 days after --entered).")
@click.option("--timezone", "local", metavar="ZONE", help="The local zone shown beside UTC (default: Settings').")
@options.rules_option
def simulate(
    process_name: str, stage: str, entered: str, until_text: str | None, local: str | None, rules_dir: str
) -> None:
    """Print when a record in a stage becomes overdue and every reminder it gets, on a virtual clock.

    The record enters STAGE at --entered and stays there: nothing stops the
    reminders (a stage change, a future appointment or a task would), and the
    daemon runs at every daily run. Each line shows the weekday and time in UTC
    and in the local zone. Nothing is read from or written to the database.

    \b
    Example:
      outreach simulate --process partner-leads --stage New --entered 2026-11-21T10:00:00Z --until 2026-12-10
    """
    ruleset = options.load_rules(rules_dir)
    process = ruleset.processes.get(process_name)
    if process is None:
        known = ", ".join(sorted(ruleset.processes)) or "none"
        raise click.UsageError(f"no SalesProcess {process_name!r} in {rules_dir} (processes: {known})")
    start = instant("--entered", entered)
    until = instant("--until", until_text) if until_text else start + DEFAULT_SPAN
    if until <= start:
        raise click.UsageError("--until must be after --entered")
    zone = local or ruleset.settings.timezone
    try:
        timing.zone(zone)
    except ValueError as exc:
        raise click.UsageError(f"--timezone: {exc}") from None
    policy = process.follow_up
    runs = f'daily run "{policy.at}" {policy.timezone}' + (f", then every {policy.every}" if policy.every else "")
    click.echo(f"{process.name}: a {process.module} in {stage} from {start:%a %Y-%m-%d %H:%M} UTC"
               f"{'' if policy.enabled else ' (reminders are off)'}; {runs}")  # fmt: skip
    events = timeline(process, stage, start, until, ruleset.settings)
    for at, what in events:
        click.echo(line(at, what, zone))
    sent = sum(what.startswith("reminder ") for _, what in events)
    click.echo(f"until {until:%a %Y-%m-%d %H:%M} UTC: {sent} reminder(s)")
