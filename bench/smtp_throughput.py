"""Benchmark of sending: the daemon's dispatcher into Postfix's smtp-sink, next to smtp-source into the same sink.

Run on demand from the repository root (needs Postfix's smtp-sink and smtp-source: apt-get install postfix):

    .venv/bin/python bench/smtp_throughput.py [--messages 20000] [--size 3000] [--sessions 20] [--pool N]

It starts one smtp-sink on a free loopback port, then in the same run:

- reference: `smtp-source -s SESSIONS -l SIZE -m MESSAGES` into the sink (Postfix's own SMTP client, C);
- outreach: a SQLite store in a temporary file holding MESSAGES queued sequence messages of about SIZE bytes
  (built by outreach.mail.message, as the scheduler queues them), sent by `Scheduler.dispatch` over the SMTP
  transport with POOL connections, each message claimed (`sending`, committed) before it is sent and marked
  `sent` after, exactly as the daemon does. The outbox must end with every message `sent`. POOL defaults to
  SESSIONS, so both sides keep as many connections open (the relay's `pool_size` in Settings).

It prints messages per second for both and outreach's share of the reference. Target from issue 5: at least 30%.

With `--end-to-end`, outreach's side starts from due steps instead of a queued outbox, as issue 20 measures it:
the store of bench/scheduler.py with MESSAGES enrollments, all due, run as the daemon runs it: the scheduler's
tick (every step decided, rendered, built and queued) and the dispatcher's loop side by side, the dispatcher
sending what the tick has queued so far over POOL connections (default: the relay's documented default
`pool_size`) and writing each state; timed until every row is `sent`. smtp-source
sends as many messages of the same average size. Target from issue 20: at least 50%.

It only prints (`measure()` returns the figures, for `python -m bench`); it exits 0 unless a check fails (1).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import scheduler as scheduler_bench  # noqa: E402 - bench/scheduler.py, beside this file: its store of due steps

from outreach.app import scheduler  # noqa: E402 - after the path
from outreach.mail import message as mail_message  # noqa: E402
from outreach.mail import smtp  # noqa: E402
from outreach.rules import model, timing, validate  # noqa: E402
from outreach.store import Store, bulk, tables  # noqa: E402

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
TARGET = 0.30  # issue 5: the dispatcher alone, from a queued outbox
END_TO_END_TARGET = 0.50  # issue 20: from due steps to `sent`, on the default pool size


class NotInstalled(SystemExit):
    """A tool of Postfix is missing: the benchmark cannot run here (the command exits with the message)."""


def tool(name: str) -> str:
    for path in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/lib/postfix/sbin/{name}"):
        if path and os.path.exists(path):
            return path
    raise NotInstalled(f"{name} not found: apt-get install postfix")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    command = [tool("smtp-sink")]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # smtp-sink refuses to run as root
    command += ["-c", f"127.0.0.1:{port}", "1000"]
    sink = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(3) == b"220":
                    return sink
        except OSError:
            time.sleep(0.05)
    sink.kill()
    raise SystemExit("smtp-sink did not start")


def reference(port: int, messages: int, size: int, sessions: int) -> float:
    """Seconds smtp-source takes to send `messages` of `size` bytes over `sessions` connections."""
    command = [tool("smtp-source"), "-s", str(sessions), "-l", str(size), "-m", str(messages),
               "-f", "anna@example.com", "-t", "p@example.org", f"127.0.0.1:{port}"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def body_of(size: int) -> str:
    line = "Thanks for joining the webinar; here are the slides and a few notes from the session.\n"
    return line * max(1, size // len(line))


async def seed(url: str, messages: int, size: int) -> int:
    """Queue `messages` built messages in the outbox; returns their average size in bytes."""
    store = await Store.open(url, upgrade=True)
    text = body_of(size - 600)  # headers take about 600 bytes
    rows, total = [], 0
    for n in range(messages):
        data = mail_message.build(
            sender=("Anna Berger", "anna@example.com"), to=f"p{n}@example.org", subject=f"Notes from the webinar {n}",
            text=text, html=None, message_id=f"<bench-{n}@example.com>", date=NOW,
            extra_headers={"X-Outreach-Enrollment": str(n), "X-Outreach-Step": "notes"},
        )  # fmt: skip
        total += len(data)
        rows.append({"sender": "anna@example.com", "recipient": f"p{n}@example.org", "subject": f"Notes {n}",
                     "message_id": f"<bench-{n}@example.com>", "message": data, "state": "queued", "attempts": 0,
                     "created_at": NOW})  # fmt: skip
    async with store.engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            await bulk.insert(conn, tables.outbox, rows[start : start + 5000])
    await store.close()
    return total // max(1, messages)


async def dispatch(url: str, port: int, pool: int) -> tuple[float, int]:
    result = validate.validate([str(ROOT / "rules")])
    assert result.ruleset is not None
    store = await Store.open(url)
    relay = model.Server(name="sink", host="127.0.0.1", port=port, security=model.Security.NONE, pool_size=pool,
                         timeout=timing.Duration(seconds=30))  # fmt: skip
    transport = smtp.SmtpTransport(relay)
    sched = scheduler.Scheduler(store, result.ruleset, transport)
    report = scheduler.TickReport()
    start = time.perf_counter()
    await sched.dispatch(NOW, report)
    seconds = time.perf_counter() - start
    await transport.close()
    await store.close()
    return seconds, report.sent


async def end_to_end(db: Path, port: int, messages: int, pool: int | None) -> tuple[float, int, int]:
    """Seconds from `messages` due steps to every message sent and its state written, the scheduler's tick and
    the dispatcher side by side as in the daemon, on the store of bench/scheduler.py (seeded first, not timed);
    returns them, how many were reported sent, and the pool's size (None: the relay's default)."""
    ruleset, _ = await scheduler_bench.prepare(db, messages, "nudge")
    scheduler_bench.make_due(db, messages, messages)
    store = await Store.open(f"sqlite:///{db}", fields=ruleset.settings.fields)
    relay = model.Server(name="sink", host="127.0.0.1", port=port, security=model.Security.NONE,
                         timeout=timing.Duration(seconds=30))  # fmt: skip
    if pool is not None:
        relay = dataclasses.replace(relay, pool_size=pool)
    transport = smtp.SmtpTransport(relay)
    sched = scheduler_bench.make_scheduler(store, ruleset, transport)
    start = time.perf_counter()
    # As the daemon runs them: the scheduler's tick (due steps rendered into the outbox) and the dispatcher's loop
    # (the outbox handed to the relay) side by side, the dispatcher claiming what the tick has queued so far.
    ticked = asyncio.Event()
    sent = scheduler.TickReport()

    async def ticking() -> None:
        try:
            await sched.tick(scheduler_bench.NOW, dispatch=False)
        finally:
            ticked.set()

    async def dispatching() -> None:
        while True:
            done = ticked.is_set()  # read before the dispatch: what the tick queued before it is claimed by it
            await sched.dispatch(scheduler_bench.NOW, sent)
            if done:
                return
            await asyncio.sleep(0.01)

    await asyncio.gather(ticking(), dispatching())
    seconds = time.perf_counter() - start
    await transport.close()
    await store.close()
    return seconds, sent.sent, relay.pool_size


def measure(messages: int = 20_000, sessions: int = 20, pool: int | None = None, size: int = 3000,
            from_due: bool = False) -> dict[str, float]:  # fmt: skip
    """The benchmark against a fresh smtp-sink; prints as the command does and returns the figures. `from_due`:
    end to end (pool None: the relay's default); else the dispatcher alone (pool None: `sessions`). Raises
    NotInstalled without Postfix's tools, RuntimeError when the outbox does not end all `sent`."""
    work = Path(tempfile.mkdtemp(prefix="outreach-bench-smtp-"))
    port = free_port()
    sink = start_sink(port)
    try:
        db = work / "outbox.db"
        print(f"outreach SMTP benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}; smtp-sink on 127.0.0.1:{port}")  # fmt: skip
        if from_due:
            seconds, sent, pool = asyncio.run(end_to_end(db, port, messages, pool))
            conn = sqlite3.connect(db)
            average = int(conn.execute("SELECT avg(length(message)) FROM outbox").fetchone()[0] or 0)
            conn.close()
            ours = f"outreach, due steps to sent, pool of {pool}"
            target = END_TO_END_TARGET
        else:
            pool = pool or sessions
            average = asyncio.run(seed(f"sqlite:///{db}", messages, size))
            ours = f"outreach dispatcher, pool of {pool}"
            target = TARGET
        print(f"{messages:,} messages of about {average:,} bytes each\n")
        ref = reference(port, messages, average, sessions)
        if not from_due:
            seconds, sent = asyncio.run(dispatch(f"sqlite:///{db}", port, pool))
        conn = sqlite3.connect(db)
        states = dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        conn.close()
        ref_rate, our_rate = messages / ref, messages / seconds
        print(f"{'':<52} {'seconds':>8} {'messages/s':>11}")
        print(f"  {f'smtp-source, {sessions} sessions (reference)':<50} {ref:8.2f} {ref_rate:11,.0f}")
        print(f"  {ours:<50} {seconds:8.2f} {our_rate:11,.0f}")
        print(f"  -> {our_rate / ref_rate:.0%} of smtp-source's rate; target at least {target:.0%}: "
              f"{'met' if our_rate >= target * ref_rate else 'NOT met'}; outbox: {states}")  # fmt: skip
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    if sent != messages or states != {"sent": messages}:
        raise RuntimeError(f"expected {messages} sent, outreach reported {sent}; outbox: {states}")
    return {"messages": messages, "bytes": average, "pool": pool, "sessions": sessions, "seconds": seconds,
            "reference_seconds": ref, "rate": our_rate, "reference_rate": ref_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=3000, help="bytes per message (default 3000; not --end-to-end)")
    parser.add_argument("--pool", type=int, default=None,
                        help="outreach's connections (default: --sessions; with --end-to-end the relay's default)")
    parser.add_argument("--sessions", type=int, default=20, help="smtp-source's parallel sessions (default 20)")
    parser.add_argument("--end-to-end", action="store_true", help="from due steps to `sent` (issue 20)")
    args = parser.parse_args()
    try:
        measure(args.messages, args.sessions, args.pool, args.size, from_due=args.end_to_end)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
