"""Each file in tests/fixtures/invalid/ is a broken rule document with its expected errors.

A fixture starts with comment lines:

    # expect: LINE CODE message fragment
    # base: none            (optional: validate the file alone, without tests/fixtures/base/)

Every `expect` line must be matched by an error at that line of that file, with
that code and the fragment in its message; and the file may have no other
errors. The same errors must show in all three output formats.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import cli
from outreach.rules import validate
from tests.conftest import FIXTURES

INVALID = FIXTURES / "invalid"
BASE = FIXTURES / "base"
_EXPECT = re.compile(r"^# expect: (\d+) ([a-z0-9-]+) (.+)$")


@dataclass(frozen=True)
class Expected:
    line: int
    code: str
    fragment: str


def _header(path: Path) -> tuple[list[Expected], bool]:
    expected, alone = [], False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("#"):
            break
        m = _EXPECT.match(line.strip())
        if m:
            expected.append(Expected(int(m.group(1)), m.group(2), m.group(3).strip()))
        elif line.strip() == "# base: none":
            alone = True
    return expected, alone


FIXTURE_FILES = sorted(p for p in INVALID.iterdir() if p.suffix in (".yaml", ".yml"))


def _targets(path: Path, alone: bool) -> list[str]:
    return [str(path)] if alone else [str(BASE), str(path)]


@pytest.mark.unit
def test_there_are_at_least_forty_broken_fixtures() -> None:
    assert len(FIXTURE_FILES) >= 40


@pytest.mark.unit
def test_the_base_rule_set_is_clean() -> None:
    result = validate.validate([str(BASE)])
    assert result.errors == []


@pytest.mark.unit
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.name for p in FIXTURE_FILES])
def test_fixture_reports_its_errors_at_their_lines(path: Path) -> None:
    expected, alone = _header(path)
    assert expected, f"{path.name} has no '# expect:' line"
    result = validate.validate(_targets(path, alone))
    assert result.ruleset is None
    mine = [d for d in result.errors if d.file == str(path)]
    others = [d for d in result.errors if d.file != str(path)]
    assert others == [], f"errors outside the fixture: {others}"
    got = sorted((d.line, str(d.code), d.message) for d in mine)
    for e in expected:
        assert any(line == e.line and code == e.code and e.fragment in msg for line, code, msg in got), (
            f"expected {e} in {got}"
        )
    assert len(got) == len(expected), f"unexpected extra errors: {got}"


@pytest.mark.acceptance
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.name for p in FIXTURE_FILES])
def test_fixture_errors_show_in_every_format(path: Path) -> None:
    expected, alone = _header(path)
    runner = CliRunner()
    args = _targets(path, alone)

    text = runner.invoke(cli.main, ["validate", *args])
    assert text.exit_code == 1
    for e in expected:
        assert re.search(rf"^{re.escape(str(path))}:{e.line}:\d+: error: .*{re.escape(e.fragment)}", text.output, re.M)

    as_json = runner.invoke(cli.main, ["validate", "--format", "json", *args])
    assert as_json.exit_code == 1
    items = json.loads(as_json.output)
    for e in expected:
        assert any(
            i["file"] == str(path) and i["line"] == e.line and i["code"] == e.code and i["severity"] == "error"
            for i in items
        )

    gh = runner.invoke(cli.main, ["validate", "--format", "github", *args])
    assert gh.exit_code == 1
    for e in expected:
        assert f"::error file={path},line={e.line}," in gh.output.replace("%2C", ",").replace("%3A", ":")
