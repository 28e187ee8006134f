"""Three daemons on one PostgreSQL database against one SMTP relay that logs every Message-ID: 5,000 messages,
one daemon SIGKILLed mid-run. Every message is received exactly once or is `unknown` (at most the killed daemon's
batch in flight, and only its own), none twice, none lost; the killed daemon's singleton work (its mailboxes'
reading, the reminder run, housekeeping) is taken over by another within a few lease periods."""

from __future__ import annotations

import asyncio
import email
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import stores
from tests.conftest import ROOT, need
from tests.mailservers import SmtpServers
from tests.stores import PG_URL

pytestmark = pytest.mark.acceptance

MESSAGES = 5000
LEASE = 2.0  # seconds: short, so that the takeover is quick


@pytest.fixture
def database() -> Iterator[str]:
    found = asyncio.run(stores.new_pg_database())
    need(found is not None, f"PostgreSQL at {PG_URL} is not reachable")
    assert found is not None
    try:
        yield found
    finally:
        asyncio.run(stores.drop_pg_database(found))


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    async def go() -> list[tuple[object, ...]]:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return [tuple(r) for r in await conn.execute(sa.text(sql))]
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_three_daemons_one_killed_every_message_once_or_unknown(tmp_path: Path, database: str,
                                                                smtp_server: SmtpServers) -> None:  # fmt: skip
    server = smtp_server()
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    settings = rules / "settings.yaml"
    text = settings.read_text().replace(", daily_limit: 300", "")  # 5,000 mails in one run
    text = text.replace("  type: maildir ", f"  type: smtp\n  smtp: {{host: 127.0.0.1, port: {server.port}, "
                        "security: none, pool_size: 4}\n  # ", 1)  # fmt: skip
    settings.write_text(text)
    with (tmp_path / "leads.csv").open("w") as f:
        f.write("id,type,email,first_name,owner,source\n")
        for i in range(MESSAGES):
            f.write(f"W{i},lead,lead{i}@example.org,Lee,{'anna' if i % 2 else 'ben'},website\n")
    env = {k: v for k, v in os.environ.items() if k != "OUTREACH_SECRET"}
    env.update(OUTREACH_DB=database, PYTHONUNBUFFERED="1", OUTREACH_SECRET="a-secret-all-three-daemons-share-0123",
               ANNA_IMAP_USER="anna", BEN_IMAP_USER="ben", BEN_IMAP_PASSWORD="x")  # fmt: skip

    def outreach(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "outreach.cli", *args, "--rules", str(rules)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def daemon(name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "outreach.cli", "run", "--rules", str(rules), "--tick", "0.2", "--listen",
             "127.0.0.1:0", "--lease", str(LEASE)],
            cwd=tmp_path, env=env, stderr=(tmp_path / f"{name}.log").open("w"), text=True,
        )  # fmt: skip

    outreach("db", "upgrade")
    outreach("records", "import", str(tmp_path / "leads.csv"))
    procs = {"a": daemon("a")}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a holds the singleton work before the others start
            status = json.loads(outreach("status", "--json"))
            if status["daemons"] and "reminders" in status["daemons"][0]["holds"]:
                break
            time.sleep(0.2)
        (first,) = status["daemons"]
        assert first["pid"] == procs["a"].pid
        assert {"reminders", "housekeeping", "mailbox:anna", "mailbox:ben"} <= set(first["holds"])
        procs["b"], procs["c"] = daemon("b"), daemon("c")
        deadline = time.monotonic() + 120
        while len(server.messages) < MESSAGES // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.messages) >= MESSAGES // 3, (tmp_path / "a.log").read_text()[-3000:]
        procs["a"].send_signal(signal.SIGKILL)  # mid-run, mail on the wire, leases held
        procs["a"].wait()
        killed = first["id"]

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            left = _query(database, "SELECT count(*) FROM outbox WHERE state NOT IN ('sent', 'unknown')")[0][0]
            enrolled = _query(database, "SELECT count(*) FROM enrollments")[0][0]
            if left == 0 and enrolled == MESSAGES:
                break
            time.sleep(0.5)
        status = json.loads(outreach("status", "--json"))
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
    assert procs["b"].returncode == 0 and procs["c"].returncode == 0

    rows = _query(database, "SELECT message_id, state, daemon_id FROM outbox")
    assert len(rows) == MESSAGES  # every enrollment's first mail was queued, once
    received = Counter(email.message_from_bytes(m.data)["Message-ID"] for m in server.messages)
    twice = [mid for mid, n in received.items() if n > 1]
    assert twice == []  # none twice
    sent = {mid for mid, state, _ in rows if state == "sent"}
    unknown = [(mid, daemon_id) for mid, state, daemon_id in rows if state == "unknown"]
    assert sent <= set(received) and set(received) <= {mid for mid, _, _ in rows}
    assert len(sent) + len(unknown) == MESSAGES  # none lost
    assert len(unknown) <= 100 and all(daemon_id == killed for _, daemon_id in unknown)  # only a's batch in flight

    alive = {d["id"]: d for d in status["daemons"] if d["alive"]}
    assert killed not in alive and len(alive) == 2
    taken = {lease["name"]: lease["holder"] for lease in status["leases"]}
    for work in ("reminders", "housekeeping", "mailbox:anna", "mailbox:ben"):
        assert taken[work] in alive, (work, taken)  # the killed daemon's work went to one alive
    logs = "".join((tmp_path / f"{n}.log").read_text() for n in ("b", "c"))
    assert "lease mailbox:anna taken" in logs and "Traceback" not in logs
