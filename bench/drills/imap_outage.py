"""Drill: an IMAP outage. Dovecot is stopped and started again while replies arrive: every reply is seen once, and
every sequence it answers stops.

    .venv/bin/python bench/drills/imap_outage.py [--people 200] [--outages 3] [--outage 10] [--quick]

A private Dovecot (tests/mailservers.py, the test suite's own) holds the mailboxes of the example's two users, anna
and ben; a drill relay (bench/drills/relay.py) takes the mail. PEOPLE leads from the web site are imported, half
owned by each user, and `outreach run` enrolls them in `welcome` and sends its first mail. Then each person
answers it (In-Reply-To its Message-ID), delivered into the owner's INBOX by IMAP APPEND as a mail server would,
in random order while the daemon reads them: one at a time, then a burst. OUTAGES times, as soon as the daemon
has applied the first reply of a burst (so that the cut comes while it reads the rest), Dovecot is stopped
(SIGTERM: every connection cut) for OUTAGE seconds and started again on the same port and mail. The replies that
arrive meanwhile wait on the sending side, as a mail server's queue holds them, and come in a burst once it is
back; the next ones wait until the daemon is logged in again. At the end it checks, and prints as figures:

- seen: people with a `replied` event; twice: people with more than one (must be 0); missed: people with none (0);
- sequences stopped: `welcome` enrollments stopped with the reason `replied` (one a person);
- the daemon's reconnections and failed attempts, as its log tells them, and the replies it found handled already
  (read again after a cut, and skipped);
- the daemon alive after the outages and stopping on SIGTERM with status 0; no traceback in its log; the relay
  took each welcome mail once.

--quick: 40 people, 2 outages of 3 s (CI runs it: tests/test_drills.py). Exit 1 when a check fails. Without
Dovecot it says so and is skipped, except in CI (CI=true), where that fails it.
"""

from __future__ import annotations

import argparse
import collections
import csv
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Project, Relay, skipped, stop_daemon, wait_until

from tests import mailservers  # the test suite's Dovecot (common put the repository on the path)

PASSWORD = "secret"
USERS = {"anna": "anna@example.com", "ben": "ben@example.com"}  # the example's users, each with a mailbox
_CONNECTED = re.compile(r"mailbox (\S+): connected to ")
_RETRY = re.compile(r"mailbox (\S+): .*; trying again in ")
_HANDLED = re.compile(r"mailbox \S+: UID \d+ was handled already")


class Dovecot(mailservers.Dovecot):
    """The test suite's Dovecot, which can also be stopped and started again on the same port, config and mail (its
    UIDVALIDITY and UIDs stay), as a restarted server would be."""

    def halt(self) -> None:
        self._stop_process()  # SIGTERM to its process group: every connection is cut

    def resume(self) -> None:
        dovecot = mailservers._sbin("dovecot")
        assert dovecot is not None
        with (self.dir / "dovecot.err").open("ab") as errors:
            self.process = subprocess.Popen([dovecot, "-F", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                            stdout=errors, stderr=errors, start_new_session=True)  # fmt: skip
        mailservers.wait_for_greeting(self.port, b"* OK", process=self.process)


def reply(our: str, person: str, user: str) -> bytes:
    """What a person writes back to our welcome: it names our message in In-Reply-To and References."""
    return (
        f"From: <{person}>\r\nTo: <{user}>\r\nSubject: Re: Welcome to Example\r\n"
        f"Message-ID: <reply.{person}>\r\nIn-Reply-To: {our}\r\nReferences: {our}\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "\r\nThanks, I have a question about the pricing.\r\n\r\n> thanks for signing up.\r\n"
    ).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--outages", type=int, default=3)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Dovecot is down each time")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="40 people, 2 outages of 3 s")
    args = parser.parse_args()
    if args.quick:
        args.people, args.outages, args.outage = 40, 2, 3.0
    if mailservers._sbin("dovecot") is None or mailservers._sbin("doveadm") is None:
        return skipped("IMAP outage drill", "Dovecot is not installed (apt-get install dovecot-imapd)")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="outreach-drill-imap-") as tmp:
        where = Path(tmp)
        relay = Relay(where)
        dovecot = Dovecot({address: PASSWORD for address in USERS.values()})
        proc: subprocess.Popen[bytes] | None = None
        try:
            server = {"host": dovecot.host, "port": dovecot.port, "security": "none", "password_env":
                      "DRILL_IMAP_PASSWORD", "timeout": "5s", "poll_every": "5s"}  # fmt: skip
            project = Project(where, relay.port, mailboxes={name: {**server, "username": address}
                                                            for name, address in USERS.items()})  # fmt: skip
            project.env["DRILL_IMAP_PASSWORD"] = PASSWORD
            people = where / "people.csv"
            with people.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["id", "type", "email", "first_name", "owner", "source"])
                for i in range(args.people):
                    writer.writerow(
                        [f"P{i}", "lead", f"p{i}@example.org", f"Person {i}", list(USERS)[i % 2], "website"]
                    )
            project.outreach("records", "import", str(people))
            log = where / "daemon.log"
            started = time.monotonic()
            proc = project.daemon("--tick", "0.5", log=log)
            sent = wait_until(lambda: project.states().get("sent", 0) >= args.people, 60, 0.2)
            with sqlite3.connect(project.db) as db:
                ours = db.execute("SELECT message_id, recipient, sender FROM outbox WHERE state = 'sent'").fetchall()
            rng.shuffle(ours)
            rounds = [ours[k :: args.outages + 1] for k in range(args.outages + 1)]

            def deliver(replies: list[tuple[str, str, str]], pause: float) -> None:
                for our, person, user in replies:
                    dovecot.append(user, PASSWORD, reply(our, person, user))
                    time.sleep(rng.uniform(0.0, pause))

            down: list[float] = []  # seconds Dovecot was stopped, each time
            back: list[float] = []  # seconds from its start until the daemon was logged in again to every mailbox
            unread: list[int] = []  # replies delivered and not yet applied when Dovecot stopped, each time
            thirds = [
                (b[: len(b) // 3], b[len(b) // 3 : len(b) - len(b) // 3], b[len(b) - len(b) // 3 :]) for b in rounds
            ]
            deliver(thirds[0][0], 0.05)
            for k, (_, middle, last) in enumerate(thirds):
                deliver(middle, 0.05)  # one at a time: the daemon reads each as it comes (IDLE)
                applied = _replied(project.db)
                deliver(last, 0.0)  # a burst, and the outage while the daemon reads it
                if k == args.outages:
                    break
                wait_until(lambda before=applied: _replied(project.db) > before, 10, 0.005)
                before = {name: n + 1 for name, n in _connections(log).items()}
                halted = time.monotonic()
                dovecot.halt()
                unread.append(sum(len(b) for t in thirds[: k + 1] for b in t) - _replied(project.db))
                time.sleep(args.outage)
                dovecot.resume()
                resumed = time.monotonic()
                down.append(resumed - halted)
                # What arrived meanwhile was queued by the senders' servers and comes in a burst; the rest waits
                # until the daemon is back, so that the next outage cuts connections it holds.
                deliver(thirds[k + 1][0], 0.0)
                wait_until(lambda want=before: _reconnected(log, want), 60, 0.05)
                back.append(time.monotonic() - resumed)
            done = wait_until(lambda: _replied(project.db) >= len(ours), 120, 0.2)
            time.sleep(2.0)  # a reply applied twice would show up now
            alive = proc.poll() is None
            stopping = time.monotonic()
            status = stop_daemon(proc)
            stop_seconds = time.monotonic() - stopping
            seconds = time.monotonic() - started
            taken = relay.taken()
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
            relay.stop()
            dovecot.stop()
        with sqlite3.connect(project.db) as db:
            replied = db.execute("SELECT record_id, count(*) FROM events WHERE kind = 'replied' GROUP BY record_id")
            seen = collections.Counter(dict(replied.fetchall()))
            enrollments = db.execute("SELECT record_id, status, reason FROM enrollments WHERE sequence = 'welcome'")
            ends = collections.Counter((status_, reason) for _, status_, reason in enrollments.fetchall())
        lines = log.read_text(errors="replace")
        connected = collections.Counter(_CONNECTED.findall(lines))
        reconnects = sum(connected.values()) - len(connected)
        retries = len(_RETRY.findall(lines))
        handled = len(_HANDLED.findall(lines))
        tracebacks = lines.count("Traceback")
        twice = sum(1 for n in seen.values() if n > 1)
        missed = args.people - len(seen)
        stopped = ends[("stopped", "replied")]
        taken_twice = sum(1 for n in taken.values() if n > 1)
        print(f"IMAP outage drill: {args.people} people, {args.outages} outages of {args.outage:g} s, "
              f"{seconds:.0f} s in all; welcome mails sent: {sent}, replies all seen: {done}")  # fmt: skip
        print(f"  replies appended           {len(ours)}")
        print(f"  outage seconds             {sum(down):.1f} (Dovecot stopped {len(down)} times: "
              f"{', '.join(f'{d:.1f}' for d in down)} s)")  # fmt: skip
        print(f"  unread at each stop        {', '.join(map(str, unread))} (delivered, not yet applied: the daemon "
              "was reading them)")  # fmt: skip
        print(f"  replies seen               {len(seen)}")
        print(f"  seen twice                 {twice}")
        print(f"  missed                     {missed}")
        print(f"  sequences stopped          {stopped} of {args.people} (welcome, reason replied); "
              f"enrollments {dict(sorted((f'{s} {r}', n) for (s, r), n in ends.items()))}")  # fmt: skip
        print(f"  daemon reconnects          {reconnects} (connections a mailbox {dict(sorted(connected.items()))}), "
              f"{retries} attempts failed")  # fmt: skip
        print(f"  back within                {', '.join(f'{b:.1f}' for b in back)} s of each start (its backoff)")
        print(f"  read again, skipped        {handled} (replies read again after a cut, found handled already)")
        print(f"  daemon                     alive after the outages: {alive}; SIGTERM: exit {status} "
              f"in {stop_seconds:.1f} s; tracebacks in its log: {tracebacks}")  # fmt: skip
        print(f"  taken twice                {taken_twice} (welcome mails the relay took more than once)")
        ok = (sent and done and len(ours) == args.people and twice == 0 and missed == 0 and stopped == args.people
              and reconnects >= args.outages * len(USERS) and alive and status == 0 and tracebacks == 0
              and taken_twice == 0)  # fmt: skip
        print(f"  verdict                    {'passed' if ok else 'FAILED'}")
        if not ok:
            print(lines[-4000:], file=sys.stderr)
        return 0 if ok else 1


def _connections(log: Path) -> dict[str, int]:
    """Connections the daemon's log says it made, by mailbox."""
    return dict(collections.Counter(_CONNECTED.findall(log.read_text(errors="replace"))))


def _reconnected(log: Path, want: dict[str, int]) -> bool:
    """Whether the daemon made at least `want` connections to each mailbox."""
    made = _connections(log)
    return all(made.get(name, 0) >= n for name, n in want.items())


def _replied(db_path: Path) -> int:
    """People with a `replied` event so far."""
    with sqlite3.connect(db_path) as db:
        return int(db.execute("SELECT count(DISTINCT record_id) FROM events WHERE kind = 'replied'").fetchone()[0])


if __name__ == "__main__":
    sys.exit(main())
