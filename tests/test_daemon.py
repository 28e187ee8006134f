"""The daemon end to end, as `outreach run` runs it: it applies the rules, ticks, checkpoints SQLite, reloads on
SIGHUP (keeping the old rules when the new ones are invalid) and stops cleanly on Ctrl-C."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach import daemon as daemon_module
from outreach.mail import transport as mail_transport
from outreach.rules.criteria import FieldType
from tests.conftest import FIXTURES, ROOT
from tests.stores import in_database_file
from tests.worlds import MONDAY, PEOPLE, SIGN_UP, rows

pytestmark = pytest.mark.acceptance
HOSTILE = FIXTURES / "hostile" / "templates.yaml"


async def test_the_daemon_applies_ticks_and_keeps_old_rules_when_a_reload_is_invalid(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "settings.yaml").write_text((rules / "settings.yaml").read_text().replace("maildir: var/outbox",
                                                                                      f"maildir: {tmp_path / 'out'}"))  # fmt: skip
    clock = [MONDAY]
    d = daemon_module.Daemon(str(rules), f"sqlite:///{tmp_path / 'd.db'}", clock=lambda: clock[0])
    await d.start()
    try:
        assert d.store is not None
        await d.store.import_records(rows(*PEOPLE, SIGN_UP), now=MONDAY)
        report = await d.tick()
        assert report.enrolled == 1 and report.sent == 1  # the welcome of W2
        # after a tick that wrote, the daemon checkpoints: its writes are in the database file, not only the WAL
        assert in_database_file(tmp_path / "d.db", "SELECT count(*) FROM outbox WHERE state = 'sent'") == 1
        (rules / "sequences" / "welcome.yaml").write_text("kind: Sequence\nname: welcome\nsteps: []\n")
        d.reload_wanted = True
        clock[0] = MONDAY + dt.timedelta(days=3, hours=1)
        report = await d.tick()  # the invalid reload is refused; the old rules send the check-in
        assert report.sent == 1
        assert d.scheduler is not None and "welcome" in d.scheduler.ruleset.sequences
    finally:
        await d.close()
    assert len(mail_transport.read_all(tmp_path / "out")) == 2


async def test_a_checkpoint_that_fails_after_a_tick_is_logged_and_the_tick_s_work_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault SQLite does not produce on demand, so the checkpoint is made to raise."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "settings.yaml").write_text((rules / "settings.yaml").read_text().replace("maildir: var/outbox",
                                                                                      f"maildir: {tmp_path / 'out'}"))  # fmt: skip
    d = daemon_module.Daemon(str(rules), f"sqlite:///{tmp_path / 'd.db'}", clock=lambda: MONDAY)
    await d.start()
    try:
        assert d.store is not None

        async def broken() -> int:
            raise sa.exc.OperationalError("PRAGMA wal_checkpoint(PASSIVE)", {}, Exception("disk I/O error"))

        monkeypatch.setattr(d.store, "checkpoint", broken)
        await d.store.import_records(rows(*PEOPLE, SIGN_UP), now=MONDAY)
        report = await d.tick()
        assert report.enrolled == 1 and report.sent == 1
        assert "the checkpoint after the tick failed" in caplog.text
    finally:
        await d.close()
    assert len(mail_transport.read_all(tmp_path / "out")) == 1


async def test_a_reload_that_declares_a_field_lets_criteria_use_it(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    settings = rules / "settings.yaml"
    settings.write_text(settings.read_text().replace("maildir: var/outbox", f"maildir: {tmp_path / 'out'}"))
    clock = [MONDAY]
    d = daemon_module.Daemon(str(rules), f"sqlite:///{tmp_path / 'd.db'}", clock=lambda: clock[0])
    await d.start()
    try:
        assert d.store is not None and "industry" not in d.store.fields
        await d.store.import_records(rows(*PEOPLE), now=MONDAY)
        settings.write_text(settings.read_text().replace("  first_name: string\n",
                                                         "  first_name: string\n  industry: string\n"))  # fmt: skip
        welcome = rules / "sequences" / "welcome.yaml"
        welcome.write_text(welcome.read_text().replace("enroll_when: {field: source, eq: website}",
                                                       "enroll_when: {field: industry, eq: saas}"))  # fmt: skip
        d.reload_wanted = True
        clock[0] = MONDAY + dt.timedelta(hours=1)
        await d.tick()  # the reload, and auto-enrollment by the new field: no record has it yet
        assert d.scheduler is not None and d.scheduler.ruleset.sequences["welcome"].enroll_when is not None
        assert d.store.fields["industry"] is FieldType.STRING
        await d.store.set_fields("L1", {"industry": "saas"}, now=clock[0])
        clock[0] += dt.timedelta(minutes=1)
        report = await d.tick()
        assert report.enrolled == 1 and [e["record_id"] for e in await d.store.enrollments(sequence="welcome")] == [
            "L1"
        ]
    finally:
        await d.close()


def test_ctrl_c_stops_the_daemon_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "outreach.cli", "run", "--rules", str(ROOT / "rules"), "--tick", "0.2", "--listen",
         "127.0.0.1:0"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "var" / "outreach.db").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err


def test_sigterm_stops_the_daemon_within_its_grace_while_it_renders_a_hostile_template(tmp_path: Path) -> None:
    """The welcome mail is the hostile fixture's nested loops (it passes `outreach validate`; each render is
    stopped after limits.render_time, 1 s) and 30 sign-ups are due at once: a tick of half a minute. SIGTERM
    in the middle of it stops the daemon within its grace period; the steps it had not rendered stay due."""
    import sqlite3

    from outreach.rules import loader

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    hostile = {doc.data["name"]: doc.data["text"] for doc in loader.read_file(str(HOSTILE))[0]}
    welcome = (rules / "templates" / "welcome.yaml").read_text()
    body = welcome[welcome.index("text: |") : welcome.index("---")]
    (rules / "templates" / "welcome.yaml").write_text(
        welcome.replace(body, f"text: {json.dumps(hostile['nested-ranges'])}\n")
    )
    leads = tmp_path / "leads.csv"
    leads.write_text("id,type,email,first_name,owner,source\n" + "".join(
        f"S{i},lead,lead{i}@example.org,Lead,anna,website\n" for i in range(30)))  # fmt: skip
    db, env = tmp_path / "d.db", {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, "-m", "outreach.cli", "records", "import", str(leads), "--rules", str(rules),
                    "--db", f"sqlite:///{db}"], check=True, capture_output=True, cwd=tmp_path, env=env)  # fmt: skip
    grace = 5.0
    proc = subprocess.Popen(
        [sys.executable, "-m", "outreach.cli", "run", "--rules", str(rules), "--db", f"sqlite:///{db}", "--tick",
         "0.2", "--listen", "127.0.0.1:0", "--grace", str(grace)],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip

    def enrolled() -> int:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM enrollments").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            conn.close()

    try:
        deadline = time.monotonic() + 60
        while enrolled() < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # the tick renders its due steps: one a second
        proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        _out, err = proc.communicate(timeout=60)
        took = time.monotonic() - stopped_at
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert took < grace, f"the daemon took {took:.1f} s to stop: {err}"
    assert "stopped" in err and "Traceback" not in err
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        states = dict(conn.execute("SELECT status, count(*) FROM enrollments GROUP BY status").fetchall())
        reasons = {r for (r,) in conn.execute("SELECT reason FROM enrollments WHERE status = 'blocked'")}
        queued = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        conn.close()
    assert states.get("active", 0) >= 25 and states.keys() <= {"active", "blocked"}  # it stopped mid-batch
    assert reasons <= {"template welcome went past a limit: it took longer than 1 s to render (Settings "
                       "limits.render_time)"} and queued == 0  # fmt: skip


async def test_the_daemon_serves_its_web_endpoints_beside_the_ticks(tmp_path: Path) -> None:
    import aiohttp

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "settings.yaml").write_text((rules / "settings.yaml").read_text().replace("maildir: var/outbox",
                                                                                      f"maildir: {tmp_path / 'out'}"))  # fmt: skip
    d = daemon_module.Daemon(str(rules), f"sqlite:///{tmp_path / 'd.db'}", clock=lambda: MONDAY,
                             listen=("127.0.0.1", 0), read_mail=False)  # fmt: skip
    await d.start()
    try:
        assert d.web is not None and d.store is not None
        host, port = d.web.addresses[0][:2]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{host}:{port}/healthz") as answer:
                assert answer.status == 200 and (await answer.json())["checks"] == {"database": "ok", "mailboxes": "ok"}
            await d.store.import_records(rows(*PEOPLE, SIGN_UP), now=MONDAY)
            await d.tick()
            async with http.get(f"http://{host}:{port}/healthz") as answer:
                assert (await answer.json())["checks"]["scheduler"] == "ok"
            async with http.get(f"http://{host}:{port}/metrics") as answer:
                text = await answer.text()
            assert "outreach_tick_seconds_count 1.0" in text and 'outreach_messages{state="sent"} 1.0' in text
            (mail,) = mail_transport.read_all(tmp_path / "out")  # the welcome of W2, with a link the daemon serves
            url = mail["List-Unsubscribe"].strip("<>")
            assert url.startswith("http://127.0.0.1:8025/u/")
            async with http.get(f"http://{host}:{port}/u/{url.rsplit('/', 1)[1]}") as answer:
                assert answer.status == 200 and "tom@example.net" in await answer.text()
    finally:
        await d.close()
    assert d.web is None


async def test_a_daemon_whose_web_address_is_taken_does_not_start(tmp_path: Path) -> None:
    import socket

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = daemon_module.Daemon(str(rules), f"sqlite:///{tmp_path / 'd.db'}", clock=lambda: MONDAY,
                                 listen=("127.0.0.1", port), read_mail=False)  # fmt: skip
        try:
            with pytest.raises(daemon_module.CannotServe, match=f"cannot listen on 127.0.0.1:{port}"):
                await d.start()
        finally:
            await d.close()
