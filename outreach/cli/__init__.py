"""The `outreach` command line."""

from __future__ import annotations

import datetime as dt
import os
import sys
from typing import TYPE_CHECKING

import click

from outreach import __version__
from outreach.cli import output
from outreach.rules import diagnostics, model, schemas, summary, timing
from outreach.rules import validate as rules_validate
from outreach.rules.diagnostics import Severity

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Outreach(click.Group):
    """The group whose commands (but validate and schema) are imported when one runs: see LAZY below."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        return _lazy_command(cmd_name) if cmd_name in LAZY else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands' one-line help, as click shows it, without importing the commands."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        with formatter.section("Commands"):
            formatter.write_dl([(name, self._short_help(name, limit)) for name in names])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Complete a command's name (each Tab after `outreach `) without importing the commands."""
        from click.shell_completion import CompletionItem

        names = [name for name in self.list_commands(ctx) if name.startswith(incomplete)]
        items = [CompletionItem(name, help=self._short_help(name)) for name in names]
        # The group's own options (--help, --version) as click completes them, when the word starts with "-".
        return items + click.Command.shell_complete(self, ctx, incomplete)

    def _short_help(self, name: str, limit: int = 45) -> str:
        if name in self.commands:
            return self.commands[name].get_short_help_str(limit)
        return click.Command(name, help=LAZY[name][2]).get_short_help_str(limit)


@click.group(cls=_Outreach, context_settings=CONTEXT)
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
@output.output_format(
    "text",
    "json",
    "github",
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
                f"{where}: {output.plural(errors, 'error')}, {output.plural(warnings, 'warning')} "
                f"in {output.plural(len(result.files), 'file')} ({output.plural(result.documents, 'document')})"
            )
        else:
            click.echo(
                f"{where}: OK, {output.plural(len(result.files), 'file')}, "
                f"{output.plural(result.documents, 'definition')}, no problems"
            )
        if show_summary and result.ruleset is not None and not errors:
            _print_summary(result.ruleset)
    sys.exit(1 if errors else 0)


def _as_error(d: diagnostics.Diagnostic) -> diagnostics.Diagnostic:
    return diagnostics.Diagnostic(d.file, d.line, d.column, Severity.ERROR, d.code, d.message, d.path)


def _print_summary(ruleset: model.RuleSet) -> None:
    rows = [[row.kind, row.name, row.details, row.where, row.hash[:8]] for row in summary.rows(ruleset)]
    output.print_tables(output.table(["kind", "name", "details", "where", "hash"], rows, title="Definitions",
                                     free=["name", "details"]))  # fmt: skip


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


# The other commands, imported only when one of them runs (or shows its help): `outreach --help`, `--version`
# and `validate` start without the store, the daemon, the web side or the mail transports. Each entry says where
# the command is and its one-line help; tests/test_cli.py checks that the line is the command's own.
LAZY: dict[str, tuple[str, str, str]] = {
    "db": ("store", "db", "The database: schema migrations."),
    "inbound": ("inbound", "inbound", "Inbound mail: classify messages as the IMAP poller would."),
    "plan": ("store", "plan", "Show what `apply` would change, without changing anything."),
    "apply": ("store", "apply", "Validate the rule directory (all or nothing) and store its definitions as the ones "
              "in force."),
    "records": ("records", "records", "CRM records: import, list, show, and the changes the engine reacts to."),
    "tasks": ("records", "tasks", "Tasks of records: add, list, complete (a sequence waits for its task step's "
              "task)."),
    "appointments": ("records", "appointments", "Appointments with records (a future appointment stops reminders "
                     "for an overdue lead)."),
    "doctor": ("doctor", "doctor", "Check what the daemon needs and list what needs an operator; exit 1 if "
               "anything is a problem."),
    "simulate": ("simulate", "simulate", "Print, on a virtual clock, what a sequence does to one record, when a "
                 "record in a stage is reminded, or what a campaign does to a sample of its recipients."),
    "test": ("ruletest", "test", "Run RuleTests: the real engine and store on a virtual clock, with a transport "
             "that records every mail."),
    "run": ("sequences", "run", "Run the daemon: apply the rules, then every tick enroll, send due steps and hand "
            "mail to the transport."),
    "enroll": ("sequences", "enroll", "Enroll records in a sequence, one or many; says when the first mail goes "
               "and why anyone was refused."),
    "enrollments": ("sequences", "enrollments", "Enrollments: list, show, stop, retry."),
    "preview": ("sequences", "preview", "Show every step of a sequence for one record, before enrolling: planned "
                "time, subject, body, problems."),
    "sequences": ("sequences", "sequences", "Sequences: list and statistics."),
    "outbox": ("sequences", "outbox", "The outbox: messages and their sending state."),
    "processes": ("processes", "processes", "Sales processes: stages with a maximum duration, and reminders about "
                  "records that overstay them."),
    "campaigns": ("campaigns", "campaigns", "Bulk campaigns: list, show, stop, start, delete and their statistics."),
    "suppressions": ("suppressions", "suppressions", "The suppression list: addresses kept off every sequence and "
                     "campaign."),
    "web": ("web", "web", "Serve the web endpoints alone: unsubscribe pages and one-click POSTs, the open pixel, "
            "click redirects, the ingest API, /healthz and /metrics (docs/web.md)."),
    "status": ("status", "status", "List the daemons that run on the database: alive (their lease runs) or gone, "
               "the singleton work each holds (a mailbox's reading, the reminder run, housekeeping), when each last "
               "ticked and what it sent today."),
}  # fmt: skip


def _lazy_command(name: str) -> click.Command:
    import importlib

    module, attr, _help = LAZY[name]
    command = getattr(importlib.import_module(f"outreach.cli.{module}"), attr)
    assert isinstance(command, click.Command)
    return command


def all_commands() -> dict[str, click.Command]:
    """Every command of `outreach`, imported (for tests and docs checks)."""
    ctx = click.Context(main)
    return {name: command for name in main.list_commands(ctx) if (command := main.get_command(ctx, name))}


if __name__ == "__main__":  # pragma: no cover
    main()
