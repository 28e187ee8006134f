"""The `outreach` command line."""

from __future__ import annotations

import datetime as dt
import os
import sys

import click

from outreach import __version__
from outreach.rules import diagnostics, model, schemas, summary, timing
from outreach.rules import validate as rules_validate
from outreach.rules.diagnostics import Severity

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="outreach")
def main() -> None:
    """Sales outreach rules as code: sequences, bulk campaigns and stage-duration reminders.

    Rules are YAML files in git. Start with `outreach validate rules/`.
    Shell completion (bash): eval "$(_OUTREACH_COMPLETE=bash_source outreach)"; see docs/cli.md.
    """


def _parse_now(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        return timing.parse_instant(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, file_okay=True, dir_okay=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="text: file:line:col lines and a summary; json: a list of objects; github: annotations.",
)
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--summary", "show_summary", is_flag=True, help="After a clean run, list every definition (text only).")
@click.option(
    "--jobs",
    type=click.IntRange(min=0),
    default=0,
    show_default="0: one per CPU",
    help="Processes that read and parse large rule sets (200 files or more).",
)
@click.option(
    "--now",
    callback=_parse_now,
    metavar="DATETIME",
    help="The time to judge schedules against (default: now), e.g. 2026-11-23T08:00:00Z.",
)
def validate(paths: tuple[str, ...], fmt: str, strict: bool, show_summary: bool, jobs: int, now: dt.datetime) -> None:
    """Check rule files: YAML, schema, references, templates and limits.

    PATHS are rule directories or files (default: rules). Every *.yaml and
    *.yml file below a directory is read. Exit status: 0 clean, 1 errors
    (or warnings with --strict), 2 usage errors.

    \b
    Examples:
      outreach validate rules/
      outreach validate --format github rules/
      outreach validate --strict --summary rules/
    """
    targets = list(paths) or ["rules"]
    if not paths and not os.path.isdir("rules"):
        raise click.UsageError("no PATHS given and there is no rules/ directory here")
    result = rules_validate.validate(targets, now=now, jobs=jobs or os.cpu_count() or 1)
    diags = list(result.diagnostics)
    if strict:
        diags = [d if d.severity is Severity.ERROR else _as_error(d) for d in diags]
    errors = diagnostics.count(diags, Severity.ERROR)
    warnings = diagnostics.count(diags, Severity.WARNING)
    if fmt == "json":
        click.echo(diagnostics.format_json(diags))
    elif fmt == "github":
        if diags:
            click.echo(diagnostics.format_github(diags))
    else:
        if diags:
            click.echo(diagnostics.format_text(diags))
        where = ", ".join(targets)
        if errors or warnings:
            click.echo(
                f"{where}: {_plural(errors, 'error')}, {_plural(warnings, 'warning')} "
                f"in {_plural(len(result.files), 'file')} ({_plural(result.documents, 'document')})"
            )
        else:
            click.echo(
                f"{where}: OK, {_plural(len(result.files), 'file')}, "
                f"{_plural(result.documents, 'definition')}, no problems"
            )
        if show_summary and result.ruleset is not None and not errors:
            _print_summary(result.ruleset)
    sys.exit(1 if errors else 0)


def _as_error(d: diagnostics.Diagnostic) -> diagnostics.Diagnostic:
    return diagnostics.Diagnostic(d.file, d.line, d.column, Severity.ERROR, d.code, d.message, d.path)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _print_summary(ruleset: model.RuleSet) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Definitions")
    table.add_column("kind", no_wrap=True, min_width=12)
    table.add_column("name", overflow="fold", max_width=32)
    table.add_column("details", overflow="fold", ratio=3)
    table.add_column("where", overflow="fold", ratio=2)
    table.add_column("hash", no_wrap=True, min_width=8)
    for row in summary.rows(ruleset):
        table.add_row(row.kind, row.name, row.details, row.where, row.hash[:8])
    Console(width=max(120, Console().width)).print(table)


@main.command()
@click.argument("kind", required=False, type=click.Choice(schemas.KINDS, case_sensitive=False))
@click.option(
    "--draft",
    type=click.Choice(["2020-12", "07"]),
    default="2020-12",
    show_default=True,
    help="2020-12 is what validate checks; 07 is for editors whose YAML support knows only draft-07.",
)
@click.option(
    "--write",
    "write_dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Write every schema (both drafts) into DIR instead of printing one.",
)
def schema(kind: str | None, draft: str, write_dir: str | None) -> None:
    """Print the JSON Schema of a rule kind, or write them all.

    \b
    Examples:
      outreach schema Sequence
      outreach schema --draft 07 Campaign
      outreach schema --write schemas/
    """
    if write_dir is not None:
        for rel, text in schemas.all_files().items():
            path = os.path.join(write_dir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            click.echo(path)
        return
    if kind is None:
        for k in schemas.KINDS:
            click.echo(f"{k:<14} {schemas.file_name(k)}")
        return
    canonical = next(k for k in schemas.KINDS if k.lower() == kind.lower())
    click.echo(schemas.dumps(schemas.schema(canonical, draft)), nl=False)


from outreach.cli import doctor as _doctor_command  # noqa: E402 - commands of the group defined above
from outreach.cli import processes as _process_commands  # noqa: E402
from outreach.cli import records as _record_commands  # noqa: E402
from outreach.cli import ruletest as _test_command  # noqa: E402
from outreach.cli import sequences as _sequence_commands  # noqa: E402
from outreach.cli import simulate as _simulate_command  # noqa: E402
from outreach.cli import status as _status_command  # noqa: E402
from outreach.cli import store as _store_commands  # noqa: E402
from outreach.cli import suppressions as _suppression_commands  # noqa: E402
from outreach.cli import web as _web_command  # noqa: E402

main.add_command(_store_commands.db)
main.add_command(_store_commands.plan)
main.add_command(_store_commands.apply)
main.add_command(_record_commands.records)
main.add_command(_record_commands.tasks)
main.add_command(_record_commands.appointments)
main.add_command(_doctor_command.doctor)
main.add_command(_simulate_command.simulate)
main.add_command(_test_command.test)
for _command in (_sequence_commands.run, _sequence_commands.enroll, _sequence_commands.enrollments,
                 _sequence_commands.preview, _sequence_commands.sequences, _sequence_commands.outbox):  # fmt: skip
    main.add_command(_command)
main.add_command(_process_commands.processes)
main.add_command(_suppression_commands.suppressions)
main.add_command(_web_command.web)
main.add_command(_status_command.status)

if __name__ == "__main__":  # pragma: no cover
    main()
