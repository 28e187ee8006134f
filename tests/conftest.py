"""Shared fixtures, and the tiers every test is in.

Tiers (markers registered in pyproject.toml; each test carries exactly one, or the collection stops):
  unit         pure in-process code: no database, socket, server, subprocess or sleeping (enforced below)
  store        a real database in process: SQLite (a file or in memory) or PostgreSQL
  integration  real mail servers: aiosmtpd, Postfix's smtp-sink, Dovecot (tests/mailservers.py)
  acceptance   the CLI and the daemon end to end, as a user runs them

A test that needs a server skips outside CI with a reason and fails in CI (CI=true).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import socket
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import NoReturn

import pytest

from outreach.store import Store
from tests import stores

pytest_plugins = ["tests.mailservers"]  # smtp_server, smtp_sink, dovecot

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TIERS = ("unit", "store", "integration", "acceptance")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip a test outside CI when a server or tool is missing; in CI a missing one fails the test."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


# --- tiers ----------------------------------------------------------------------------------------------------


def tier_problems(items: Iterable[pytest.Item]) -> list[str]:
    """`node id: what is wrong` for every test without a tier marker or with more than one."""
    problems = []
    for item in items:
        names = {mark.name for mark in item.iter_markers()}
        tiers = [tier for tier in TIERS if tier in names]
        if len(tiers) != 1:
            problems.append(f"{item.nodeid}: {' and '.join(tiers) if tiers else 'no tier'}")
    return problems


def pytest_configure(config: pytest.Config) -> None:
    # croniter runs `file` on the interpreter when it is first imported (platform.architecture), and outreach
    # imports it lazily: it is imported here, before any test, or the unit test that happens to import it first
    # fails the guard below.
    importlib.import_module("croniter")


@pytest.hookimpl(tryfirst=True)  # before -m deselects: a test without a tier is an error in every run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = tier_problems(items)
    if problems:
        raise pytest.UsageError(
            f"{len(problems)} test(s) need exactly one tier marker, one of "
            f"{', '.join(f'pytest.mark.{tier}' for tier in TIERS)} (tests/conftest.py says what each means; "
            "a module's `pytestmark` or the test's own decorator):\n  " + "\n  ".join(problems)
        )


def _refused(what: str) -> Callable[..., NoReturn]:
    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(
            f"a unit test opened {what}: unit tests run in process only; "
            "mark the test store, integration or acceptance (tests/conftest.py)"
        )

    return refuse


@pytest.fixture(autouse=True)
def _unit_tests_stay_in_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test that opens a database, a connection or a server, starts a process or sleeps fails loudly."""
    if request.node.get_closest_marker("unit") is None:
        return
    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, _refused("a network connection"))
    monkeypatch.setattr(socket.socket, "bind", _refused("a server socket"))
    monkeypatch.setattr(socket, "getaddrinfo", _refused("a name lookup"))
    monkeypatch.setattr(sqlite3, "connect", _refused("an SQLite database"))
    monkeypatch.setattr(sqlite3.dbapi2, "connect", _refused("an SQLite database"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refused("a subprocess"))
    monkeypatch.setattr(os, "fork", _refused("a subprocess (fork)"))

    real_sleep, real_async_sleep = time.sleep, asyncio.sleep

    def sleep(seconds: float) -> None:
        if seconds > 0:
            _refused(f"a {seconds} s sleep on the wall clock")()
        real_sleep(seconds)

    async def async_sleep(delay: float, result: object = None) -> object:
        if delay > 0:
            _refused(f"a {delay} s sleep on the wall clock")()
        return await real_async_sleep(delay, result)

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(asyncio, "sleep", async_sleep)


# --- databases ------------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str | None]]:
    """(url, schema) of an empty database of each dialect."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'outreach.db'}", None
        return
    schema = await stores.new_pg_schema()
    need(schema is not None, f"no PostgreSQL at {stores.PG_URL}")
    assert schema is not None
    try:
        yield stores.PG_URL, schema
    finally:
        await stores.drop_pg_schema(schema)


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    """A fresh schema on the local PostgreSQL (stores.PG_URL), dropped after the test."""
    schema = await stores.new_pg_schema()
    need(schema is not None, f"no PostgreSQL at {stores.PG_URL}")
    assert schema is not None
    try:
        yield schema
    finally:
        await stores.drop_pg_schema(schema)


@pytest.fixture
async def store(backend: tuple[str, str | None]) -> AsyncIterator[Store]:
    """An empty store, at the newest revision, on each backend, with the record fields of stores.FIELDS."""
    url, schema = backend
    s = await Store.open(url, fields=stores.FIELDS, upgrade=True, schema=schema)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def people_store(backend: tuple[str, str | None], request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A store on each backend with the test module's PEOPLE imported and the example rules applied
    (tests/worlds.py seeded_store)."""
    from tests import worlds

    s = await worlds.seeded_store(backend, request.module.PEOPLE)
    try:
        yield s
    finally:
        await s.close()


# --- rules ----------------------------------------------------------------------------------------------------


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
