"""`outreach test`: run the RuleTests of a rule set on a virtual clock and show what differs."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from outreach.review import ruletests

from outreach.cli import options
from outreach.rules import diagnostics, model
from outreach.rules import validate as rules_validate


def _tests_in(ruleset: model.RuleSet, files: list[str]) -> list[model.RuleTest]:
    """The RuleTests written in one of `files` (all of them when `files` is empty), in file and line order."""
    wanted = {os.path.abspath(f) for f in files}
    found = [t for t in ruleset.tests.values() if not wanted or os.path.abspath(t.source.file) in wanted]
    return sorted(found, key=lambda t: (t.source.file, t.source.line))


@click.command("test")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, file_okay=True, dir_okay=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit"]),
    default="text",
    show_default=True,
    help="text: a line per test and a diff per failure; json: an object; junit: JUnit XML for CI (when the "
    "rules have errors: a test case with the errors).",
)
@click.option(
    "--rules",
    "rules_dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="The rule set the tests run against when PATHS are RuleTest files (default: rules).",
)
@click.option("--name", "name_part", metavar="TEXT", help="Run only the RuleTests whose name contains TEXT.")
def test(paths: tuple[str, ...], fmt: str, rules_dir: str | None, name_part: str | None) -> None:
    """Run RuleTests: the real engine and store on a virtual clock, with a transport that records every mail.

    PATHS are rule directories (every RuleTest in them runs against the rest of
    the directory) or RuleTest files (they run against --rules); default: rules.
    A failure shows what was expected and not so (-) and what happened
    unexpected (+), aligned by time, with file:line. Exit status: 0 all pass,
    1 a test failed or the rules have errors, 2 usage errors.

    \b
    Examples:
      outreach test rules/
      outreach test --format junit rules/ > ruletests.xml
      outreach test --rules rules/ rules/tests/nurture.yaml
    """
    from outreach.review import ruletests

    targets = list(paths) or ["rules"]
    if not paths and not os.path.isdir("rules"):
        raise click.UsageError("no PATHS given and there is no rules/ directory here")
    files = [p for p in targets if os.path.isfile(p)]
    dirs = [p for p in targets if os.path.isdir(p)]
    if files and dirs:
        raise click.UsageError("give rule directories or RuleTest files (with --rules), not both")
    if files:
        base = rules_dir or "rules"
        if not os.path.isdir(base):
            raise click.UsageError(f"no rule directory {base!r} for the RuleTest files (use --rules DIR)")
        inside = os.path.abspath(base) + os.sep
        sets = [([base, *(f for f in files if not os.path.abspath(f).startswith(inside))], files)]
    else:
        if rules_dir is not None:
            raise click.UsageError("--rules goes with RuleTest files; a directory is its own rule set")
        sets = [([d], []) for d in dirs]
    results: list[ruletests.Result] = []
    invalid: list[tuple[str, list[diagnostics.Diagnostic]]] = []
    for where, only in sets:
        result = rules_validate.validate(where)
        if result.errors or result.ruleset is None:
            click.echo(diagnostics.format_text(result.errors), err=True)
            click.echo(f"{', '.join(where)}: {len(result.errors)} error(s); no RuleTest ran", err=True)
            if fmt != "junit":
                sys.exit(1)
            invalid.append((", ".join(where), result.errors))  # CI reads the report: it must still be XML
            continue
        tests = [t for t in _tests_in(result.ruleset, only) if name_part is None or name_part in t.name]
        results += options.run(ruletests.run_all(tests, result.ruleset))
    if fmt == "json":
        click.echo(ruletests.format_json(results))
    elif fmt == "junit":
        click.echo(ruletests.format_junit(results, invalid))
    else:
        click.echo(ruletests.format_text(results))
    sys.exit(0 if all(r.passed for r in results) and not invalid else 1)
