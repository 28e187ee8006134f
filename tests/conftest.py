"""Shared fixtures. Server fixtures (PostgreSQL, SMTP, Dovecot) arrive with the issues that need them;
a test that needs a server skips outside CI with a reason and fails in CI (CI=true)."""

from __future__ import annotations

import os
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
