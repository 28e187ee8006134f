"""The small world the store, scheduler, sending and mail server tests share: import rows, the example rules, a
Monday morning, and a store seeded with them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from outreach import cli
from outreach.app import rules as app_rules
from outreach.rules import model, validate
from outreach.store import Store
from tests.conftest import ROOT

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
MONDAY = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)  # 09:00 in Berlin


@dataclasses.dataclass(frozen=True)
class Row:
    """The shape outreach.records yields for a good import row."""

    line: int
    id: str | None
    type: str
    email: str | None
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RowError:
    line: int
    message: str


def rows(*items: Row | RowError) -> Iterator[Row | RowError]:
    yield from items


def ruleset(path: Path = ROOT / "rules") -> model.RuleSet:
    result = validate.validate([str(path)])
    assert result.ruleset is not None
    return result.ruleset


RULES = ruleset()
PEOPLE = (
    Row(2, "L1", "lead", "jo@example.org", {"first_name": "Jo", "owner": "anna", "company": "Fjord AS"}),
    Row(3, "L2", "lead", "kim@example.net", {"owner": "ben"}),  # no first_name: the intro cannot be merged
    Row(4, "W1", "lead", "mila@example.org", {"first_name": "Mila", "owner": "anna"}),
)
SIGN_UP = Row(5, "W2", "lead", "tom@example.net", {"first_name": "Tom", "owner": "anna", "source": "website"})


async def seeded_store(database: tuple[str, str | None], people: tuple[Row, ...]) -> Store:
    """A store on the `backend` fixture's database, `people` imported and the example rules applied (a day
    before MONDAY)."""
    url, schema = database
    store = await Store.open(url, fields=RULES.settings.fields, upgrade=True, schema=schema)
    await store.import_records(rows(*people), now=MONDAY - dt.timedelta(days=1))
    await app_rules.apply(store, RULES, now=MONDAY - dt.timedelta(days=1))
    return store


def scratch(tmp: Path, monkeypatch: pytest.MonkeyPatch, csv: str) -> Path:
    """A scratch working directory for CLI tests: the example rules, `csv` as leads.csv, imported with `outreach
    records import` into the default database there (var/outreach.db)."""
    shutil.copytree(ROOT / "rules", tmp / "rules")
    (tmp / "leads.csv").write_text(csv, encoding="utf-8")
    monkeypatch.chdir(tmp)
    imported = CliRunner().invoke(cli.main, ["records", "import", "leads.csv"])
    assert imported.exit_code == 0, imported.output
    return tmp
