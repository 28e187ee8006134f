"""Commands on the store: `db upgrade|current`, `plan`, `apply`."""

from __future__ import annotations

import datetime as dt
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from outreach.review import base as review

if TYPE_CHECKING:
    from outreach.review import plan as plan_module
    from outreach.store import Store

from outreach.cli import options, output, simulate
from outreach.rules import diagnostics, gitref, model
from outreach.rules import validate as rules_validate


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
    from outreach import store as store_module

    revision = options.on_store(db_url, _rules_if_any(rules_dir), lambda s: s.revision(), upgrade=True)
    click.echo(f"database at revision {revision} (head {store_module.Store.schema_head()})")


@db.command()
@options.db_option
@options.rules_option
def current(db_url: str | None, rules_dir: str) -> None:
    """Print the database's schema revision and the one this outreach needs.

    \b
    Example:
      outreach db current
    """
    from outreach import store as store_module

    async def go(store: Store) -> tuple[str, str | None]:
        return store.url, await store.revision()

    try:
        url, revision = options.on_store(db_url, _rules_if_any(rules_dir), go, upgrade=False)
    except click.ClickException as exc:
        if "run `outreach db upgrade`" not in exc.message:
            raise
        click.echo(exc.message)
        sys.exit(1)
    click.echo(f"{url}: revision {revision} (head {store_module.Store.schema_head()})")


def _rules_if_any(rules_dir: str) -> model.RuleSet | None:
    """Settings for the database URL when the rule directory exists and is valid; else none."""
    if not os.path.isdir(rules_dir):
        return None
    return rules_validate.validate([rules_dir]).ruleset


async def _plan(store: Store, ruleset: model.RuleSet, now: dt.datetime) -> plan_module.Plan:
    """What applying `ruleset` at `now` would change; the campaigns' runs say what it does to each campaign then
    (one stopped by the freeze, a slot overfull)."""
    from outreach.app import campaigns as app_campaigns
    from outreach.review import plan as plan_module

    active = {k: (d.hash, d.body) for k, d in (await store.active_definitions()).items()}
    return plan_module.make_plan(ruleset, active, await store.enrollment_counts(),
                                 runs=await app_campaigns.runs(store), now=now)  # fmt: skip


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
@output.output_format(
    "text",
    "markdown",
    "json",
    help="text: for a terminal; markdown: for a pull request; json: one object, for scripts.",
)
@click.option(
    "--base",
    "base_ref",
    metavar="REF",
    help="Compare with the rules at this git ref (branch, tag, commit) instead of the database.",
)
@click.option("--sample-start", metavar="TIME",
              help="With --base: when the sample enrollment starts (ISO 8601; UTC if no zone; default Mon "
                   f"{review.SAMPLE_START:%Y-%m-%d %H:%M} UTC).")  # fmt: skip
def plan(rules_dir: str, db_url: str | None, fmt: str, base_ref: str | None, sample_start: str | None) -> None:
    """Show what `apply` would change, without changing anything.

    Definitions added, changed (with a diff of the YAML) and removed, and what
    each does to people in flight. Exit status as `terraform plan
    -detailed-exitcode`: 0 no changes, 2 changes, 1 error (usage errors too).

    With --base REF, compares with the rules at a git ref instead (for a pull
    request; no database, no checkout): what each change means, and for each
    changed sequence when a sample enrollment's steps run before and after.

    \b
    Examples:
      outreach plan rules/
      outreach plan --format markdown rules/ > plan.md
      outreach plan --base origin/main --format markdown rules/ > plan.md
    """
    from outreach.review import plan as plan_module

    if base_ref is not None:
        _plan_base(rules_dir, db_url, fmt, base_ref, sample_start)
    if sample_start is not None:
        raise click.UsageError("--sample-start goes with --base")
    when = options.now()
    ruleset = options.load_rules(rules_dir, when=when)

    result = options.on_store(db_url, ruleset, lambda s: _plan(s, ruleset, when))
    render = {"text": plan_module.format_text, "markdown": plan_module.format_markdown,
              "json": plan_module.format_json}[fmt]  # fmt: skip
    click.echo(render(result))
    sys.exit(2 if result.has_changes else 0)


def _plan_base(rules_dir: str, db_url: str | None, fmt: str, ref: str, sample_start: str | None) -> NoReturn:
    """`plan --base REF`: the working tree against the rules at a git ref; exits."""
    from outreach.review import base as review

    if db_url is not None:
        raise click.UsageError("--base compares with a git ref and reads no database: drop --db")
    start = simulate.instant("--sample-start", sample_start) if sample_start else review.SAMPLE_START
    when = options.now()
    head = options.load_rules(rules_dir, when=when)
    try:
        commit, texts = gitref.read_texts(rules_dir, ref)
    except gitref.GitRefError as exc:
        raise click.ClickException(str(exc)) from None
    result = rules_validate.validate_texts(texts, now=when)
    if result.errors or result.ruleset is None:
        click.echo(diagnostics.format_text(result.errors), err=True)
        click.echo(f"{rules_dir} at {ref} ({commit[:8]}): {output.plural(len(result.errors), 'error')}; the base "
                   "must be valid to compare with it", err=True)  # fmt: skip
        sys.exit(1)
    found = review.compare(result.ruleset, head, ref=ref, commit=commit, sample_start=start)
    render = {"text": review.format_text, "markdown": review.format_markdown, "json": review.format_json}[fmt]
    click.echo(render(found))
    sys.exit(2 if found.has_changes else 0)


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
    from outreach.app import campaigns as app_campaigns
    from outreach.app import rules as app_rules
    from outreach.review import plan as plan_module

    when = options.now()
    ruleset = options.load_rules(rules_dir, when=when)

    async def go(store: Store) -> plan_module.Plan:
        result = await _plan(store, ruleset, when)
        try:
            await app_rules.apply(store, ruleset, now=when)
        except app_campaigns.SlotFull as exc:
            raise click.ClickException(f"nothing was applied: {exc}") from None
        return result

    result = options.on_store(db_url, ruleset, go)
    click.echo(plan_module.format_text(result).replace("Plan:", "Applied:", 1))
