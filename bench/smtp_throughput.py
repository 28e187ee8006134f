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
It only prints; it exits 0 unless a check fails (1).
"""

from __future__ import annotations

import argparse
import asyncio
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

from outreach.app import scheduler  # noqa: E402 - after the path
from outreach.mail import message as mail_message  # noqa: E402
from outreach.mail import smtp  # noqa: E402
from outreach.rules import model, timing, validate  # noqa: E402
from outreach.store import Store, bulk, tables  # noqa: E402

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
TARGET = 0.30


def tool(name: str) -> str:
    for path in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/lib/postfix/sbin/{name}"):
        if path and os.path.exists(path):
            return path
    raise SystemExit(f"{name} not found: apt-get install postfix")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=3000, help="bytes per message (default 3000)")
    parser.add_argument("--pool", type=int, default=None, help="outreach's connections (default: --sessions)")
    parser.add_argument("--sessions", type=int, default=20, help="smtp-source's parallel sessions (default 20)")
    args = parser.parse_args()
    args.pool = args.pool or args.sessions

    work = Path(tempfile.mkdtemp(prefix="outreach-bench-smtp-"))
    port = free_port()
    sink = start_sink(port)
    try:
        url = f"sqlite:///{work / 'outbox.db'}"
        average = asyncio.run(seed(url, args.messages, args.size))
        print(f"outreach SMTP benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}; smtp-sink on 127.0.0.1:{port}")  # fmt: skip
        print(f"{args.messages:,} messages of about {average:,} bytes each\n")
        ref = reference(port, args.messages, average, args.sessions)
        seconds, sent = asyncio.run(dispatch(url, port, args.pool))
        conn = sqlite3.connect(work / "outbox.db")
        states = dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        conn.close()
        ref_rate, our_rate = args.messages / ref, args.messages / seconds
        print(f"{'':<52} {'seconds':>8} {'messages/s':>11}")
        print(f"  {f'smtp-source, {args.sessions} sessions (reference)':<50} {ref:8.2f} {ref_rate:11,.0f}")
        print(f"  {f'outreach dispatcher, pool of {args.pool}':<50} {seconds:8.2f} {our_rate:11,.0f}")
        print(f"  -> {our_rate / ref_rate:.0%} of smtp-source's rate; target at least {TARGET:.0%}: "
              f"{'met' if our_rate >= TARGET * ref_rate else 'NOT met'}; outbox: {states}")  # fmt: skip
        ok = sent == args.messages and states == {"sent": args.messages}
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    if not ok:
        print(f"expected {args.messages} sent, the dispatcher reported {sent}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
