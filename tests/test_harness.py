"""The test harness itself: a test whose server is missing fails in CI, every test is in exactly one tier, and a
unit test cannot reach a database, the network, a subprocess or the wall clock (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import need, tier_problems

pytestmark = pytest.mark.unit

_FORK = os.fork  # as it is before the guard replaces it


def test_a_store_test_without_postgresql_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no PostgreSQL"):
        need(False, "no PostgreSQL at somewhere")


class Item:
    """What tier_problems reads of a collected test: its node id and its marks."""

    def __init__(self, nodeid: str, *marks: str) -> None:
        self.nodeid = nodeid
        self.marks = [getattr(pytest.mark, name).mark for name in marks]

    def iter_markers(self) -> list[pytest.Mark]:
        return self.marks


def test_a_test_without_a_tier_or_with_two_is_named_and_one_tier_is_fine() -> None:
    items = [
        Item("tests/test_a.py::test_pure", "unit"),
        Item("tests/test_a.py::test_twice", "unit", "parametrize", "unit"),  # a module's mark and the test's own
        Item("tests/test_b.py::test_nothing", "parametrize"),
        Item("tests/test_b.py::test_both", "acceptance", "store"),
    ]
    assert tier_problems(items) == [  # type: ignore[arg-type]
        "tests/test_b.py::test_nothing: no tier",
        "tests/test_b.py::test_both: store and acceptance",
    ]


def _connect(address: tuple[str, int]) -> None:
    with socket.socket() as sock:
        sock.connect(address)


@pytest.mark.parametrize(
    ("what", "attempt"),
    [
        ("an SQLite database", lambda tmp: sqlite3.connect(":memory:")),
        ("an SQLite database", lambda tmp: sqlite3.dbapi2.connect(str(tmp / "x.db"))),
        ("a network connection", lambda tmp: _connect(("127.0.0.1", 9))),
        ("a server socket", lambda tmp: socket.create_server(("127.0.0.1", 0))),
        ("a name lookup", lambda tmp: socket.getaddrinfo("example.org", 25)),
        ("a subprocess", lambda tmp: subprocess.run([sys.executable, "-c", "pass"], check=False)),
        ("a 0.1 s sleep", lambda tmp: time.sleep(0.1)),
        ("a 0.1 s sleep", lambda tmp: asyncio.run(asyncio.sleep(0.1))),
    ],
)
def test_a_unit_test_that_leaves_the_process_fails_loudly(
    what: str, attempt: Callable[[Path], object], tmp_path: Path
) -> None:
    with pytest.raises(AssertionError, match=f"a unit test opened {what}"):
        attempt(tmp_path)
    assert not (tmp_path / "x.db").exists()


def test_a_unit_test_cannot_fork() -> None:
    assert os.fork is not _FORK, "os.fork is not guarded: calling it here would fork the test run"
    with pytest.raises(AssertionError, match="a unit test opened a subprocess"):
        os.fork()


def test_a_sleep_of_no_time_only_yields() -> None:
    time.sleep(0)
    asyncio.run(asyncio.sleep(0))
