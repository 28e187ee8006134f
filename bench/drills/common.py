"""What the drills share: a project in a temporary directory whose rules send over SMTP to a drill relay, an outbox
seeded with queued messages, the relay and the daemon as processes, and the outbox and the relay's log read back."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import smtp_throughput  # noqa: E402 - bench/ on the path: its seed() builds messages as the scheduler does

OUTREACH = str(Path(sys.executable).with_name("outreach"))
SECRET = "drill-secret-of-at-least-thirty-two-bytes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Project:
    """A scratch project: the example rules sending over SMTP to 127.0.0.1:PORT, and a SQLite database."""

    def __init__(self, where: Path, relay_port: int, *, pool: int = 8, timeout: str = "5s") -> None:
        self.where = where
        self.rules = where / "rules"
        self.db = where / "outreach.db"
        self.url = f"sqlite:///{self.db}"
        shutil.copytree(ROOT / "rules", self.rules)
        settings = self.rules / "settings.yaml"
        text = settings.read_text(encoding="utf-8")
        smtp = (f"transport:\n  type: smtp\n  smtp: {{host: 127.0.0.1, port: {relay_port}, security: none, "
                f"pool_size: {pool}, timeout: {timeout}}}\n")  # fmt: skip
        text = re.sub(r"^transport:\n(?:  .*\n)+", smtp, text, count=1, flags=re.M)
        text = re.sub(r"^mailboxes:\n(?:  .*\n)+", "", text, count=1, flags=re.M)  # no IMAP in these drills
        settings.write_text(text, encoding="utf-8")
        self.env = {**os.environ, "OUTREACH_SECRET": SECRET, "OUTREACH_DB": self.url}

    def seed(self, messages: int, *, domains: tuple[str, ...] = ("example.org",)) -> None:
        asyncio.run(smtp_throughput.seed(f"sqlite+aiosqlite:///{self.db}", messages, 1500))
        if domains != ("example.org",):
            with sqlite3.connect(self.db) as db:
                db.executemany("UPDATE outbox SET recipient = ? WHERE id = ?",
                               [(f"p{i}@{domains[i % len(domains)]}", i) for i in range(1, messages + 1)])  # fmt: skip

    def daemon(self, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([OUTREACH, "run", "--no-web", "--rules", str(self.rules), *extra], cwd=self.where,
                                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip

    def states(self) -> dict[str, int]:
        with sqlite3.connect(self.db) as db:
            return dict(db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())

    def message_ids(self, state: str) -> list[str]:
        with sqlite3.connect(self.db) as db:
            return [r[0] for r in db.execute("SELECT message_id FROM outbox WHERE state = ?", (state,))]


class Relay:
    """bench/drills/relay.py as a process: what it took is in `log`, one Message-ID a line."""

    def __init__(self, where: Path, *, delay: float = 0.0, script: Path | None = None) -> None:
        self.port = free_port()
        self.log = where / "relay.log"
        command = [sys.executable, str(Path(__file__).with_name("relay.py")), "--port", str(self.port), "--log",
                   str(self.log), "--delay", str(delay)]  # fmt: skip
        if script is not None:
            command += ["--script", str(script)]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise SystemExit(f"the drill relay did not start: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]

    def taken(self) -> collections.Counter[str]:
        if not self.log.exists():
            return collections.Counter()
        return collections.Counter(self.log.read_text().split())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_until(test: object, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test():  # type: ignore[operator]
            return True
        time.sleep(step)
    return False
