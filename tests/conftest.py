"""Shared fixtures. Server fixtures (PostgreSQL, SMTP, Dovecot) arrive with the issues that need them;
a test that needs a server skips outside CI with a reason and fails in CI (CI=true)."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["tests.mailservers"]  # smtp_server, smtp_sink, dovecot

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip a test outside CI when a server or tool is missing; in CI a missing one fails the test."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def bare_rules(tmp_path: Path) -> Path:
    """A copy of the example rules without their tests, campaigns and views: a RuleTest test writes its own."""
    where = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", where, ignore=shutil.ignore_patterns("tests", "campaigns", "views"))
    (where / "tests").mkdir()
    return where


def write_rule_test(rules: Path, text: str, name: str = "t.yaml") -> Path:
    """A RuleTest file (dedented YAML) in the rules' tests directory."""
    path = rules / "tests" / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path
