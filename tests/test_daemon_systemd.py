"""The daemon under systemd, driven through a NOTIFY_SOCKET of the test's own: READY once up, STATUS lines,
WATCHDOG pings, RELOADING and READY around a reload (a bad one refused, the old rules kept), STOPPING on SIGTERM
with the mail in flight finished, and JSON log lines."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import mailservers
from tests.conftest import ROOT
from tests.mailservers import SmtpServers

pytestmark = pytest.mark.acceptance


class Notify:
    """The socket systemd would listen on, and every datagram the daemon sent to it, in order."""

    def __init__(self, path: Path) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.2)
        self.lines: list[str] = []

    def wait_for(self, wanted: Callable[[str], bool], timeout: float = 30, after: int = 0) -> int:
        """The index of the first line from `after` on that `wanted` accepts, reading as datagrams come."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.lines)):
                if wanted(self.lines[i]):
                    return i
            if time.monotonic() > deadline:
                raise AssertionError(f"no such notify line in {timeout} s; got {self.lines}")
            with contextlib.suppress(TimeoutError):
                self.lines.extend(self.socket.recv(4096).decode().split("\n"))


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notify]:
    n = Notify(tmp_path / "notify.sock")
    try:
        yield n
    finally:
        n.socket.close()


def _rules(tmp_path: Path, transport: str | None = None) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    settings = rules / "settings.yaml"
    text = settings.read_text().replace("maildir: var/outbox", f"maildir: {tmp_path / 'out'}")
    if transport is not None:
        text = text.replace("  type: maildir ", f"  {transport}\n  # ", 1)
    settings.write_text(text)
    return rules


def _daemon(tmp_path: Path, notify: Notify, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("OUTREACH_SECRET", "OUTREACH_DB")}
    environ.update(NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="2000000", PYTHONUNBUFFERED="1",
                   **(env or {}))  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "outreach.cli", "run", "--rules", str(tmp_path / "rules"), "--db",
         f"sqlite:///{tmp_path / 'd.db'}", "--tick", "0.2", "--listen", "127.0.0.1:0", *args],
        cwd=tmp_path, env=environ, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_ready_status_watchdog_reload_a_refused_reload_and_stopping_in_order(tmp_path: Path, notify: Notify) -> None:
    rules = _rules(tmp_path)
    proc = _daemon(tmp_path, notify, "--log-format", "json")
    try:
        ready = notify.wait_for(lambda line: line == "READY=1")
        status = notify.wait_for(lambda line: line.startswith("STATUS=last tick") and "queue" in line, after=ready)
        assert re.fullmatch(r"STATUS=last tick \d\d:\d\d:\d\d UTC; queue \d+; sent today \d+", notify.lines[status])
        watchdog = notify.wait_for(lambda line: line == "WATCHDOG=1", after=ready)

        proc.send_signal(signal.SIGHUP)  # a valid rule set: reloaded
        reloading = notify.wait_for(lambda line: line == "RELOADING=1", after=watchdog)
        assert re.fullmatch(r"MONOTONIC_USEC=\d+", notify.lines[reloading + 1])
        assert int(notify.lines[reloading + 1].split("=")[1]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        reloaded = notify.wait_for(lambda line: line == "READY=1", after=reloading)

        (rules / "sequences" / "welcome.yaml").write_text("kind: Sequence\nname: welcome\nstpes: []\n")
        proc.send_signal(signal.SIGHUP)  # an invalid one: refused, the old rules keep running
        refused = notify.wait_for(lambda line: line == "RELOADING=1", after=reloaded + 1)
        ready_again = notify.wait_for(lambda line: line == "READY=1", after=refused)
        notify.wait_for(lambda line: line == "WATCHDOG=1", after=ready_again)  # still alive and working

        proc.send_signal(signal.SIGTERM)
        stopping = notify.wait_for(lambda line: line == "STOPPING=1", after=ready_again)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert ready < status and ready < watchdog < reloading < reloaded < refused < ready_again < stopping
    lines = [json.loads(line) for line in err.splitlines()]  # every line one JSON object
    messages = [x["message"] for x in lines]
    assert "rules reloaded" in messages and "stopped" in messages
    refusal = next(x for x in lines if x["message"].startswith("the rules were not reloaded"))
    assert refusal["level"] == "error" and "welcome.yaml:3:1: error: unknown key 'stpes'" in refusal["message"]
    assert any(x.get("daemon") and x["message"].startswith("lease ") for x in lines)
    assert all({"time", "level", "logger", "message"} <= x.keys() for x in lines)


def test_sigterm_lets_the_mail_in_flight_finish_and_exits_0(tmp_path: Path, notify: Notify,
                                                            smtp_server: SmtpServers) -> None:  # fmt: skip
    server = smtp_server(data=f"{mailservers.SLOW}3.0")  # the relay takes 3 s to answer each message
    _rules(tmp_path, transport=f"type: smtp\n  smtp: {{host: 127.0.0.1, port: {server.port}, security: none}}")
    subprocess.run([sys.executable, "-m", "outreach.cli", "records", "import", str(ROOT / "samples" / "leads.csv"),
                    "--rules", str(tmp_path / "rules"), "--db", f"sqlite:///{tmp_path / 'd.db'}"],
                   check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
    proc = _daemon(tmp_path, notify, "--grace", "20")
    try:
        notify.wait_for(lambda line: line == "READY=1")
        deadline = time.monotonic() + 30
        while not any(a.command == "DATA" for a in server.answers) and time.monotonic() < deadline:
            time.sleep(0.05)  # the welcome mails are on the wire
        proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        notify.wait_for(lambda line: line == "STOPPING=1")
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert time.monotonic() - stopped_at < 20
    assert len(server.messages) >= 1  # what was on the wire went out ...
    done = subprocess.run([sys.executable, "-m", "outreach.cli", "outbox", "list", "--json", "--rules",
                           str(tmp_path / "rules"), "--db", f"sqlite:///{tmp_path / 'd.db'}"], capture_output=True,
                          text=True, cwd=tmp_path)  # fmt: skip
    states = [m["state"] for m in json.loads(done.stdout)]
    assert states.count("sent") == len(server.messages) and "sending" not in states and "unknown" not in states
    assert "no new work" in err
