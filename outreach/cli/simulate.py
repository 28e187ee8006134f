"""`outreach simulate`: a sequence's timeline for one record (SEQUENCE), a sales process's reminders (--process),
or a campaign's timeline for a sample of its recipients (--campaign)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from outreach.review import simulation

from outreach.cli import options, output
from outreach.engine import reminders
from outreach.rules import model, timing

DEFAULT_SPAN = dt.timedelta(days=30)
SAMPLE = 10  # --campaign: recipients taken from the database without --sample


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


_SEQUENCE_ONLY = ("--record", "--record-json", "--as")
_PROCESS_ONLY = ("--stage", "--entered")
_CAMPAIGN_ONLY = ("--records", "--sample", "--db")
_RUN = ("--start", "--events")  # a sequence's and a campaign's: both run as a RuleTest


@click.command()
@click.argument("sequence", required=False)
@click.option(
    "--start",
    "start_text",
    metavar="TIME",
    help="When the record is enrolled in SEQUENCE; with --campaign, when the run starts (default: the campaign's "
    "send_at, or now) (ISO 8601; UTC if no zone).",
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
@click.option("--campaign", "campaign_name", metavar="NAME", help="The Campaign to simulate (instead of SEQUENCE).")
@click.option(
    "--records",
    "records_file",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="With --campaign: its recipients, a YAML list of records as in a RuleTest (default: the first of the "
    "records it would pick now in the database).",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=SAMPLE,
    show_default=True,
    help="With --campaign and no --records: how many of its recipients to take from the database.",
)
@click.option("--stage", metavar="STAGE", help="With --process: the stage the record is in.")
@click.option("--entered", metavar="TIME", help="With --process: when it entered the stage (ISO 8601; UTC if no zone).")
@click.option(
    "--until",
    "until_text",
    metavar="TIME",
    help="Up to when (default: SEQUENCE: a day after the last thing that happens, at most 90 days after "
    "--start or the last event; --process: 30 days after --entered; --campaign: a day after its last follow-up).",
)
@click.option(
    "--timezone",
    "local",
    metavar="ZONE",
    help="The local zone shown beside UTC (default: the record's timezone, else Settings').",
)
@output.output_format()
@options.rules_option
@options.db_option
def simulate(
    sequence: str | None, start_text: str | None, record_file: str | None, record_text: str | None,
    events_file: str | None, as_user: str | None, process_name: str | None, campaign_name: str | None,
    records_file: str | None, sample: int, stage: str | None, entered: str | None, until_text: str | None,
    local: str | None, fmt: str, rules_dir: str, db_url: str | None,
) -> None:  # fmt: skip
    """Print, on a virtual clock, what a sequence does to one record, when a record in a stage is reminded, or
    what a campaign does to a sample of its recipients.

    SEQUENCE: one record is enrolled at --start and run by the RuleTest
    runner (the real scheduler, a store in memory): every mail with its
    template, subject, sender and thread, every task, every event of --events
    (a YAML list, as in a RuleTest), and how the enrollment ends (completed,
    stopped, blocked, or still active at --until).

    --process: a record enters --stage at --entered and stays there: when it
    becomes overdue and every reminder until --until (nothing stops them).

    --campaign: the campaign sent, by the RuleTest runner, to --records, or
    to the first --sample records it would pick now in the database (read
    only, with their suppressions): its mail, each follow-up, who is skipped
    and why, every event of --events and the trigger actions they fire, and
    each step's statistics.

    Each line shows the weekday and time in UTC and in the local zone.
    Nothing is written to the database; only --campaign without --records
    reads it.

    \b
    Examples:
      outreach simulate inbound-nurture --start 2026-11-27T15:00:00Z
      outreach simulate inbound-nurture --start 2026-11-27T15:00:00Z --record lead.yaml --events reply.yaml
      outreach simulate --process partner-leads --stage New --entered 2026-11-21T10:00:00Z --until 2026-12-10
      outreach simulate inbound-nurture --start 2026-11-27T15:00:00Z --json
      outreach simulate --campaign spring-webinar --sample 5 --events opens.yaml
      outreach simulate --campaign spring-webinar --records leads.yaml
    """
    from outreach.review import simulation

    ctx = click.get_current_context()
    given = {name for name in (*_SEQUENCE_ONLY, *_PROCESS_ONLY, *_CAMPAIGN_ONLY, *_RUN) if _given(ctx, name)}
    modes = [what for what, name in (("SEQUENCE", sequence), ("--process NAME", process_name),
                                     ("--campaign NAME", campaign_name)) if name is not None]  # fmt: skip
    if len(modes) > 1:
        raise click.UsageError(f"give one of SEQUENCE, --process NAME or --campaign NAME, not {' and '.join(modes)}")
    if not modes:
        raise click.UsageError("give SEQUENCE (with --start), --process NAME (with --stage and --entered) or "
                               "--campaign NAME")  # fmt: skip
    mode = {"SEQUENCE": "SEQUENCE", "--process NAME": "--process", "--campaign NAME": "--campaign"}[modes[0]]
    allowed = {"SEQUENCE": {*_SEQUENCE_ONLY, *_RUN}, "--process": set(_PROCESS_ONLY),
               "--campaign": {*_CAMPAIGN_ONLY, *_RUN}}[mode]  # fmt: skip
    wrong = sorted(given - allowed)
    if wrong:
        owners = [m for m, names in (("SEQUENCE", (*_SEQUENCE_ONLY, *_RUN)), ("--process", _PROCESS_ONLY),
                                     ("--campaign", (*_CAMPAIGN_ONLY, *_RUN))) if wrong[0] in names]  # fmt: skip
        raise click.UsageError(f"{', '.join(wrong)}: only with {' or '.join(owners)}, not {mode}")
    if process_name is not None:
        if stage is None or entered is None:
            raise click.UsageError("--process needs --stage and --entered")
        _process(process_name, stage, entered, until_text, local, rules_dir, fmt)
        return
    if campaign_name is not None:
        _campaign(campaign_name, start_text, records_file, sample, events_file, until_text, local, rules_dir, db_url,
                  fmt)  # fmt: skip
        return
    assert sequence is not None
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


def _campaign(
    name: str, start_text: str | None, records_file: str | None, sample: int, events_file: str | None,
    until_text: str | None, local: str | None, rules_dir: str, db_url: str | None, fmt: str,
) -> None:  # fmt: skip
    """`--campaign`: the campaign sent to its sample, run as a RuleTest, as a timeline and each step's counts."""
    from outreach.review import simulation

    ruleset = options.load_rules(rules_dir)
    campaign = ruleset.campaigns.get(name)
    if campaign is None:
        known = ", ".join(sorted(ruleset.campaigns)) or "none"
        raise click.UsageError(f"no Campaign {name!r} in {rules_dir} (campaigns: {known})")
    now = options.now()
    start = instant("--start", start_text) if start_text else (campaign.send_at or now).astimezone(dt.UTC)
    until = instant("--until", until_text) if until_text else None
    if until is not None and until <= start:
        raise click.UsageError("--until must be after --start")
    zone = local or ruleset.settings.timezone
    _zone(zone)
    try:
        if records_file is not None:
            found = simulation.read_records(records_file)
        else:

            async def read(store: Any) -> simulation.Audience:
                return await simulation.audience(store, ruleset, campaign, limit=sample, now=now)

            found = options.on_store(db_url, ruleset, read)
        events = simulation.read_events(events_file) if events_file is not None else None
        sim = simulation.prepare_campaign(rules_dir, ruleset, campaign, found, events, start=start, until=until)
        told = options.run(simulation.run_campaign(sim))
    except simulation.BadInput as exc:
        raise click.UsageError(str(exc)) from None
    if fmt == "json":
        click.echo(options.dumps({
            "campaign": campaign.name, "start": start, "until": told.until, "timezone": zone,
            "heading": simulation.campaign_heading(sim), "recipients": len(found.records.data),
            "picked": found.total, "timeline": [{"at": at, "what": what} for at, what in told.steps],
            "steps": [{"step": s.step, "template": s.template, "to": s.to, "status": s.status, "at": s.at,
                       **s.counts, "skipped_by_reason": dict(s.skipped)} for s in told.summary],
        }))  # fmt: skip
        return
    click.echo(simulation.campaign_heading(sim))
    for at, what in told.steps:
        click.echo(line(at, what, zone))
    if not found.records.data:
        click.echo("  nobody: the campaign picks no record, and completes with 0 sent")
    click.echo(f"until {told.until:%a %Y-%m-%d %H:%M} UTC:")
    width = max(len(s.template) for s in told.summary)
    for s in told.summary:
        c = s.counts
        counts = (f"{c.get('sent', 0)} sent, {c.get('bounced', 0)} bounced, {c.get('opened', 0)} opened, "
                  f"{c.get('clicked', 0)} clicked") if s.status not in ("waiting", "scheduled", "not applied") \
            else s.status  # fmt: skip
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(s.skipped.items()))
        to = "everyone" if s.step == 0 else f"who {s.to} it"
        click.echo(f"  {s.label:<13}  {s.template:<{width}}  to {to:<16}  {counts}"
                   + (f"; skipped: {skipped}" if skipped else ""))  # fmt: skip


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
