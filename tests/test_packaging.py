"""Installing outreach: one version, its licence, and PostgreSQL's driver as the extra `postgres`."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import outreach
from outreach import cli
from outreach.store import Store, StoreError
from tests.conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements}


@pytest.mark.unit
def test_the_version_is_written_once_in_the_package_and_the_changelog_has_it() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(outreach.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
    assert "## [Unreleased]" in changelog


@pytest.mark.unit
def test_the_licence_pyproject_declares_is_the_licence_file() -> None:
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n") and "Copyright (c) 2026 the outreach authors" in text


@pytest.mark.unit
def test_asyncpg_is_the_extra_postgres_and_the_dev_extra_has_it_too() -> None:
    extras = PROJECT["optional-dependencies"]
    assert "asyncpg" not in _names(PROJECT["dependencies"])
    assert _names(extras["postgres"]) == {"asyncpg"}
    assert set(extras["postgres"]) <= set(extras["dev"])  # the README's test command runs the PostgreSQL tests


@pytest.mark.unit
async def test_a_postgresql_url_without_asyncpg_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if not installed: `import asyncpg` fails

    with pytest.raises(StoreError) as info:
        await Store.open("postgresql://bob:secret@db.internal/outreach")

    assert str(info.value) == (
        "postgresql://bob:***@db.internal/outreach is a PostgreSQL database, and its driver asyncpg is not "
        "installed: pip install 'outreach[postgres]'"
    )


@pytest.mark.acceptance
def test_a_command_on_postgresql_without_asyncpg_prints_the_one_line_operations_md_shows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    command, shown = page.split("\n$ outreach db current --db ", 1)[1].split("\n")[:2]
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(cli.main, ["db", "current", "--db", command])

    assert result.exit_code == 1
    assert result.output == shown + "\n"  # no traceback
    assert shown == (
        "Error: postgresql://outreach@db.internal/outreach is a PostgreSQL database, and its driver asyncpg is "
        "not installed: pip install 'outreach[postgres]'"
    )
