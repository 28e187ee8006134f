"""Commands on sequences: run the daemon, enroll, stop and retry, preview, list and stats, and the outbox."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from outreach.app import enrolling
    from outreach.store import Store

from outreach.cli import options, output
from outreach.engine import sequences as seq
from outreach.rules import criteria, model, timing


@click.command()
@click.option("--once", is_flag=True, help="Read each mailbox once, run one tick and exit (for cron and tests).")
@click.option("--tick", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="Seconds between ticks.")
@click.option(
    "--now",
    "at",
    metavar="DATETIME",
    help="With --once: run the tick as if it were this time (to try rules); no mailbox is read.",
)
@click.option("--listen", metavar="HOST:PORT", help="Where the web endpoints listen (default: Settings web.listen, "
              "127.0.0.1:8025; port 0: any free port).")  # fmt: skip
@click.option("--no-web", is_flag=True, help="Do not serve the web endpoints (`outreach web` serves them apart).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Log lines as text, or as JSON objects, one a line (for journald and log collectors).")  # fmt: skip
@click.option("--grace", type=click.FloatRange(min=0), default=30.0, show_default=True, metavar="SECONDS",
              help="On SIGTERM, how long mail in flight has to finish.")  # fmt: skip
@click.option("--lease", type=click.FloatRange(min=1), default=30.0, show_default=True, metavar="SECONDS",
              help="Several daemons on PostgreSQL: how long a dead daemon's work waits before another takes it.")  # fmt: skip
@options.rules_option
@options.db_option
def run(once: bool, tick: float, at: str | None, listen: str | None, no_web: bool, log_format: str, grace: float,
        lease: float, rules_dir: str, db_url: str | None) -> None:  # fmt: skip
    """Run the daemon: apply the rules, then every tick enroll, send due steps and hand mail to the transport.

    The rule directory is validated first (all or nothing). Ctrl-C or SIGTERM
    stops it after the current tick; SIGHUP reloads the rules (an invalid set
    is reported and the old one keeps running). With the maildir transport,
    mail appears as files in var/outbox. Each mailbox of Settings.mailboxes is
    read for replies and bounces by a task of its own (IDLE, or every
    poll_every); with --once each is read once, before the tick. The web
    endpoints (unsubscribe, tracking, the ingest API, /healthz, /metrics;
    docs/web.md) are served on Settings web.listen, except with --once.

    \b
    Examples:
      outreach run
      outreach run --once --db sqlite:///var/outreach.db
      outreach run --once --now 2026-11-23T08:00:00Z
      outreach run --listen 127.0.0.1:8080
    """
    if at is not None and not once:
        raise click.UsageError("--now goes with --once: a running daemon follows the clock")
    now = options.parse_when(at, now_=options.now()) if at else None
    import asyncio

    from outreach import daemon  # the composition root: imported only when the daemon runs

    daemon.configure_logging(log_format)
    sys.exit(asyncio.run(daemon.serve(rules_dir, db_url, once=once, tick=tick, now=now, web=not no_web,
                                      listen=listen, lease=lease, grace=grace)))  # fmt: skip


def _check_user(ruleset: model.RuleSet, user: str | None) -> None:
    if user is not None and user not in ruleset.settings.users:
        raise click.BadParameter(f"no user {user!r} (users: {', '.join(ruleset.settings.users)})", param_hint="--as")


def _sequence(ruleset: model.RuleSet, name: str) -> model.Sequence:
    if name not in ruleset.sequences:
        raise click.BadParameter(f"no sequence {name!r} (sequences: {', '.join(ruleset.sequences) or 'none'})",
                                 param_hint="SEQUENCE")  # fmt: skip
    return ruleset.sequences[name]


@click.command()
@click.argument("sequence_name", metavar="SEQUENCE")
@click.option("--record", "record_ids", multiple=True, metavar="ID", help="A record to enroll (repeatable).")
@click.option("--view", "view_name", metavar="NAME", help="Enroll the records of a View.")
@click.option(
    "--where",
    "where_pairs",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Enroll records whose field equals the value (repeatable).",
)
@click.option(
    "--as", "as_user", required=True, metavar="USER", help="The enrolling user (mail goes out as them by default)."
)
@click.option("--dry-run", is_flag=True, help="Show what would happen and enroll no one.")
@click.option(
    "--now", "at", metavar="DATETIME", help="Enroll as of this time (default: now); the first wait counts from it."
)
@click.option("--verbose", "-v", is_flag=True, help="A line per record (the default with --record alone).")
@output.output_format(help="text: a summary (and lines per record); json: the summary and every record's outcome "
                           "as one object.")  # fmt: skip
@options.rules_option
@options.db_option
def enroll(sequence_name: str, record_ids: tuple[str, ...], view_name: str | None, where_pairs: tuple[str, ...],
           as_user: str, dry_run: bool, at: str | None, verbose: bool, fmt: str, rules_dir: str,
           db_url: str | None) -> None:  # fmt: skip
    """Enroll records in a sequence, one or many; says when the first mail goes and why anyone was refused.

    Many records (--view, --where) go in chunks, with a progress bar on a
    terminal, and end with a summary: how many were enrolled, how many were
    refused and why, and when the first and the last of their first mails go
    out. --verbose adds a line per record; with --record alone every record
    gets its line anyway. Exit status 1 when every record was refused.

    \b
    Examples:
      outreach enroll inbound-nurture --record L1 --as anna
      outreach enroll inbound-nurture --view dach-qualified --as anna --dry-run
      outreach enroll inbound-nurture --where country=DE --as anna --format json
    """
    from outreach.app import enrolling

    if not (record_ids or view_name or where_pairs):
        raise click.UsageError("say whom to enroll: --record ID, --view NAME or --where FIELD=VALUE")
    ruleset = options.load_rules(rules_dir)
    _check_user(ruleset, as_user)
    now = options.parse_when(at, now_=options.now()) if at else options.now()
    where = options.where_from_pairs(where_pairs, ruleset.settings)
    if view_name is not None:
        if view_name not in ruleset.views:
            raise click.BadParameter(f"no view {view_name!r}", param_hint="--view")
        where = criteria.All(tuple(x for x in (where, ruleset.views[view_name].where) if x is not None))
    sequence = _sequence(ruleset, sequence_name)

    async def go(store: Store) -> tuple[list[tuple[str, seq.Enrollment | str]], enrolling.Outlook | None]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("enrolling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("enrolling", total=None)
            results = await enrolling.enroll_many(store, ruleset, sequence, record_ids=record_ids, where=where,
                                                  enrolled_by=as_user, now=now, dry_run=dry_run,
                                                  progress=lambda done, total: bar.update(task, completed=done,
                                                                                          total=total))  # fmt: skip
        # when the senders' daily limits let these first mails go (the daemon holds the rest for later days)
        return results, await enrolling.limit_outlook(store, ruleset, sequence, results, now=now)

    results, outlook = options.on_store(db_url, ruleset, go)
    tally = enrolling.tally(results, outlook)
    if fmt == "json":
        click.echo(options.dumps(_enroll_json(sequence_name, dry_run, tally, results)))
    else:
        named = not (view_name or where_pairs)  # records named one by one: their lines say it all
        _enroll_text(sequence_name, dry_run, tally, results, each=verbose or named, breakdown=verbose or not named)
    if tally.refused and not tally.enrolled:
        sys.exit(1)


_REFUSALS = {
    "no_record": "no such record", "not_a_user": "not a user", "deleted": "deleted",
    "wrong_type": "not a module the sequence enrolls", "no_email": "no valid email address",
    "unsubscribed": "unsubscribed", "already_active": "already active in the sequence",
    "same_address": "an address another record of this run has",
}  # fmt: skip


def _enroll_text(name: str, dry_run: bool, tally: enrolling.Tally, results: list[tuple[str, seq.Enrollment | str]],
                 *, each: bool, breakdown: bool) -> None:  # fmt: skip
    verb = "would enroll" if dry_run else "enrolled"
    if each:
        for rid, r in results:
            if isinstance(r, seq.Enrollment):
                when = options.when(r.next_due_at)
                if rid in tally.held:  # the sender's daily limit holds it back
                    when = f"{options.when(tally.held[rid])} (due {when}; held back by the sender's daily limit)"
                click.echo(output.visible(f"{verb} {rid} ({r.email}): first mail {when}"))
            else:
                click.echo(output.visible(f"refused {rid}: {r}"), err=True)
    refused = sum(tally.refused.values())
    click.echo(f"{name}: {tally.enrolled:,} {verb}, {refused:,} refused")
    for line in _limit_lines(tally.limits):
        click.echo(line)
    if not breakdown:
        return
    for kind, n in tally.refused.items():
        click.echo(f"  refused {n:,}: {_REFUSALS.get(kind, kind)}")
    if tally.first_mail is not None and tally.last_mail is not None:
        span = options.when(tally.first_mail)
        if tally.last_mail != tally.first_mail:
            span = f"{span} to {options.when(tally.last_mail)}"
        click.echo(f"  first mails: {span}")


def _limit_lines(limits: tuple[seq.LimitForecast, ...]) -> list[str]:
    """What the senders' daily limits do to the first mails: per sender, how many wait, and how many go each day
    (runs of days with the same count on one line)."""
    lines = []
    for f in limits:
        before = f", after {f.ahead:,} of theirs already scheduled" if f.ahead else ""
        total = sum(n for _, n in f.days)
        lines.append(f"  {f.sender}'s daily limit ({f.limit:,} in 24 hours, {f.used:,} queued in the last 24 hours"
                     f"{before}) holds back {f.held:,} of {output.plural(total, 'first mail')}: sent over "
                     f"{output.plural(len(f.days), 'day')}, the last at {options.when(f.last)}")  # fmt: skip
        runs: list[list[tuple[dt.date, int]]] = []
        for day, n in f.days:
            if runs and runs[-1][-1][1] == n:
                runs[-1].append((day, n))
            else:
                runs.append([(day, n)])
        for run in runs:
            first, n = run[0]
            if len(run) == 1:
                lines.append(f"    {first}: {n:,}")
            else:
                lines.append(f"    {first} to {run[-1][0]}: {n:,} a day ({len(run)} days)")
    return lines


def _enroll_json(name: str, dry_run: bool, tally: enrolling.Tally,
                 results: list[tuple[str, seq.Enrollment | str]]) -> dict[str, Any]:  # fmt: skip
    records: list[dict[str, Any]] = []
    for rid, r in results:
        if isinstance(r, seq.Enrollment):
            records.append({"record": rid, "enrolled": True, "enrollment": r.id or None, "email": r.email,
                            "first_mail": r.next_due_at})  # fmt: skip
            if rid in tally.held:
                records[-1]["held_until"] = tally.held[rid]
        else:
            kind = r.kind if isinstance(r, seq.Refusal) else "other"
            records.append({"record": rid, "enrolled": False, "refused": kind, "reason": str(r)})
    limits = [{"sender": f.sender, "daily_limit": f.limit, "queued_last_24_hours": f.used, "waiting_before": f.ahead,
               "held": f.held, "last_mail": f.last, "days": [{"day": str(day), "first_mails": n} for day, n in f.days]}
              for f in tally.limits]  # fmt: skip
    return {"sequence": name, "dry_run": dry_run, "enrolled": tally.enrolled, "refused": tally.refused,
            "first_mail": tally.first_mail, "last_mail": tally.last_mail, "limits": limits,
            "records": records}  # fmt: skip


@click.group()
def enrollments() -> None:
    """Enrollments: list, show, stop, retry.

    \b
    Examples:
      outreach enrollments list --record L1
      outreach enrollments show 17
      outreach enrollments stop 17 --as anna
      outreach enrollments retry 17
    """


@enrollments.command("list")
@click.option("--record", "record_id", metavar="ID")
@click.option("--sequence", "sequence_name", metavar="NAME")
@output.output_format()
@options.rules_option
@options.db_option
def enrollments_list(record_id: str | None, sequence_name: str | None, fmt: str, rules_dir: str,
                     db_url: str | None) -> None:  # fmt: skip
    """List enrollments with their status, step and next send or reason.

    \b
    Examples:
      outreach enrollments list --sequence inbound-nurture
      outreach enrollments list --record L1 --json
    """
    ruleset = options.load_rules(rules_dir)
    found = options.on_store(db_url, ruleset, lambda s: s.enrollments(record_id=record_id, sequence=sequence_name))
    if fmt == "json":
        click.echo(options.dumps(found))
        return
    lines = [[str(e["id"]), e["record_id"], e["sequence"], e["status"], str(e["steps_done"]),
              _detail(e, ruleset.sequences.get(e["sequence"]))] for e in found]  # fmt: skip
    output.print_tables(output.table(["id", "record", "sequence", "status", "steps done", "details"], lines,
                                     title=output.plural(len(found), "enrollment"), free=["details"],
                                     numbers=["steps done"]))  # fmt: skip


def _detail(e: dict[str, Any], sequence: model.Sequence | None = None) -> str:
    """When an enrollment's next step runs, the step a blocked one stopped at and why, or how it ended."""
    state = e["status"]
    if state == "active":
        detail = "waiting for its task" if e["awaiting_task"] else f"next step {options.when(e['next_due_at'])}"
        if e["reason"]:  # held back, e.g. "waiting: daily limit of anna reached (300/300)"
            detail = f"{e['reason']}; {detail}"
    elif state == "completed":
        detail = f"completed {options.when(e['ended_at'])}, {output.plural(e['steps_done'], 'step')} done"
    elif state == "blocked":
        detail = f"{seq.step_label(e['step_index'], sequence, e['sequence_hash'])}: {e['reason'] or 'blocked'}"
    else:
        detail = e["reason"] or ""
    return detail


@enrollments.command("show")
@click.argument("enrollment_id", type=int)
@output.output_format(help="text: the enrollment, what is to come and its history, as tables; json: one object "
                           "(`upcoming` as `preview` prints its steps).")  # fmt: skip
@options.rules_option
@options.db_option
def enrollments_show(enrollment_id: int, fmt: str, rules_dir: str, db_url: str | None) -> None:
    """Show one enrollment: where it stands, every step ahead with its planned time, and its history.

    The steps to come are decided as the daemon would decide them (the same
    engine; `preview` shows them for someone not enrolled yet). A blocked
    enrollment's are those it would run if retried now, and one waiting for
    its task's those after the task, if it were completed now.

    \b
    Examples:
      outreach enrollments show 17
      outreach enrollments show 17 --json
    """
    from outreach.app import enrolling, sending

    ruleset = options.load_rules(rules_dir)
    now = options.now()
    try:
        links = sending.preview_links(ruleset)
    except sending.WeakSecret as exc:
        raise click.ClickException(str(exc)) from None

    async def go(store: Store) -> enrolling.Course:
        return await enrolling.course(store, ruleset, enrollment_id, now=now, links=links)

    found = options.on_store(db_url, ruleset, go)
    e, sequence = found.enrollment, found.sequence
    steps = sequence if sequence is not None else ruleset.sequences.get(e.sequence)
    if fmt == "json":
        click.echo(options.dumps({
            "enrollment": enrolling.columns_of(e), "readable": sequence is not None,
            "assuming": found.assuming,
            "upcoming": [_planned_step(sequence, at, i, d) for at, i, d in found.upcoming] if sequence else [],
            "history": [x.__dict__ for x in found.history],
        }))  # fmt: skip
        return
    line = seq.widget_line(e, steps)
    click.echo(output.visible(f"enrollment {e.id}: record {e.record_id} ({e.email}) in {e.sequence}, version "
                              f"{e.version[:8]}, enrolled by {e.enrolled_by} {options.when(e.started_at)}"))  # fmt: skip
    click.echo(output.visible(f"{e.status}, {output.plural(e.steps_done, 'step')} done: {line.detail}"))
    if sequence is None:
        click.echo(f"version {e.version[:8]} of sequence {e.sequence} cannot be read with today's rules")
    tables = []
    if found.upcoming and sequence is not None:
        coming = [[options.when(at), seq.step_label(i, sequence, sequence.source.hash), _coming(d)]
                  for at, i, d in found.upcoming]  # fmt: skip
        title = "to come" + (f", if {found.assuming}" if found.assuming else "")
        tables.append(output.table(["when", "step", "what"], coming, title=title, free=["what"]))
    elif e.status in seq.LIVE:
        click.echo("nothing is to come")
    history = [[options.when(x.at), "sequence mail" if x.kind == "sequence_email" else x.kind.replace("_", " "),
                _happened(x.kind, x.data), x.source] for x in found.history]  # fmt: skip
    tables.append(output.table(["when", "what", "details", "source"], history, title="history", free=["details"]))
    output.print_tables(*tables)


def _happened(kind: str, data: Mapping[str, Any]) -> str:
    """An event of an enrollment's history, without what the table says already (its sequence and id)."""
    if kind == "sequence_email":
        return f"{data.get('step')}: {data.get('subject')}"
    return ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("sequence", "enrollment"))


def _coming(d: seq.SendEmail | seq.CreateTask | seq.Block) -> str:
    """What a step to come does, on one line."""
    if isinstance(d, seq.SendEmail):
        thread = "reply" if d.in_reply_to else "new thread"
        return f"mail {d.step.template} to {d.to} from {d.sender.email}, {thread}: {json.dumps(d.rendered.subject, ensure_ascii=False)}"
    if isinstance(d, seq.CreateTask):
        due = f", due {options.when(d.due_at)}" if d.due_at else ""
        return f"task {json.dumps(d.subject, ensure_ascii=False)} ({d.type}) for {d.owner or 'nobody'}{due}"
    return f"BLOCKED: {d.reason}"


def _enrollment_line(e: dict[str, Any]) -> str:
    state, steps = e["status"], e["steps_done"]
    return output.visible(f"{e['id']:>6}  {e['record_id']:<12} {e['sequence']:<24} {state:<10} step {steps}  "
                          f"{_detail(e)}")  # fmt: skip


@enrollments.command("stop")
@click.argument("enrollment_id", type=int, required=False)
@click.option("--record", "record_id", metavar="ID", help="With --sequence: the record's live enrollment.")
@click.option("--sequence", "sequence_name", metavar="NAME")
@click.option("--as", "as_user", default=None, metavar="USER", help="Who stops it (shown as the reason).")
@options.rules_option
@options.db_option
def enrollments_stop(enrollment_id: int | None, record_id: str | None, sequence_name: str | None,
                     as_user: str | None, rules_dir: str, db_url: str | None) -> None:  # fmt: skip
    """Stop an enrollment at once: nothing further is sent.

    \b
    Example:
      outreach enrollments stop --record L7 --sequence inbound-nurture --as anna
    """
    from outreach.app import enrolling

    if enrollment_id is None and not (record_id and sequence_name):
        raise click.UsageError("give an ENROLLMENT_ID, or --record ID --sequence NAME")
    ruleset = options.load_rules(rules_dir)
    _check_user(ruleset, as_user)
    now = options.now()

    async def go(store: Store) -> list[dict[str, Any]]:
        return await enrolling.stop(store, enrollment_id=enrollment_id, record_id=record_id, sequence=sequence_name,
                                    by=as_user, now=now)  # fmt: skip

    for e in options.on_store(db_url, ruleset, go):
        click.echo(_enrollment_line(e))


@enrollments.command("retry")
@click.argument("enrollment_id", type=int)
@options.rules_option
@options.db_option
def enrollments_retry(enrollment_id: int, rules_dir: str, db_url: str | None) -> None:
    """Retry a blocked enrollment's step at the next tick.

    \b
    Example:
      outreach enrollments retry 17
    """
    from outreach.app import enrolling

    ruleset = options.load_rules(rules_dir)
    now = options.now()

    async def go(store: Store) -> dict[str, Any]:
        return await enrolling.retry(store, enrollment_id, now=now)

    click.echo(_enrollment_line(options.on_store(db_url, ruleset, go)))


@click.command()
@click.argument("sequence_name", metavar="SEQUENCE")
@click.option("--record", "record_id", required=True, metavar="ID")
@click.option("--as", "as_user", default=None, metavar="USER", help="The enrolling user (default: the record's owner).")
@click.option("--start", metavar="DATETIME", help="When the enrollment would start (default: now).")
@output.output_format()
@options.rules_option
@options.db_option
def preview(sequence_name: str, record_id: str, as_user: str | None, start: str | None, fmt: str, rules_dir: str,
            db_url: str | None) -> None:  # fmt: skip
    """Show every step of a sequence for one record, before enrolling: planned time, subject, body, problems.

    Times after a task step assume its task is completed when it is created.
    Exit status 1 when a step would be blocked or enrolling would be refused.

    \b
    Examples:
      outreach preview inbound-nurture --record L1 --as anna
      outreach preview inbound-nurture --record L1 --format json
    """
    from outreach.app import enrolling, sending

    ruleset = options.load_rules(rules_dir)
    if sequence_name not in ruleset.sequences:
        raise click.BadParameter(f"no sequence {sequence_name!r}", param_hint="SEQUENCE")
    sequence = ruleset.sequences[sequence_name]
    try:
        now = options.parse_when(start, now_=options.now()) if start else options.now()
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, param_hint="--start") from None
    _check_user(ruleset, as_user)
    try:
        links = sending.preview_links(ruleset)
    except sending.WeakSecret as exc:
        raise click.ClickException(str(exc)) from None

    async def go(store: Store) -> enrolling.Preview:
        record = await store.get_record(record_id)
        return await enrolling.preview(store, ruleset, record, sequence, enrolled_by=as_user, start=now,
                                       links=links)  # fmt: skip

    planned = options.on_store(db_url, ruleset, go)
    problems = sum(isinstance(d, seq.Block) for _at, _i, d in planned.steps) + bool(planned.refusal)
    if fmt == "json":
        click.echo(options.dumps({
            "sequence": sequence_name, "record": record_id, "enrolled_by": as_user, "start": now,
            "refusal": planned.refusal, "steps": [_planned_step(sequence, at, i, d) for at, i, d in planned.steps],
            "problems": problems,
        }))  # fmt: skip
        sys.exit(1 if problems else 0)
    if planned.refusal:
        click.echo(f"enrolling {record_id} would be refused: {planned.refusal}")
    for at, index, decision in planned.steps:
        click.echo(f"\nstep {index + 1} {sequence.steps[index].id} at {at.strftime('%a %Y-%m-%d %H:%M UTC')}")
        if isinstance(decision, seq.SendEmail):
            click.echo(f"  email from {decision.sender.name} <{decision.sender.email}> to {decision.to}")
            click.echo(f"  subject: {decision.rendered.subject}")
            click.echo("  " + decision.rendered.text.strip().replace("\n", "\n  "))
        elif isinstance(decision, seq.CreateTask):
            click.echo(
                f"  task for {decision.owner}: {decision.subject} ({decision.type}), due {options.when(decision.due_at)}"
            )
        else:
            click.echo(f"  BLOCKED: {decision.reason}")
    steps = output.plural(len(sequence.steps), "step")
    click.echo(f"\n{sequence_name} for {record_id}: {steps}, {output.plural(problems, 'problem')}")
    sys.exit(1 if problems else 0)


def _planned_step(sequence: model.Sequence, at: dt.datetime, index: int,
                  decision: seq.SendEmail | seq.CreateTask | seq.Block) -> dict[str, Any]:  # fmt: skip
    """A step of `preview --format json`."""
    step = {"step": sequence.steps[index].id, "number": index + 1, "at": at}
    if isinstance(decision, seq.SendEmail):
        return {**step, "kind": "email", "from": decision.sender.email, "from_name": decision.sender.name,
                "to": decision.to, "subject": decision.rendered.subject, "text": decision.rendered.text,
                "html": decision.rendered.html}  # fmt: skip
    if isinstance(decision, seq.CreateTask):
        return {**step, "kind": "task", "owner": decision.owner, "subject": decision.subject, "type": decision.type,
                "due_at": decision.due_at}  # fmt: skip
    return {**step, "kind": "blocked", "reason": decision.reason}


@click.group()
def sequences() -> None:
    """Sequences: list and statistics.

    \b
    Examples:
      outreach sequences list
      outreach sequences stats inbound-nurture
    """


async def _stats(store: Store, name: str) -> dict[str, Any]:
    rows_ = await store.enrollments(sequence=name)
    by = {s: sum(1 for r in rows_ if r["status"] == s) for s in ("active", "blocked", "completed", "stopped")}
    replied = sum(1 for r in rows_ if r["status"] == "stopped" and r["reason"] == "replied")
    ended = by["completed"] + replied  # who got to the end, or replied on the way (as Zendesk Sell counts)
    return {"sequence": name, "enrolled": len(rows_), **by, "replied": replied,
            "reply_rate": round(replied / ended, 3) if ended else None,
            "enrolled_by": sorted({r["enrolled_by"] for r in rows_})}  # fmt: skip


@sequences.command("list")
@output.output_format()
@options.rules_option
@options.db_option
def sequences_list(fmt: str, rules_dir: str, db_url: str | None) -> None:
    """Every sequence with its steps and enrollment counts.

    \b
    Examples:
      outreach sequences list
      outreach sequences list --json
    """
    ruleset = options.load_rules(rules_dir)

    async def go(store: Store) -> list[dict[str, Any]]:
        return [await _stats(store, name) for name in ruleset.sequences]

    found = options.on_store(db_url, ruleset, go)
    for s in found:
        s["steps"] = [step.id for step in ruleset.sequences[s["sequence"]].steps]
    if fmt == "json":
        click.echo(options.dumps(found))
        return
    lines = [[s["sequence"], str(len(s["steps"])), str(s["enrolled"]), str(s["active"]), str(s["blocked"]),
              str(s["completed"]), str(s["stopped"])] for s in found]  # fmt: skip
    columns = ["sequence", "steps", "enrolled", "active", "blocked", "completed", "stopped"]
    output.print_tables(output.table(columns, lines, title=output.plural(len(found), "sequence"), numbers=columns[1:]))


@sequences.command("stats")
@click.argument("name")
@output.output_format()
@options.rules_option
@options.db_option
def sequences_stats(name: str, fmt: str, rules_dir: str, db_url: str | None) -> None:
    """Active, completed, reply rate (repliers among those who completed or replied, with the count), enrolled, steps.

    \b
    Example:
      outreach sequences stats inbound-nurture --json
    """
    ruleset = options.load_rules(rules_dir)
    if name not in ruleset.sequences:
        raise click.BadParameter(f"no sequence {name!r}", param_hint="NAME")
    s = options.on_store(db_url, ruleset, lambda store: _stats(store, name))
    s["steps"] = [step.id for step in ruleset.sequences[name].steps]
    if fmt == "json":
        click.echo(options.dumps(s))
        return
    rate = "n/a" if s["reply_rate"] is None else f"{s['reply_rate']:.0%} ({s['replied']} replied)"
    click.echo(f"{name}: {s['enrolled']} enrolled by {', '.join(s['enrolled_by']) or 'no one'}; "
               f"{s['active']} active, {s['blocked']} blocked, {s['completed']} completed, {s['stopped']} stopped; "
               f"reply rate {rate}; steps {', '.join(s['steps'])}")  # fmt: skip


@click.group()
def outbox() -> None:
    """The outbox: messages and their sending state.

    \b
    Examples:
      outreach outbox list --state unknown
      outreach outbox show 42
      outreach outbox requeue 42
    """


@outbox.command("list")
@click.option("--state", type=click.Choice(["queued", "sending", "sent", "deferred", "failed", "unknown", "bounced"]))
@click.option("--record", "record_id", metavar="ID")
@output.output_format()
@options.rules_option
@options.db_option
def outbox_list(state: str | None, record_id: str | None, fmt: str, rules_dir: str, db_url: str | None) -> None:
    """List messages with their state (unknown: being sent when the daemon stopped; not re-sent by itself).

    \b
    Examples:
      outreach outbox list --state unknown
      outreach outbox list --record L1 --json
    """
    ruleset = options.load_rules(rules_dir)
    found = options.on_store(db_url, ruleset, lambda s: s.outbox(state=state, record_id=record_id))
    if fmt == "json":
        click.echo(options.dumps(found))
        return
    lines = [[str(m["id"]), m["state"], options.when(m["sent_at"] or m["created_at"]), m["recipient"], m["subject"],
              m["last_error"] or ""] for m in found]  # fmt: skip
    header = ["id", "state", "sent or queued", "recipient", "subject", "last error"]
    output.print_tables(output.table(header, lines, title=output.plural(len(found), "message"),
                                     free=["subject", "last error"]))  # fmt: skip


# The columns `outbox show --format json` prints, in this order, before the message itself.
_SHOWN = ("id", "state", "attempts", "last_error", "created_at", "next_attempt_at", "sent_at", "sender", "recipient",
          "subject", "message_id", "record_id", "enrollment_id", "step_id", "campaign", "process", "template",
          "daemon_id")  # fmt: skip


@outbox.command("show")
@click.argument("message_id", type=int)
@output.output_format()
@options.rules_option
@options.db_option
def outbox_show(message_id: int, fmt: str, rules_dir: str, db_url: str | None) -> None:
    """Print a message as it was (or will be) sent: its headers and body, byte for byte; its state on stderr.

    The message was rendered once, when it was queued (and DKIM-signed then, if
    Settings.dkim is set); the transport hands over these bytes as they are.

    \b
    Examples:
      outreach outbox show 42
      outreach outbox show 42 > message.eml
      outreach outbox show 42 --json
    """
    from outreach.store import StoreError

    ruleset = options.load_rules(rules_dir)

    async def go(store: Store) -> dict[str, Any]:
        found = await store.outbox_message(message_id)
        if found is None:
            raise StoreError(f"no message {message_id}")
        return found

    m = options.on_store(db_url, ruleset, go)
    raw: bytes = m["message"]
    if fmt == "json":
        # outreach writes 7-bit messages (quoted-printable or base64 bodies): the text is the bytes, exactly
        click.echo(options.dumps({**{k: m[k] for k in _SHOWN}, "message": raw.decode("utf-8", "replace")}))
        return
    click.echo(_state_line(m), err=True)
    click.echo(raw, nl=False)


def _state_line(m: dict[str, Any]) -> str:
    """`message 42: sent 2026-11-23 16:30 UTC, 1 attempt, queued 2026-11-23 16:29 UTC`, the next attempt of one
    queued or deferred, and the last error if there was one."""
    facts = [f"{m['state']} {options.when(m['sent_at'])}" if m["sent_at"] else m["state"],
             output.plural(m["attempts"], "attempt")]  # fmt: skip
    if m["next_attempt_at"] and m["state"] in ("queued", "deferred"):
        facts.append(f"next attempt {options.when(m['next_attempt_at'])}")
    facts.append(f"queued {options.when(m['created_at'])}")
    if m["last_error"]:
        facts.append(f"last error: {m['last_error']}")
    return f"message {m['id']}: " + ", ".join(facts)


def _since(value: str, now: dt.datetime) -> dt.datetime:
    """--since: a date and time with an offset, or a duration ago ("2 hours")."""
    try:
        return timing.parse_instant(value)
    except ValueError:
        pass
    try:
        return now - timing.parse_duration(value).as_timedelta()
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a date and time with an offset nor a duration",
                                 param_hint="--since") from None


@outbox.command("requeue")
@click.argument("message_ids", metavar="[ID]...", nargs=-1, type=int)
@click.option("--state", "states", multiple=True, type=click.Choice(["unknown", "failed"]),
              help="Only messages in this state (repeatable; default: both).")  # fmt: skip
@click.option("--since", metavar="DATETIME", help="Only messages queued at or after this time (or a duration ago: "
                                                  "`2 hours`).")  # fmt: skip
@click.option("--to-domain", metavar="DOMAIN", help="Only messages to addresses at this domain.")
@click.option("--dry-run", is_flag=True, help="Say what would be sent again, and send nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before sending again (for scripts).")
@options.rules_option
@options.db_option
def outbox_requeue(message_ids: tuple[int, ...], states: tuple[str, ...], since: str | None, to_domain: str | None,
                   dry_run: bool, yes: bool, rules_dir: str, db_url: str | None) -> None:  # fmt: skip
    """Send messages in state unknown or failed again: an operator's decision (an unknown one may arrive twice).

    Pick messages by id, by state, by when they were queued, by the recipient's
    domain, or by several of these (all must hold). The command first says what
    it would send again (how many, by state and by domain), then asks; --yes
    does not ask, --dry-run stops after saying. A message sent again gets a
    fresh count of attempts.

    \b
    Examples:
      outreach outbox requeue 42 43
      outreach outbox requeue --state unknown --since "2 hours" --dry-run
      outreach outbox requeue --state failed --to-domain example.org --yes
    """
    from outreach.app import outbox as app_outbox

    if not (message_ids or states or since or to_domain):
        raise click.UsageError("say which messages: IDs, --state, --since or --to-domain")
    ruleset = options.load_rules(rules_dir)
    after = _since(since, options.now()) if since is not None else None

    async def look(store: Store) -> app_outbox.Requeue:
        return await app_outbox.plan(store, ids=message_ids, states=states or app_outbox.STATES, since=after,
                                     to_domain=to_domain)  # fmt: skip

    chosen = options.on_store(db_url, ruleset, look)
    for missing in chosen.missing:
        click.echo(f"no message {missing} in state unknown or failed: left alone", err=True)
    if not chosen.messages:
        click.echo("no message to send again")
        sys.exit(1 if chosen.missing else 0)
    states_text = ", ".join(f"{n:,} {state}" for state, n in chosen.by_state.items())
    domains = list(chosen.by_domain.items())
    domains_text = ", ".join(f"{domain} {n:,}" for domain, n in domains[:5]) + (", ..." if len(domains) > 5 else "")
    times = [m["created_at"] for m in chosen.messages]
    first, last = options.when(min(times)), options.when(max(times))
    click.echo(f"{output.plural(len(chosen.messages), 'message')} to send again ({states_text}), queued "
               f"{first if first == last else f'{first} to {last}'}, to {domains_text}")
    if "unknown" in chosen.by_state:
        click.echo("an unknown message may have reached its recipient already: sent again, it may arrive twice")
    if dry_run:
        return
    if not yes:
        click.confirm("send them again?", abort=True, err=True)

    async def go(store: Store) -> int:
        return await app_outbox.requeue(store, chosen)

    done = options.on_store(db_url, ruleset, go)
    click.echo(f"{output.plural(done, 'message')} queued again")
