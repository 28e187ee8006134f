"""`outreach simulate`: a sequence's timeline for one record (SEQUENCE), or a sales process's reminders (--process)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from outreach.review import simulation

from outreach.cli import options, output
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


_SEQUENCE_ONLY = ("--start", "--record", "--record-json", "--events", "--as")
_PROCESS_ONLY = ("--stage", "--entered")


@click.command()
@click.argument("sequence", required=False)
@click.option(
    "--start", "start_text", metavar="TIME", help="When the record is enrolled in SEQUENCE (ISO 8601; UTC if no zone)."
)
@click.option(
    "--record",
    "record_file",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="The record, a YAML or JSON mapping as in a RuleTest's records (default: a sample record).",
)
@click.option("--record-json", "record_text", metavar="JSON", help="The record as a JSON string.")
@click.option(
    "--events",
    "events_file",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="A YAML list of RuleTest events; `record` may be left out.",
)
@click.option("--as", "as_user", metavar="USER", help="Who enrolls the record (default: its owner).")
@click.option("--process", "process_name", metavar="NAME", help="The SalesProcess to simulate (instead of SEQUENCE).")
@click.option("--stage", metavar="STAGE", help="With --process: the stage the record is in.")
@click.option("--entered", metavar="TIME", help="With --process: when it entered the stage (ISO 8601; UTC if no zone).")
@click.option(
    "--until",
    "until_text",
    metavar="TIME",
    help="Up to when (default: SEQUENCE: a day after the last thing that happens, at most 90 days after "
    "--start or the last event; --process: 30 days after --entered).",
)
@click.option(
    "--timezone",
    "local",
    metavar="ZONE",
    help="The local zone shown beside UTC (default: the record's timezone, else Settings').",
)
@output.output_format()
@options.rules_option
def simulate(
    sequence: str | None, start_text: str | None, record_file: str | None, record_text: str | None,
    events_file: str | None, as_user: str | None, process_name: str | None, stage: str | None,
    entered: str | None, until_text: str | None, local: str | None, fmt: str, rules_dir: str,
) -> None:  # fmt: skip
    """Print, on a virtual clock, what a sequence does to one record, or when a record in a stage is reminded.

    SEQUENCE: one record is enrolled at --start and run by the RuleTest
    runner (the real scheduler, a store in memory): every mail with its
    template, subject, sender and thread, every task, every event of --events
    (a YAML list, as in a RuleTest), and how the enrollment ends (completed,
    stopped, blocked, or still active at --until).

    --process: a record enters --stage at --entered and stays there: when it
    becomes overdue and every reminder until --until (nothing stops them).

    Each line shows the weekday and time in UTC and in the local zone.
    Nothing is read from or written to the database.

    \b
    Examples:
      outreach simulate inbound-nurture --start 2026-11-27T15:00:00Z
      outreach simulate inbound-nurture --start 2026-11-27T15:00:00Z --record lead.yaml --events reply.yaml
      outreach simulate --process partner-leads --stage New --entered 2026-11-21T10:00:00Z --until 2026-12-10
      outreach simulate inbound-nurture --start 2026-11-27T15:00:00Z --json
    """
    from outreach.review import simulation

    ctx = click.get_current_context()
    given = {name for name in (*_SEQUENCE_ONLY, *_PROCESS_ONLY) if _given(ctx, name)}
    if sequence is not None and process_name is not None:
        raise click.UsageError("give SEQUENCE or --process NAME, not both")
    if sequence is None and process_name is None:
        raise click.UsageError("give SEQUENCE (with --start) or --process NAME (with --stage and --entered)")
    if process_name is not None:
        if given & set(_SEQUENCE_ONLY):
            raise click.UsageError(
                f"{', '.join(sorted(given & set(_SEQUENCE_ONLY)))}: only with SEQUENCE, not --process"
            )
        if stage is None or entered is None:
            raise click.UsageError("--process needs --stage and --entered")
        _process(process_name, stage, entered, until_text, local, rules_dir, fmt)
        return
    assert sequence is not None
    if given & set(_PROCESS_ONLY):
        raise click.UsageError(f"{', '.join(sorted(given & set(_PROCESS_ONLY)))}: only with --process, not SEQUENCE")
    if start_text is None:
        raise click.UsageError("SEQUENCE needs --start TIME: when the record is enrolled")
    if record_file is not None and record_text is not None:
        raise click.UsageError("give --record FILE or --record-json JSON, not both")
    start = instant("--start", start_text)
    until = instant("--until", until_text) if until_text else None
    if until is not None and until <= start:
        raise click.UsageError("--until must be after --start")
    if local is not None:
        _zone(local)
    ruleset = options.load_rules(rules_dir)
    chosen = ruleset.sequences.get(sequence)
    if chosen is None:
        known = ", ".join(sorted(ruleset.sequences)) or "none"
        raise click.UsageError(f"no Sequence {sequence!r} in {rules_dir} (sequences: {known})")
    try:
        if record_file is not None:
            record = simulation.read_record(record_file)
        elif record_text is not None:
            record = simulation.record_json(record_text)
        else:
            record = simulation.sample_record(chosen, ruleset.settings)
        events = simulation.read_events(events_file) if events_file is not None else None
        sim = simulation.prepare(rules_dir, ruleset, chosen, record, events, start=start, until=until,
                                 as_user=as_user)  # fmt: skip
        told = options.run(simulation.run(sim))
    except simulation.BadInput as exc:
        raise click.UsageError(str(exc)) from None
    zone = local or _record_zone(sim) or ruleset.settings.timezone
    if fmt == "json":
        click.echo(options.dumps({
            "sequence": chosen.name, "record": sim.record.id, "enrolled_by": sim.enrolled_by, "start": start,
            "until": told.until, "timezone": zone, "heading": simulation.heading(sim),
            "timeline": [{"at": at, "what": what} for at, what in told.steps],
            "mails": told.mails, "tasks": told.tasks, "outcome": told.outcome,
        }))  # fmt: skip
        return
    click.echo(simulation.heading(sim))
    for at, what in told.steps:
        click.echo(line(at, what, zone))
    click.echo(f"until {told.until:%a %Y-%m-%d %H:%M} UTC: {output.plural(told.mails, 'mail')}, "
               f"{output.plural(told.tasks, 'task')}; {chosen.name} {told.outcome}")  # fmt: skip


def _given(ctx: click.Context, option: str) -> bool:
    param = next(p for p in ctx.command.params if option in getattr(p, "opts", ()))
    return ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.COMMANDLINE


def _zone(name: str) -> None:
    try:
        timing.zone(name)
    except ValueError as exc:
        raise click.UsageError(f"--timezone: {exc}") from None


def _record_zone(sim: simulation.Simulation) -> str | None:
    zone = sim.record.fields.get("timezone")
    return zone if isinstance(zone, str) else None


def _process(
    process_name: str, stage: str, entered: str, until_text: str | None, local: str | None, rules_dir: str, fmt: str
) -> None:
    """`--process`: when a record in a stage becomes overdue and every reminder it gets."""
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
    _zone(zone)
    policy = process.follow_up
    events = timeline(process, stage, start, until, ruleset.settings)
    sent = sum(what.startswith("reminder ") for _, what in events)
    if fmt == "json":
        click.echo(options.dumps({
            "process": process.name, "module": process.module, "stage": stage, "entered": start, "until": until,
            "timezone": zone, "reminders_enabled": policy.enabled,
            "timeline": [{"at": at, "what": what} for at, what in events], "reminders": sent,
        }))  # fmt: skip
        return
    runs = f'daily run "{policy.at}" {policy.timezone}' + (f", then every {policy.every}" if policy.every else "")
    click.echo(f"{process.name}: a {process.module} in {stage} from {start:%a %Y-%m-%d %H:%M} UTC"
               f"{'' if policy.enabled else ' (reminders are off)'}; {runs}")  # fmt: skip
    for at, what in events:
        click.echo(line(at, what, zone))
    click.echo(f"until {until:%a %Y-%m-%d %H:%M} UTC: {output.plural(sent, 'reminder')}")
