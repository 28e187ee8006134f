"""What the drills share: a project in a temporary directory whose rules send over SMTP to a drill relay, an outbox
seeded with queued messages, the relay and the daemon as processes, and the outbox and the relay's log read back."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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

    def __init__(self, where: Path, relay_port: int, *, pool: int = 8, timeout: str = "5s",
                 mailboxes: Mapping[str, Mapping[str, object]] | None = None) -> None:  # fmt: skip
        """`mailboxes` replaces the example's Settings.mailboxes (name -> server, as in settings.yaml). Without it
        the example's stay (its users name them), and none is read: their secrets are not set, which the daemon
        logs once; a drill about sending needs no IMAP server."""
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
        if mailboxes is not None:
            imap = "".join(f"  {name}: {json.dumps(server)}\n" for name, server in mailboxes.items())
            text = re.sub(r"^mailboxes:.*\n(?:  .*\n)+", f"mailboxes:\n{imap}", text, count=1, flags=re.M)
        settings.write_text(text, encoding="utf-8")
        self.env = {**os.environ, "OUTREACH_SECRET": SECRET, "OUTREACH_DB": self.url}

    def seed(self, messages: int, *, domains: tuple[str, ...] = ("example.org",)) -> None:
        asyncio.run(smtp_throughput.seed(f"sqlite+aiosqlite:///{self.db}", messages, 1500))
        if domains != ("example.org",):
            with sqlite3.connect(self.db) as db:
                db.executemany("UPDATE outbox SET recipient = ? WHERE id = ?",
                               [(f"p{i}@{domains[i % len(domains)]}", i) for i in range(1, messages + 1)])  # fmt: skip

    def daemon(self, *extra: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        """`outreach run`; its log lines go to the file `log` when given (a drill that reads them, or runs long
        enough to fill a pipe nobody reads), else to a pipe."""
        command = [OUTREACH, "run", "--no-web", "--rules", str(self.rules), *extra]
        if log is None:
            return subprocess.Popen(command, cwd=self.where, env=self.env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)  # fmt: skip
        with log.open("ab") as stderr:  # the daemon has its own copy of the file
            return subprocess.Popen(command, cwd=self.where, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr)

    def outreach(self, *args: str) -> str:
        """An `outreach` command on this project (its rules, its database); SystemExit with its output if it fails."""
        done = subprocess.run([OUTREACH, *args, "--rules", str(self.rules)], cwd=self.where, env=self.env,
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"outreach {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

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


UNFINISHED = frozenset({"queued", "sending", "deferred"})  # outbox states of mail not done with yet


def drained(project: Project) -> bool:
    """Whether every message of the outbox is done with (sent, failed, unknown ...)."""
    return not (UNFINISHED & set(project.states()))


def stop_daemon(proc: subprocess.Popen[bytes], timeout: float = 60) -> int | str:
    """SIGTERM, then its exit code; "did not stop" (and a SIGKILL) when it does not within `timeout`."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "did not stop"


def in_ci() -> bool:
    """CI=true (as tests/conftest.py reads it): a drill that cannot run there fails instead of skipping."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skipped(title: str, reason: str) -> int:
    """A drill that cannot run here: outside CI it says why and passes (exit 0); in CI it fails (exit 1)."""
    print(f"{title}: not run: {reason}")
    if in_ci():
        print("  verdict                    FAILED (CI=true: the drill must run)")
        return 1
    print(f"  verdict                    skipped ({reason})")
    return 0


# The PostgreSQL server the drills make their scratch databases on: the one the tests use (tests/stores.py).
PG_SERVER = os.environ.get("OUTREACH_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
DRILL = "outreach-drill"  # the application_name of the drills' own connections, told apart from the daemon's


async def _pg(url: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    import asyncpg  # the `postgres` extra: only the PostgreSQL drills need it
    import sqlalchemy as sa

    u = sa.make_url(url)
    conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                                 database=u.database, timeout=5, server_settings={"application_name": DRILL})  # fmt: skip
    try:
        return [tuple(r) for r in await conn.fetch(query, *args)]
    finally:
        await conn.close()


def pg(url: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    """Run one statement on the PostgreSQL database at `url` (a connection of its own) and return its rows."""
    return asyncio.run(_pg(url, query, *args))


def pg_problem(server: str = PG_SERVER) -> str | None:
    """Why the PostgreSQL server cannot be used, or None when it can."""
    try:
        pg(server, "SELECT 1")
    except ImportError:
        return "asyncpg is not installed (pip install -e '.[postgres]')"
    except Exception as exc:
        return f"no PostgreSQL at {server}: {type(exc).__name__}: {exc}"
    return None


class PostgresProject(Project):
    """The scratch project on a fresh PostgreSQL database of its own, made on `server` here and dropped by `drop`."""

    def __init__(self, where: Path, relay_port: int, *, server: str = PG_SERVER, **kwargs: object) -> None:
        import sqlalchemy as sa

        super().__init__(where, relay_port, **kwargs)  # type: ignore[arg-type]
        self.server = server
        self.name = f"outreach_drill_{os.urandom(5).hex()}"
        pg(server, f'CREATE DATABASE "{self.name}"')
        self.url = sa.make_url(server).set(drivername="postgresql+asyncpg", database=self.name) \
            .render_as_string(hide_password=False)  # fmt: skip
        self.env["OUTREACH_DB"] = self.url

    def seed(self, messages: int, *, domains: tuple[str, ...] = ("example.org",)) -> None:
        if domains != ("example.org",):
            raise ValueError("PostgresProject seeds to one domain")
        asyncio.run(smtp_throughput.seed(self.url, messages, 1500))  # PostgreSQL is upgraded here: the daemon does not

    def states(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in pg(self.url, "SELECT state, count(*) FROM outbox GROUP BY state")}

    def message_ids(self, state: str) -> list[str]:
        return [str(r[0]) for r in pg(self.url, "SELECT message_id FROM outbox WHERE state = $1", state)]

    def terminate(self) -> list[str]:
        """pg_terminate_backend on every connection to the project's database but the drill's own (one that
        reads the outbox may still be closing); the state each one ended was in (pg_stat_activity's: `idle`,
        `active`, `idle in transaction` ...)."""
        found = pg(self.server, "SELECT pg_terminate_backend(pid), state FROM pg_stat_activity "
                                "WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> $2",
                   self.name, DRILL)  # fmt: skip
        return [str(state) for ended, state in found if ended]

    def drop(self) -> None:
        pg(self.server, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Said:
    """What a daemon's log says of a database that fails: the claims and the writes of answers it refused (the
    dispatcher's warnings), the loops that failed (the supervisor's errors), whether it gave up, and the first
    reason given."""

    def __init__(self, text: str) -> None:
        lines = [line for line in text.splitlines() if re.match(r"^\S+ \S+ (WARNING|ERROR) ", line)]
        self.claims = sum(1 for line in lines if "no mail can be claimed" in line)
        self.writes = sum(1 for line in lines if "cannot be written" in line)
        self.failures = sum(1 for line in lines if re.search(r"\b\w+ failed \(", line))
        self.gave_up = any("the daemon stops" in line for line in lines)
        # "... (REASON); the rest", the supervisor's REASON being the first line of the exception's message
        found = re.search(r"(?:no mail can be claimed|cannot be written|\w failed) \((.*?)(?:\); |$)", "\n".join(lines),
                          re.M)  # fmt: skip
        self.reason = found.group(1) if found else None

    @property
    def complaints(self) -> int:
        return self.claims + self.writes + self.failures

    def __str__(self) -> str:
        return (f"{self.claims} claims and {self.writes} writes refused, {self.failures} loop failures"
                f"{', it gave up' if self.gave_up else ''}; first reason: {self.reason or '-'}")  # fmt: skip
