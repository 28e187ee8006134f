"""Commands on sales processes: their stages and reminder timing, and the records that overstay a stage."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from outreach.app import reminding
    from outreach.store import Store

from outreach.cli import options, output
from outreach.engine import reminders, render
from outreach.rules import model


@click.group()
def processes() -> None:
    """Sales processes: stages with a maximum duration, and reminders about records that overstay them.

    \b
    Examples:
      outreach processes list
      outreach processes overdue partner-leads
    """


def _now_option(f: Any) -> Any:
    return click.option(
        "--now", "at", metavar="DATETIME", help="Judge as of this time (default: now), e.g. 2026-11-24T12:00:00Z."
    )(f)


def _at(at: str | None) -> dt.datetime:
    return options.parse_when(at, now_=options.now()) if at else options.now()


def _process_json(p: model.SalesProcess, overdue: int) -> dict[str, Any]:
    fu = p.follow_up
    return {
        "name": p.name, "module": p.module, "stage_field": p.stage_field, "where": p.where is not None,
        "stages": [{"name": s.name, "max": str(s.max) if s.max else None} for s in p.stages],
        "follow_up": {"enabled": fu.enabled, "every": str(fu.every) if fu.every else None, "at": fu.at,
                      "timezone": fu.timezone, "to": _to(fu.to), "template": fu.template, "digest": fu.digest},
        "overdue": overdue,
    }  # fmt: skip


def _to(who: model.Who) -> str:
    return f"user:{who.user}" if who.kind == "user" else who.kind


def _timing(fu: model.ReminderPolicy) -> str:
    if not fu.enabled:
        return "off"
    then = f"then every {fu.every}" if fu.every else "only once"
    digest = "; as a digest" if fu.digest else ""
    return (f'daily run "{fu.at}" {fu.timezone}; first the day after a record becomes overdue, {then}; '
            f"to {_to(fu.to)}; template {fu.template}{digest}")  # fmt: skip


@processes.command("list")
@_now_option
@output.output_format()
@options.rules_option
@options.db_option
def processes_list(at: str | None, fmt: str, rules_dir: str, db_url: str | None) -> None:
    """Every sales process: its module, stages with their max, reminder timing, and how many records are overdue.

    \b
    Examples:
      outreach processes list
      outreach processes list --json
    """
    from outreach.app import reminding

    ruleset = options.load_rules(rules_dir)
    now = _at(at)

    async def go(store: Store) -> dict[str, int]:
        return {name: len(await reminding.standings(store, ruleset, p, now)) for name, p in ruleset.processes.items()}

    counts = options.on_store(db_url, ruleset, go)
    if fmt == "json":
        click.echo(options.dumps([_process_json(p, counts[name]) for name, p in ruleset.processes.items()]))
        return
    if not ruleset.processes:
        click.echo(f"no sales processes in {rules_dir}")
    for name, p in ruleset.processes.items():
        stages = ", ".join(f"{s.name} {s.max if s.max else '(no max)'}" for s in p.stages)
        where = ", records matching its criteria" if p.where is not None else ""
        field = f", stage field {p.stage_field}" if p.stage_field != "stage" else ""
        n = counts[name]
        click.echo(f"{name} ({p.module}{where}{field})\n  stages     {stages}\n  reminders  {_timing(p.follow_up)}\n"
                   f"  overdue    {output.plural(n, 'record')}")  # fmt: skip


def overdue_json(s: reminding.Standing, now: dt.datetime) -> dict[str, Any]:
    """A record's standing in a process, as the --json options print it."""
    o = s.overdue
    entered = s.record.stage_entered_at
    stage = reminders.stage_of(s.process, s.record.value(s.process.stage_field))
    return {
        "process": s.process.name, "record": s.record.id, "owner": s.record.owner,
        "stage": s.record.value(s.process.stage_field), "stage_entered_at": entered,
        "in_stage": render.human_duration(now - entered) if entered else None,
        "max": str(stage.max) if stage and stage.max else None, "overdue": o is not None,
        "overdue_since": s.overdue_since, "next_reminder": o.next_reminder if o else None,
        "reminders_sent": o.sent if o else 0, "stopped": str(o.stopped) if o and o.stopped else None,
        "stopped_at": o.stopped_at if o else None, "blocked": s.blocked,
    }  # fmt: skip


def _note(s: reminding.Standing) -> str:
    o = s.overdue
    if o is not None and o.stopped is not None:
        return f"stopped: {o.stopped} {options.when(o.stopped_at)}"
    if s.blocked:
        return f"blocked: {s.blocked}"
    return ""


def _next(s: reminding.Standing) -> str:
    o = s.overdue
    if o is None or o.stopped is not None:
        return ""
    if not s.process.follow_up.enabled:
        return "reminders off"
    return options.when(o.next_reminder) if o.next_reminder else "none (sent once)"


def _columns(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    lines = [[output.visible(cell) for cell in line] for line in lines]  # record ids and owners are data
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in (header, *lines))  # fmt: skip


@processes.command("overdue")
@click.argument("name", required=False)
@_now_option
@output.output_format()
@options.rules_option
@options.db_option
def processes_overdue(name: str | None, at: str | None, fmt: str, rules_dir: str, db_url: str | None) -> None:
    """The overdue records of one process or all: stage, overdue since, next reminder, reminders sent, stops.

    \b
    Examples:
      outreach processes overdue
      outreach processes overdue partner-leads --now 2026-11-24T12:00:00Z
    """
    from outreach.app import reminding

    ruleset = options.load_rules(rules_dir)
    if name is not None and name not in ruleset.processes:
        raise click.BadParameter(f"no sales process {name!r} (processes: {', '.join(ruleset.processes) or 'none'})",
                                 param_hint="NAME")  # fmt: skip
    chosen = [ruleset.processes[name]] if name is not None else list(ruleset.processes.values())
    now = _at(at)

    async def go(store: Store) -> list[list[reminding.Standing]]:
        return [await reminding.standings(store, ruleset, p, now) for p in chosen]

    found = options.on_store(db_url, ruleset, go)
    if fmt == "json":
        click.echo(options.dumps([overdue_json(s, now) for group in found for s in group]))
        return
    for p, group in zip(chosen, found, strict=True):
        if not group:
            click.echo(f"{p.name}: no overdue records")
            continue
        click.echo(f"{p.name}: {output.plural(len(group), 'overdue record')}")
        lines = []
        for s in group:
            assert s.overdue is not None
            entered = s.overdue.stage_entered_at
            lines.append([s.record.id, s.record.owner or "", s.overdue.stage, render.human_duration(now - entered),
                          options.when(s.overdue.overdue_since), _next(s), str(s.overdue.sent), _note(s)])  # fmt: skip
        header = ["record", "owner", "stage", "in stage", "overdue since", "next reminder", "sent", "stopped"]
        click.echo(_columns(header, lines))


def stage_durations(standings: Sequence[reminding.Standing], now: dt.datetime) -> list[list[str]]:
    """Rows of `records show`'s stage durations: process, stage, in stage for, max, overdue since, next reminder."""
    out = []
    for s in standings:
        j = overdue_json(s, now)
        if j["overdue"]:
            overdue, upcoming = options.when(j["overdue_since"]), _next(s) or _note(s)
        elif j["overdue_since"] is not None:
            overdue, upcoming = f"not yet (at {options.when(j['overdue_since'])})", ""
        else:
            overdue, upcoming = "never", ""
        out.append([s.process.name, str(j["stage"] or ""), j["in_stage"] or "", j["max"] or "no max", overdue,
                    upcoming])  # fmt: skip
    return out
