"""A reload while the daemon sends a backlog: the rest of the queue goes out under the new rules, through the new
transport, at once (bench/drills/bad_reload.py is the same under load, with invalid rule sets first)."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from outreach import daemon as daemon_module
from tests import mailservers
from tests.conftest import ROOT
from tests.mailservers import SmtpServers
from tests.worlds import Row, rows

pytestmark = pytest.mark.acceptance

PEOPLE = 30
POOL = 2


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    """Wait, looking every 20 ms, until `check` holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await _value(check()):
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def _value(result: bool | Awaitable[bool]) -> bool:
    return await result if inspect.isawaitable(result) else result


async def test_a_reload_under_load_moves_the_rest_of_the_queue_to_the_new_relay(
    tmp_path: Path, smtp_server: SmtpServers
) -> None:
    old = smtp_server(data=f"{mailservers.SLOW}0.05")  # slow enough that a backlog builds up
    new = smtp_server()
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    settings = rules / "settings.yaml"
    relay = f"  type: smtp\n  smtp: {{host: 127.0.0.1, port: {old.port}, security: none, pool_size: {POOL}}}\n  # "
    text = settings.read_text().replace("  type: maildir ", relay, 1)
    settings.write_text(text)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    now = dt.datetime.now(dt.UTC)
    first = daemon_module.Daemon(str(rules), url, read_mail=False)
    await first.start()  # the database, and the welcome sign-ups in it
    try:
        assert first.store is not None
        signed_up = {"owner": "anna", "source": "website"}
        people = [Row(i + 2, f"W{i}", "lead", f"p{i}@example.org", signed_up) for i in range(PEOPLE)]
        await first.store.import_records(rows(*people), now=now)
    finally:
        await first.close()
    d = daemon_module.Daemon(str(rules), url, tick=0.05, read_mail=False)
    running = asyncio.create_task(d.run())
    try:
        await eventually(lambda: len(old.messages) >= 3, "the old relay takes the first welcome mails")
        before = d.scheduler
        settings.write_text(text.replace(f"port: {old.port},", f"port: {new.port},"))
        d.reload_wanted = True
        await eventually(lambda: d.scheduler is not before, "the reload")
        taken_before = len(old.messages)
        assert taken_before < PEOPLE - POOL  # a backlog was left to move

        async def all_sent() -> bool:
            assert d.store is not None
            return (await d.store.outbox_counts()) == {"sent": PEOPLE}

        await eventually(all_sent, "every welcome mail sent")
        # only what was on the wire at the reload went to the old relay, whose connections are then let go
        assert len(old.messages) - taken_before <= POOL
        await eventually(lambda: old.open_connections == 0, "the old relay's connections closed", timeout=5)
    finally:
        d.stopping.set()
        await asyncio.wait_for(running, 30)
    ids = [m.message["Message-ID"] for m in old.messages + new.messages]
    assert len(ids) == len(set(ids)) == PEOPLE
