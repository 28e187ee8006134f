"""Commands on CRM data: records (import, list, show, set, convert, delete), tasks and appointments."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from outreach.app import records as app_records
    from outreach.app import reminding
    from outreach.store import Store, rows

from outreach.cli import options, output
from outreach.cli import processes as process_commands
from outreach.engine import sequences as seq
from outreach.rules import criteria


@click.group()
def records() -> None:
    """CRM records: import, list, show, and the changes the engine reacts to.

    \b
    Examples:
      outreach records import leads.csv --type lead
      outreach records list --where stage=New
      outreach records set L7 stage=Contacted
    """


@records.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--type", "default_type", metavar="MODULE", help="Record type for rows without a `type` column.")
@click.option("--update", is_flag=True, help="Update records that exist (matched by id, else by email).")
@click.option(
    "--skip-invalid", is_flag=True, help="Import the good rows and list the bad ones (default: all or nothing)."
)
@options.rules_option
@options.db_option
def import_(file: str, default_type: str | None, update: bool, skip_invalid: bool, rules_dir: str,
            db_url: str | None) -> None:  # fmt: skip
    """Import records from CSV or JSONL, in one transaction per file.

    Every bad row is reported with its line and reason (invalid email, unknown
    field, wrong type, duplicate id). Without --skip-invalid a file with a bad
    row imports nothing.

    \b
    Examples:
      outreach records import leads.csv --type lead
      outreach records import crm-export.jsonl --update
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from outreach.app import importing as import_files

    ruleset = options.load_rules(rules_dir)
    settings = ruleset.settings
    now = options.now()
    total = _count_rows(file)
    try:
        items: Iterator[Any] = import_files.read_rows(
            file, fields=settings.fields, modules=settings.all_modules, default_type=default_type,
            owners=list(settings.users) or None,
        )  # fmt: skip
        first = next(items, None)
    except import_files.ImportFileError as exc:
        raise click.ClickException(f"{file}: {exc}") from None

    def all_items() -> Iterator[Any]:
        if first is not None:
            yield first
        yield from items

    async def go(store: Store) -> rows.ImportResult:
        with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=True, disable=not sys.stderr.isatty()) as bar:  # fmt: skip
            task = bar.add_task("rows", total=total)
            return await store.import_records(
                all_items(), now=now, update=update, skip_invalid=skip_invalid,
                progress=lambda n: bar.update(task, completed=n),
            )  # fmt: skip

    try:
        result = options.on_store(db_url, ruleset, go)
    except import_files.ImportFileError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    for problem in result.problems:
        click.echo(f"{file}:{problem.line}: {output.visible(problem.message)}", err=True)
    if result.problem_count > len(result.problems):
        click.echo(f"{file}: ... and {result.problem_count - len(result.problems)} more bad rows", err=True)
    if not result.committed:
        click.echo(f"{file}: {output.plural(result.problem_count, 'bad row')}; nothing was imported "
                   "(fix them, or use --skip-invalid to import the good rows)", err=True)  # fmt: skip
        sys.exit(1)
    skipped = f", {output.plural(result.problem_count, 'bad row')} skipped" if result.problem_count else ""
    click.echo(f"{file}: {result.inserted} imported, {result.updated} updated{skipped}")


def _count_rows(path: str) -> int | None:
    """Lines in the file (the progress bar's total); None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return None
    return max(lines - (1 if path.endswith(".csv") else 0), 0)


@records.command("list")
@click.option(
    "--where",
    "where_pairs",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Only records whose field equals the value (repeatable).",
)
@click.option("--view", "view_name", metavar="NAME", help="Only the records of a View from the rules.")
@click.option("--type", "module", metavar="MODULE", help="Only records of this type.")
@click.option("--not-enrolled", is_flag=True, help="Only records in no sequence: no active or blocked enrollment "
              "(those that completed or left one count as in none).")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--columns",
    metavar="COLUMNS",
    default="",
    help="Extra columns, comma-separated: running_sequences, completed_sequences, next_email.",
)
@output.output_format()
@options.rules_option
@options.db_option
def list_(where_pairs: tuple[str, ...], view_name: str | None, module: str | None, not_enrolled: bool, limit: int,
          columns: str, fmt: str, rules_dir: str, db_url: str | None) -> None:  # fmt: skip
    """List records, optionally by field values, a saved view or being in no sequence, with their sequences if asked.

    The table's title says how many matched: `first 100 of 20,000 records` when --limit left some out.

    \b
    Examples:
      outreach records list --where stage=New --where country=DE
      outreach records list --where stage=New --not-enrolled
      outreach records list --view dach-qualified --json
      outreach records list --columns running_sequences,completed_sequences,next_email
    """
    from outreach.app import enrolling
    from outreach.app import records as app_records

    extra = [c for c in columns.split(",") if c]
    unknown = sorted(set(extra) - set(_SEQUENCE_COLUMNS))
    if unknown:
        raise click.BadParameter(f"unknown {'column' if len(unknown) == 1 else 'columns'} {', '.join(unknown)} "
                                 f"(columns: {', '.join(_SEQUENCE_COLUMNS)})", param_hint="--columns")  # fmt: skip
    ruleset = options.load_rules(rules_dir)
    where = options.where_from_pairs(where_pairs, ruleset.settings)
    if view_name is not None:
        if view_name not in ruleset.views:
            raise click.BadParameter(f"no view {view_name!r} (views: {', '.join(ruleset.views) or 'none'})",
                                     param_hint="--view")  # fmt: skip
        view = ruleset.views[view_name]
        where = criteria.All(tuple(x for x in (where, view.where) if x is not None))
        module = module or view.module

    async def go(store: Store) -> tuple[app_records.Page, list[dict[str, Any]]]:
        page = await app_records.page(store, where, now=options.now(), module=module, limit=limit,
                                      not_enrolled=not_enrolled)  # fmt: skip
        enrolled = await store.enrollments(record_ids=[r.id for r in page.records]) if extra else []
        return page, enrolled

    page, enrolled = options.on_store(db_url, ruleset, go)
    found = page.records
    by_record: dict[str, dict[str, Any]] = {}
    for r in found:
        mine = [enrolling.enrollment_of(e) for e in enrolled if e["record_id"] == r.id]
        _counts, lines = seq.widget(mine, ruleset)
        nexts = [line.next_email for line in lines if line.next_email is not None]
        by_record[r.id] = {
            "running_sequences": [line.sequence for line in lines if line.status in seq.LIVE],
            "completed_sequences": [line.sequence for line in lines if line.status is seq.Status.COMPLETED],
            "next_email": min(nexts) if nexts else None,
        }
    if fmt == "json":
        click.echo(options.dumps([{**r.as_dict(), **{c: by_record[r.id][c] for c in extra}} for r in found]))
        return
    title = output.plural(page.total, "record")
    if page.cut:
        title = f"first {len(found):,} of {title}"
    sequence_columns = [c.replace("_", " ") for c in extra]
    cells = []
    for r in found:
        more = [", ".join(v) if isinstance(v, list) else options.when(v) for v in (by_record[r.id][c] for c in extra)]
        cells.append([r.id, r.type, r.email or "", r.owner or "", r.stage or "", options.when(r.stage_entered_at),
                      *more])  # fmt: skip
    header = ["id", "type", "email", "owner", "stage", "in stage since", *sequence_columns]
    lists = [c for c in sequence_columns if c != "next email"]  # sequence names, folded between them
    output.print_tables(output.table(header, cells, title=title, free=lists))


_SEQUENCE_COLUMNS = ("running_sequences", "completed_sequences", "next_email")


@records.command("show")
@click.argument("record_id")
@click.option("--now", "at", metavar="DATETIME", help="Judge stage durations as of this time (default: now).")
@output.output_format()
@options.rules_option
@options.db_option
def show(record_id: str, at: str | None, fmt: str, rules_dir: str, db_url: str | None) -> None:
    """Show one record: its fields, open tasks, sequences, stage durations and activity.

    \b
    Examples:
      outreach records show L7
      outreach records show L7 --now 2026-11-24T12:00:00Z
    """
    from outreach.app import enrolling, reminding

    ruleset = options.load_rules(rules_dir)
    now = options.parse_when(at, now_=options.now()) if at else options.now()

    async def go(store: Store) -> tuple[rows.Record, list[rows.Task], list[rows.Event], list[dict[str, Any]],
                                        list[reminding.Standing]]:  # fmt: skip
        record = await store.get_record(record_id)
        standing = [s for p in ruleset.processes.values()
                    for s in await reminding.standings(store, ruleset, p, now, record_ids=[record_id], everyone=True)]  # fmt: skip
        return (record, await store.list_tasks(record_id), await store.events(record_id),
                await store.enrollments(record_id=record_id), standing)  # fmt: skip

    record, tasks_, events, enrolled, standing = options.on_store(db_url, ruleset, go)
    counts, lines = seq.widget([enrolling.enrollment_of(e) for e in enrolled], ruleset)
    if fmt == "json":
        click.echo(options.dumps({"record": record.as_dict(), "tasks": [t.__dict__ for t in tasks_],
                           "sequences": {"counts": counts, "enrollments": [
                               {**line.__dict__, "status": str(line.status)} for line in lines]},
                           "stage_durations": [process_commands.overdue_json(s, now) for s in standing],
                           "activity": [e.__dict__ for e in events]}))  # fmt: skip
        return
    fields = [[name, options.when(value) if isinstance(value, dt.datetime) else str(value)]
              for name, value in record.as_dict().items() if value is not None]  # fmt: skip
    tables = [output.table(["field", "value"], fields, title=f"record {record.id}", free=["value"])]
    if tasks_:
        tasks_rows = [[str(t.id), t.subject, t.type, options.when(t.due_at), t.owner or ""] for t in tasks_]
        tables.append(output.table(["id", "subject", "type", "due", "owner"], tasks_rows, title="open tasks",
                                   free=["subject"]))  # fmt: skip
    widget = [[str(line.enrollment), line.sequence, str(line.status), line.last_step or "", line.detail]
              for line in lines]  # fmt: skip
    tables.append(output.table(["id", "sequence", "status", "last step", "details"], widget, free=["details"],
                               title=f"sequences: {counts['active']} active, {counts['blocked']} blocked, "
                                     f"{counts['completed']} completed"))  # fmt: skip
    if standing:  # the record follows a sales process
        tables.append(output.table(["process", "stage", "in stage", "max", "overdue since", "next reminder"],
                                   process_commands.stage_durations(standing, now), title="stage durations",
                                   free=["in stage", "overdue since", "next reminder"]))  # fmt: skip
    activity = []
    for e in events:
        if e.kind == "sequence_email":  # mail sent by a sequence is marked as such
            what, details = "sequence mail", f"{e.data.get('sequence')} / {e.data.get('step')}: {e.data.get('subject')}"
        elif e.kind == "reminder_sent":
            what = "reminder"
            details = f"{e.data.get('process')} / {e.data.get('stage')}: reminder {e.data.get('reminder')} to {e.data.get('to')}"
        else:
            what, details = e.kind.replace("_", " "), ", ".join(f"{k}={v}" for k, v in e.data.items())
        activity.append([options.when(e.at), what, details, e.source])
    tables.append(output.table(["when", "what", "details", "source"], activity, title="activity", free=["details"]))
    output.print_tables(*tables)


@records.command("set")
@click.argument("record_id")
@click.argument("assignments", nargs=-1, required=True, metavar="FIELD=VALUE...")
@options.rules_option
@options.db_option
def set_(record_id: str, assignments: tuple[str, ...], rules_dir: str, db_url: str | None) -> None:
    """Change fields of a record. A stage change records the time and a stage_changed event.

    \b
    Examples:
      outreach records set L7 stage=Contacted
      outreach records set L7 score=82 purchased=true
    """
    from outreach.app import events
    from outreach.app import importing as import_files

    ruleset = options.load_rules(rules_dir)
    fields = ruleset.settings.fields
    values: dict[str, object] = {}
    for pair in assignments:
        field, sep, text = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: use FIELD=VALUE", param_hint="FIELD=VALUE")
        if field not in fields or field in ("id", "type", "created_at"):
            settable = sorted(set(fields) - {"id", "type", "created_at"})
            raise click.BadParameter(f"{field!r} cannot be set (fields: {', '.join(settable)})",
                                     param_hint="FIELD=VALUE")  # fmt: skip
        try:
            values[field] = import_files.convert_text(fields[field], text) if text else None
        except ValueError as exc:
            raise click.BadParameter(f"{pair!r}: {exc}", param_hint="FIELD=VALUE") from None
    owners = list(ruleset.settings.users) or None
    try:  # the checks of `records import` (events.set_fields makes them too): a bad address is refused here
        import_files.checked_fields(values, owners=owners)
    except import_files.InvalidValue as exc:
        raise click.BadParameter(output.visible(exc), param_hint="FIELD=VALUE") from None

    record = options.on_store(db_url, ruleset, lambda s: events.set_fields(s, record_id, values, now=options.now(),
                                                                           owners=owners))  # fmt: skip
    click.echo(output.visible(f"record {record.id}: " + ", ".join(f"{k}={record.value(k)}" for k in values)))


@records.command("convert")
@click.argument("record_id")
@options.rules_option
@options.db_option
def convert(record_id: str, rules_dir: str, db_url: str | None) -> None:
    """Convert a lead to a contact (this ends the lead's sequences).

    \b
    Example:
      outreach records convert L7
    """
    from outreach.app import events

    ruleset = options.load_rules(rules_dir)

    record = options.on_store(db_url, ruleset, lambda s: events.convert(s, record_id, now=options.now()))
    click.echo(f"record {record.id} is now a {record.type}")


@records.command("delete")
@click.argument("record_id")
@options.rules_option
@options.db_option
def delete(record_id: str, rules_dir: str, db_url: str | None) -> None:
    """Delete a record (kept for history; it leaves lists, views and sequences).

    \b
    Example:
      outreach records delete L7
    """
    from outreach.app import events

    ruleset = options.load_rules(rules_dir)

    options.on_store(db_url, ruleset, lambda s: events.delete(s, record_id, now=options.now()))
    click.echo(f"record {record_id} deleted")


@click.group()
def tasks() -> None:
    """Tasks of records: add, list, complete (a sequence waits for its task step's task).

    \b
    Examples:
      outreach tasks add --record L7 --subject "Call Jo" --type call --due 4h
      outreach tasks complete 12
    """


@tasks.command("add")
@click.option("--record", "record_id", required=True, metavar="ID")
@click.option("--subject", required=True)
@click.option(
    "--type", "task_type", type=click.Choice(["call", "email", "todo", "meeting"]), default="todo", show_default=True
)
@click.option(
    "--priority", type=click.Choice(["highest", "high", "normal", "low", "lowest"]), default="normal", show_default=True
)
@click.option("--due", metavar="WHEN", help="A date and time with offset, or a duration from now (4h, 2 days).")
@click.option("--owner", metavar="USER", help="The user who does it.")
@options.rules_option
@options.db_option
def tasks_add(record_id: str, subject: str, task_type: str, priority: str, due: str | None, owner: str | None,
              rules_dir: str, db_url: str | None) -> None:  # fmt: skip
    """Add a task for a record (this also stops reminders for an overdue lead).

    \b
    Example:
      outreach tasks add --record L7 --subject "Call Jo" --type call --due 4h --owner anna
    """
    from outreach.app import events

    ruleset = options.load_rules(rules_dir)
    now = options.now()
    due_at = options.parse_when(due, now_=now) if due else None
    if owner is not None and owner not in ruleset.settings.users:
        raise click.BadParameter(f"no user {owner!r}", param_hint="--owner")

    task = options.on_store(
        db_url,
        ruleset,
        lambda s: events.add_task(
            s, record_id, subject, type=task_type, priority=priority, owner=owner, due_at=due_at, now=now
        ),
    )
    click.echo(
        f"task {task.id} added to record {record_id}" + (f", due {options.when(task.due_at)}" if task.due_at else "")
    )


@tasks.command("list")
@click.option("--record", "record_id", metavar="ID", help="Only this record's tasks.")
@click.option("--all", "include_done", is_flag=True, help="Also completed tasks.")
@output.output_format()
@options.rules_option
@options.db_option
def tasks_list(record_id: str | None, include_done: bool, fmt: str, rules_dir: str, db_url: str | None) -> None:
    """List open tasks (by due date).

    \b
    Example:
      outreach tasks list --record L7 --all
    """
    ruleset = options.load_rules(rules_dir)

    found = options.on_store(db_url, ruleset, lambda s: s.list_tasks(record_id, open_only=not include_done))
    if fmt == "json":
        click.echo(options.dumps([t.__dict__ for t in found]))
        return
    lines = [[str(t.id), t.record_id, t.subject, t.type, options.when(t.due_at), t.owner or "",
              options.when(t.completed_at)] for t in found]  # fmt: skip
    output.print_tables(output.table(["id", "record", "subject", "type", "due", "owner", "done"], lines,
                                     title=output.plural(len(found), "task"), free=["subject"]))  # fmt: skip


@tasks.command("complete")
@click.argument("task_id", type=int)
@options.rules_option
@options.db_option
def tasks_complete(task_id: int, rules_dir: str, db_url: str | None) -> None:
    """Mark a task done (a sequence waiting on it moves on).

    \b
    Example:
      outreach tasks complete 12
    """
    from outreach.app import events

    ruleset = options.load_rules(rules_dir)

    task = options.on_store(db_url, ruleset, lambda s: events.complete_task(s, task_id, now=options.now()))
    click.echo(f"task {task.id} completed")


@click.group()
def appointments() -> None:
    """Appointments with records (a future appointment stops reminders for an overdue lead).

    \b
    Example:
      outreach appointments add --record L7 --starts 2026-12-01T10:00:00+01:00 --subject Demo
    """


@appointments.command("add")
@click.option("--record", "record_id", required=True, metavar="ID")
@click.option("--starts", required=True, metavar="WHEN", help="A date and time with offset, or a duration from now.")
@click.option("--subject", default="Appointment", show_default=True)
@options.rules_option
@options.db_option
def appointments_add(record_id: str, starts: str, subject: str, rules_dir: str, db_url: str | None) -> None:
    """Enter an appointment for a record.

    \b
    Example:
      outreach appointments add --record L7 --starts 2026-12-01T10:00:00+01:00 --subject Demo
    """
    from outreach.app import events

    ruleset = options.load_rules(rules_dir)
    now = options.now()
    starts_at = options.parse_when(starts, now_=now)

    appointment = options.on_store(
        db_url, ruleset, lambda s: events.add_appointment(s, record_id, starts_at, subject, now=now)
    )
    click.echo(f"appointment {appointment.id} with record {record_id} at {options.when(appointment.starts_at)}")
