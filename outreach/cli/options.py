"""What the commands that touch the store share: the --rules and --db options, and opening both."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from outreach.cli import output
from outreach.rules import criteria, diagnostics, model, timing
from outreach.rules import validate as rules_validate

if TYPE_CHECKING:
    from outreach import store as store_module

# The store, the application layer and what they import (SQLAlchemy, Alembic, the drivers) are imported by the
# functions below when a command runs: importing a command's module (which Tab completion does) stays light.

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def rules_option(f: F) -> F:
    return click.option(
        "--rules", "rules_dir", default="rules", show_default=True, type=click.Path(file_okay=False),
        help="The rule directory (for Settings: record fields, users, the database URL).",
    )(f)  # fmt: skip


def db_option(f: F) -> F:
    return click.option(
        "--db", "db_url", metavar="URL", envvar=None,
        help="Database URL (default: $OUTREACH_DB, then Settings.database, then sqlite:///var/outreach.db).",
    )(f)  # fmt: skip


def now() -> dt.datetime:
    """The CLI is one of the two places that read the clock."""
    return dt.datetime.now(dt.UTC)


def run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    return asyncio.run(coro)


def load_rules(rules_dir: str, *, when: dt.datetime | None = None) -> model.RuleSet:
    """The validated rule set, or exit 1 with its errors."""
    if not os.path.isdir(rules_dir):
        raise click.UsageError(f"no rule directory {rules_dir!r}")
    result = rules_validate.validate([rules_dir], now=when)
    errors = result.errors
    if errors or result.ruleset is None:
        click.echo(diagnostics.format_text(errors), err=True)
        click.echo(f"{rules_dir}: {output.plural(len(errors), 'error')}; fix them first (outreach validate {rules_dir})",
                   err=True)  # fmt: skip
        sys.exit(1)
    return result.ruleset


def database_url(db_url: str | None, settings: model.Settings | None) -> str:
    from_settings = None
    if settings is not None:
        from_settings = settings.database_url
        if settings.database_url_env:
            from_settings = os.environ.get(settings.database_url_env) or None
            if from_settings is None and not (db_url or os.environ.get("OUTREACH_DB")):
                raise click.ClickException(
                    f"Settings.database.url_env names {settings.database_url_env}, which is not set"
                )
    from outreach import store as store_module

    return store_module.resolve_url(db_url, os.environ, from_settings)


async def open_store(
    db_url: str | None, ruleset: model.RuleSet | None, *, upgrade: bool | None = None
) -> store_module.Store:
    from outreach import store as store_module

    url = database_url(db_url, ruleset.settings if ruleset else None)
    try:
        return await store_module.Store.open(url, fields=ruleset.settings.fields if ruleset else None, upgrade=upgrade)
    except store_module.StoreError as exc:
        raise click.ClickException(str(exc)) from None


def parse_when(value: str, *, now_: dt.datetime) -> dt.datetime:
    """A datetime with offset, or a duration from now (`3 days`)."""
    try:
        return timing.parse_instant(value)
    except ValueError:
        pass
    try:
        return now_ + timing.parse_duration(value).as_timedelta()
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a date and time with an offset nor a duration") from None


def on_store(
    db_url: str | None,
    ruleset: model.RuleSet | None,
    action: Callable[[store_module.Store], Awaitable[T]],
    *,
    upgrade: bool | None = None,
) -> T:
    """Open the store, run one action on it, close it; a store error becomes a one-line CLI error."""
    from outreach import store as store_module

    async def go() -> T:
        store = await open_store(db_url, ruleset, upgrade=upgrade)
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return run(go())
    except store_module.StoreError as exc:
        raise click.ClickException(str(exc)) from None


def when(value: dt.datetime | None) -> str:
    """A time as the tables show it, in UTC (a time from the rules may carry another offset)."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def dumps(value: object) -> str:
    """JSON for `--format json` (datetimes as ISO 8601 text)."""
    return output.json_safe(json.dumps(value, default=_json_default, ensure_ascii=False, indent=2))


def where_from_pairs(pairs: Sequence[str], settings: model.Settings) -> criteria.Criteria | None:
    """--where FIELD=VALUE options as criteria (equality, values typed like CSV cells)."""
    from outreach.app import importing as import_files

    leaves: list[criteria.Criteria] = []
    for pair in pairs:
        field, sep, text = pair.partition("=")
        if not sep or field not in settings.fields:
            raise click.BadParameter(f"{pair!r}: use FIELD=VALUE with a known field", param_hint="--where")
        try:
            value = import_files.convert_text(settings.fields[field], text)
        except ValueError as exc:
            raise click.BadParameter(f"{pair!r}: {exc}", param_hint="--where") from None
        leaves.append(criteria.Leaf(field, criteria.Op.EQ, value))
    return criteria.All(tuple(leaves)) if leaves else None
