"""validate's holiday countries and subdivisions, kept in the user's cache directory per installed python-holidays
(issue 19, item 1: `outreach validate` of the example rules under 0.5 s; importing python-holidays was 0.2 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from outreach.rules import holiday_index
from tests.conftest import ROOT


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(holiday_index, "_MEMORY", {})
    return tmp_path / "outreach"


@pytest.mark.unit
def test_an_answer_is_looked_up_once_and_then_read_from_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    looked: list[str] = []
    real = holiday_index._look_up
    monkeypatch.setattr(holiday_index, "_look_up", lambda c: looked.append(c) or real(c))
    de = holiday_index.subdivisions("DE")
    assert de is not None and "BY" in de and "BE" in de
    assert holiday_index.subdivisions("XX") is None
    assert looked == ["DE", "XX"]
    (written,) = cache.glob("holidays-*.json")
    assert json.loads(written.read_text()) == {"DE": list(de), "XX": None}

    monkeypatch.setattr(holiday_index, "_MEMORY", {})  # as a new process would
    assert holiday_index.subdivisions("DE") == de and holiday_index.subdivisions("XX") is None
    assert looked == ["DE", "XX"], "read from the cache, not looked up again"


@pytest.mark.unit
def test_a_damaged_or_unwritable_cache_costs_only_the_time(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    holiday_index.subdivisions("AT")
    (written,) = cache.glob("holidays-*.json")
    written.write_text('{"AT": 5, "FR": ["not", 1]')  # damaged: not JSON
    monkeypatch.setattr(holiday_index, "_MEMORY", {})
    at = holiday_index.subdivisions("AT")
    assert at is not None and "9" in at  # Vienna, looked up again
    written.write_text(json.dumps({"AT": 5, "FR": ["x", 1]}))  # JSON, but not answers: ignored
    monkeypatch.setattr(holiday_index, "_MEMORY", {})
    assert holiday_index.subdivisions("AT") == at
    for f in cache.iterdir():
        f.unlink()
    cache.rmdir()
    cache.write_text("")  # the cache directory cannot be made (as a read-only home, even for root)
    monkeypatch.setattr(holiday_index, "_MEMORY", {})
    assert holiday_index.subdivisions("AT") == at
    assert cache.read_text() == ""


@pytest.mark.acceptance
def test_validate_with_a_warm_cache_does_not_import_python_holidays(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    code = (
        "import sys\n"
        "from outreach.rules import validate\n"
        f"result = validate.validate([{str(ROOT / 'rules')!r}])\n"
        "assert not result.errors, result.errors\n"
        "print('holidays' in sys.modules)\n"
    )
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "True"  # the example calendars name DE and AT: looked up once
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "False"
