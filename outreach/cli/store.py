"""Commands on the store: `db upgrade|current`, `plan`, `apply`."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from outreach import plan as plan_module
from outreach.cli import options
from outreach.rules import model
from outreach.rules import validate as rules_validate
from outreach.store import Store, migrate


@click.group()
def db() -> None:
    """The database: schema migrations.

    \b
    Examples:
      outreach db upgrade
      outreach db current --db postgresql://outreach@db.internal/outreach
    """


@db.command()
@options.db_option
@options.rules_option
def upgrade(db_url: str | None, rules_dir: str) -> None:
    """Bring the database schema to this version of outreach (Alembic migrations).

    \b
    Example:
      outreach db upgrade --db postgresql://outreach@db.internal/outreach
    """

    revision = options.on_store(db_url, _rules_if_any(rules_dir), lambda s: s.revision(), upgrade=True)
    click.echo(f"database at revision {revision} (head {migrate.head()})")


@db.command()
@options.db_option
@options.rules_option
def current(db_url: str | None, rules_dir: str) -> None:
    """Print the database's schema revision and the one this outreach needs.

    \b
    Example:
      outreach db current
    """

    async def go(store: Store) -> tuple[str, str | None]:
        return store.url, await store.revision()

    try:
        url, revision = options.on_store(db_url, _rules_if_any(rules_dir), go, upgrade=False)
    except click.ClickException as exc:
        if "run `outreach db upgrade`" not in exc.message:
            raise
        click.echo(exc.message)
        sys.exit(1)
    click.echo(f"{url}: revision {revision} (head {migrate.head()})")


def _rules_if_any(rules_dir: str) -> model.RuleSet | None:
    """Settings for the database URL when the rule directory exists and is valid; else none."""
    if not os.path.isdir(rules_dir):
        return None
    return rules_validate.validate([rules_dir]).ruleset


async def _plan(store: Store, ruleset: model.RuleSet) -> plan_module.Plan:
    active = {k: (d.hash, d.body) for k, d in (await store.active_definitions()).items()}
    return plan_module.make_plan(ruleset, active, await store.enrollment_counts())


class _PlanUsageError(click.UsageError):
    exit_code = 1


class _PlanCommand(click.Command):
    """`plan` exits 2 for "there are changes" (terraform's -detailed-exitcode), so its usage errors exit 1."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _PlanUsageError(exc.format_message(), exc.ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _PlanUsageError(exc.format_message(), exc.ctx) from None


@click.command(cls=_PlanCommand)
@click.argument("rules_dir", default="rules", type=click.Path(file_okay=False))
@options.db_option
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
def plan(rules_dir: str, db_url: str | None, fmt: str) -> None:
    """Show what `apply` would change, without changing anything.

    Definitions added, changed (with a diff of the YAML) and removed, and what
    each does to people in flight. Exit status as `terraform plan
    -detailed-exitcode`: 0 no changes, 2 changes, 1 error (usage errors too).

    \b
    Examples:
      outreach plan rules/
      outreach plan --format markdown rules/ > plan.md
    """
    ruleset = options.load_rules(rules_dir, when=options.now())

    result = options.on_store(db_url, ruleset, lambda s: _plan(s, ruleset))
    render = {"text": plan_module.format_text, "markdown": plan_module.format_markdown,
              "json": plan_module.format_json}[fmt]  # fmt: skip
    click.echo(render(result))
    sys.exit(2 if result.has_changes else 0)


@click.command()
@click.argument("rules_dir", default="rules", type=click.Path(file_okay=False))
@options.db_option
def apply(rules_dir: str, db_url: str | None) -> None:
    """Validate the rule directory (all or nothing) and store its definitions as the ones in force.

    Every version is kept, by content hash. Live enrollments of a changed
    sequence follow its `on_edit`; a removed sequence stops them.

    \b
    Examples:
      outreach apply rules/
      outreach apply --db postgresql://outreach@db.internal/outreach rules/
    """
    when = options.now()
    ruleset = options.load_rules(rules_dir, when=when)

    async def go(store: Store) -> plan_module.Plan:
        result = await _plan(store, ruleset)
        await store.apply_definitions(plan_module.wanted(ruleset), now=when)
        return result

    result = options.on_store(db_url, ruleset, go)
    click.echo(plan_module.format_text(result).replace("Plan:", "Applied:", 1))
