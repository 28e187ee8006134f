"""Benchmarks of the scheduler: an idle tick over many enrollments, and a burst of due email steps.

Run on demand from the repository root:

    .venv/bin/python bench/scheduler.py [--enrollments 1000000] [--due 10000] [--bursts 3] [--ticks 20]
                                        [--step nudge] [--keep]

It builds a SQLite store in a temporary file (schema from the migrations, the
example rules' definitions applied; the users' daily limits are left out, as
they would hold back most of the burst), then seeds it with raw sqlite3: 1,000
lead records with a first name and a company, and M active enrollments (default
1,000,000) in the example's inbound-nurture sequence at its current version,
enrolled by anna, one address each, their intro sent three days ago and their
next step (the `nudge` reply) due a week from now.

- Idle tick: one `Scheduler.tick(now)` with nothing due, with the example
  rules' `enroll_when` sequences (their auto-enrollment queries run when a
  record changed, and every hour) and a Maildir transport. One warm-up tick,
  then best and median of T timed ticks (default 20), and the median of each
  of its phases on its own: the one query that says what there is to do, the
  phases that run at every tick, and, for comparison, the phases the tick
  skips when that query finds nothing for them. Target from the issue: under
  5 ms.
- Due steps, in B bursts (default 3, each on other enrollments; the target is
  judged on their median): N of those enrollments (default 10,000, spread
  over all records) are made due a minute ago, and one `run_due` loop runs until nothing is due,
  as a tick does: each step is decided, rendered, built into message bytes and
  queued in the outbox, with the enrollment's next step, 500 to a transaction.
  The outbox must then hold N queued messages. Target from the issue: under
  2 s. Then, timed on its own, the checkpoint that the daemon runs after such
  a tick (SQLite's WAL copied into the database file; docs/operations.md). `--step intro` makes the due step the first one (text and
  HTML) instead of the nudge (text only, a reply in the intro's thread).

For reference, in the same run, it times N calls of `outreach.mail.message.build`
alone, and N decisions (`engine.sequences.decide`: sender, merge, rendering)
plus builds with no store, so the reader sees what is message building,
what is the engine and what is the store.

With `--daemon`, it then makes N more enrollments due and runs the real daemon on the same store,
`outreach run --once` (one tick: the due steps queued, then handed to the Maildir transport), as a
subprocess, and prints its wall time and peak memory (the kernel's ru_maxrss of that process alone).

It only prints (`measure()` returns the figures, for `python -m bench`); it exits 0 unless a check fails (1).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import store as store_bench  # noqa: E402 - bench/store.py, beside this file: its timed() reads a child's rusage

from outreach.app import rules as app_rules  # noqa: E402 - after the path
from outreach.app import scheduler  # noqa: E402
from outreach.engine import sequences as seq  # noqa: E402
from outreach.mail import links  # noqa: E402
from outreach.mail import message as mail_message  # noqa: E402
from outreach.mail import transport as mail_transport  # noqa: E402
from outreach.rules import model, validate  # noqa: E402
from outreach.store import Store  # noqa: E402

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)  # a Monday, 09:00 in Berlin
RECORDS = 1000
FIRST = ["Jo", "Kim", "Sam", "Anna", "Ben", "Lena", "Max", "Mia", "Noah", "Emma", "Luca", "Sofia"]
COMPANIES = ["Fjord AS", "ACME GmbH", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne & Co"]
UNSUBSCRIBE = "https://t.example.com/u/abc"
TICK_TARGET = 0.005
DUE_TARGET = 2.0


def stamp(value: dt.datetime) -> str:
    """A UTC datetime as SQLAlchemy's DateTime keeps it in SQLite (the store compares these as text)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def load_rules() -> model.RuleSet:
    """The example rules without the users' daily limits (300 a day would hold back most of the burst)."""
    result = validate.validate([str(ROOT / "rules")])
    if result.ruleset is None:
        raise SystemExit("the example rules do not validate")
    settings = result.ruleset.settings
    users = {k: dataclasses.replace(u, daily_limit=None) for k, u in settings.users.items()}
    return dataclasses.replace(result.ruleset, settings=dataclasses.replace(settings, users=users))


def seed(db: Path, version: str, m: int, step: str) -> float:
    """Records and M enrollments with raw sqlite3, in one transaction. Returns seconds."""
    index, done = (1, 1) if step == "nudge" else (0, 0)
    started = stamp(NOW - dt.timedelta(days=3))
    later = stamp(NOW + dt.timedelta(days=7))
    start = time.perf_counter()
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO records (id, type, email, fields, created_at, updated_at) VALUES (?, 'lead', ?, ?, ?, ?)",
            ((f"L{i:07d}", f"r{i}@example.org",
              json.dumps({"first_name": FIRST[i % len(FIRST)], "company": COMPANIES[i % len(COMPANIES)]}),
              started, started)
             for i in range(RECORDS)),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO enrollments (record_id, email, sequence, sequence_hash, enrolled_by, status, step_index,"
            " steps_done, next_due_at, started_at, last_step_at, thread_message_id, thread_subject, awaiting_task)"
            " VALUES (?, ?, 'inbound-nurture', ?, 'anna', 'active', ?, ?, ?, ?, ?, ?, ?, 0)",
            ((f"L{i % RECORDS:07d}", f"p{i}@example.org", version, index, done, later, started,
              started if done else None, f"<intro-{i}@example.com>" if done else None,
              f"Quick question, {FIRST[i % RECORDS % len(FIRST)]}" if done else None)
             for i in range(m)),
        )  # fmt: skip
    conn.close()
    return time.perf_counter() - start


def make_due(db: Path, m: int, n: int, burst: int = 0) -> list[int]:
    """Make N enrollments due a minute ago: ids 1, 1+97, 1+2*97, ... (97 is prime to 1000: every record); the
    next burst's are 2, 2+97, ... On a store too small to spread them, N consecutive ids, each burst the next N."""
    if m >= 97 * n and burst < 97:
        ids = [1 + burst + 97 * k for k in range(n)]
    else:
        ids = [1 + burst * n + k for k in range(n)]
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("UPDATE enrollments SET next_due_at = ? WHERE id = ?",
                         ((stamp(NOW - dt.timedelta(minutes=1)), i) for i in ids))  # fmt: skip
    conn.close()
    return ids


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


async def timed(coro_fn: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await coro_fn()
        times.append(time.perf_counter() - start)
    return times


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


def reference(ruleset: model.RuleSet, n: int, step: str) -> tuple[float, float]:
    """(seconds for N builds alone, seconds for N decisions plus builds), no store."""
    sequence = ruleset.sequences["inbound-nurture"]
    index = 1 if step == "nudge" else 0
    decisions = []
    start = time.perf_counter()
    for i in range(n):
        first = FIRST[i % len(FIRST)]
        e = seq.Enrollment(
            id=i + 1, record_id=f"L{i % RECORDS:07d}", email=f"p{i}@example.org", sequence=sequence.name,
            version=sequence.source.hash, enrolled_by="anna", status=seq.Status.ACTIVE, step_index=index,
            steps_done=index, next_due_at=NOW - dt.timedelta(minutes=1), started_at=NOW - dt.timedelta(days=3),
            thread_message_id=f"<intro-{i}@example.com>" if index else None,
            thread_subject=f"Quick question, {first}" if index else None,
        )  # fmt: skip
        who = seq.Recipient(e.record_id, "lead", e.email, None, None,
                            {"first_name": first, "company": COMPANIES[i % len(COMPANIES)]})  # fmt: skip
        d = seq.decide(e, sequence, who, ruleset, NOW, unsubscribe_url=UNSUBSCRIBE)
        assert isinstance(d, seq.SendEmail), d
        decisions.append((e, d))
        _build(e, d)
    both = time.perf_counter() - start
    start = time.perf_counter()
    for e, d in decisions:
        _build(e, d)
    return time.perf_counter() - start, both


def _build(e: seq.Enrollment, d: seq.SendEmail) -> bytes:
    """What Scheduler._message does."""
    return mail_message.build(
        sender=(d.sender.name, d.sender.email), to=d.to, subject=d.rendered.subject, text=d.rendered.text,
        html=d.rendered.html, message_id=mail_message.new_message_id("example.com", uuid.uuid4().hex), date=NOW,
        in_reply_to=d.in_reply_to, extra_headers={"X-Outreach-Enrollment": str(e.id), "X-Outreach-Step": d.step.id,
                                                  "X-Outreach-Sequence": e.sequence},
        unsubscribe=(UNSUBSCRIBE, None),
    )  # fmt: skip


async def prepare(db: Path, enrollments: int, step: str) -> tuple[model.RuleSet, float]:
    """The store at `db`: the schema, the example rules applied, then seeded (`seed`). Returns the rules (as
    `load_rules`) and the seconds the seeding took."""
    ruleset = load_rules()
    store = await Store.open(f"sqlite:///{db}", fields=ruleset.settings.fields)
    await app_rules.apply(store, ruleset, now=NOW - dt.timedelta(days=4))
    await store.close()
    return ruleset, seed(db, ruleset.sequences["inbound-nurture"].source.hash, enrollments, step)


def make_scheduler(store: Store, ruleset: model.RuleSet,
                   transport: mail_transport.Transport | None) -> scheduler.Scheduler:  # fmt: skip
    """The scheduler as the daemon builds it, with signed links (so messages carry List-Unsubscribe)."""
    return scheduler.Scheduler(store, ruleset, transport,
                               links=links.Links("https://t.example.com", links.Keys((b"k" * 32,))))  # fmt: skip


async def run(args: argparse.Namespace, work: Path) -> dict[str, float]:
    """Seed the store in `work`, time the idle tick and the bursts, print them; returns the figures ("ok" is 0
    when a check failed)."""
    db = work / "scheduler.db"
    url = f"sqlite:///{db}"
    print(f"outreach scheduler benchmark: Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    ruleset, seeding = await prepare(db, args.enrollments, args.step)
    size_mb = db.stat().st_size / 1e6 + ((work / "scheduler.db-wal").stat().st_size / 1e6
                                         if (work / "scheduler.db-wal").exists() else 0)  # fmt: skip
    print(f"store: {RECORDS:,} records, {args.enrollments:,} active enrollments in inbound-nurture, next step "
          f"`{args.step}` due in 7 days (seeded with sqlite3 in {seeding:.1f} s, {size_mb:.0f} MB)")  # fmt: skip
    auto = [s.name for s in ruleset.sequences.values() if s.enroll_when is not None]
    print(f"sequences with enroll_when (queried every tick): {', '.join(auto)}")

    ok = True
    figures: dict[str, float] = {"enrollments": args.enrollments, "due": args.due, "seed_seconds": seeding}
    store = await Store.open(url, fields=ruleset.settings.fields)
    try:
        sched = make_scheduler(store, ruleset, mail_transport.MaildirTransport(work / "outbox"))

        # --- 1. the idle tick ---------------------------------------------------------------
        start = time.perf_counter()
        warm = await sched.tick(NOW)
        warm_up = time.perf_counter() - start
        reports: list[scheduler.TickReport] = []

        async def tick() -> None:
            reports.append(await sched.tick(NOW))

        ticks = await timed(tick, args.ticks)
        if str(warm) != "nothing to do" or any(str(r) != "nothing to do" for r in reports):
            print(f"  a tick did something: {warm}; {reports[-1]}", file=sys.stderr)
            ok = False
        report = scheduler.TickReport()
        pending = await store.pending(NOW)
        phases = {
            "pending (what there is to do: one query)": lambda: store.pending(NOW),
            "auto_enroll (no record changed)": lambda: sched.auto_enrollment.run(NOW, pending.record_changed),
            "reminders (no process pass due)": lambda: sched.reminders.run_after_change(NOW, pending.record_changed),
            "skipped: resume_tasks (finished task steps)": lambda: sched.resume_tasks(NOW),
            "skipped: run_due (nothing due)": lambda: sched.run_due(NOW, report),
            "skipped: dispatch (nothing queued)": lambda: sched.dispatch(NOW, report),
        }
        best, median = min(ticks), statistics.median(ticks)
        print(f"\n{f'idle tick over {args.enrollments:,} enrollments, nothing due':<58} {'ms':>8}")
        print(f"  {'warm-up tick (first auto-enrollment scan)':<56} {ms(warm_up)}")
        print(f"  {f'tick, best of {args.ticks}':<56} {ms(best)}")
        print(f"  {f'tick, median of {args.ticks}':<56} {ms(median)}")
        for name, fn in phases.items():
            print(f"    {name + ', median':<54} {ms(statistics.median(await timed(fn, args.ticks)))}")
        print(f"  target: under 5 ms -> {'met' if median < TICK_TARGET else 'NOT met'} (median)")
        figures.update(tick_median_ms=median * 1000, tick_best_ms=best * 1000, warm_up_ms=warm_up * 1000)

        # --- 2. a burst of due steps -------------------------------------------------------------
        build_alone, decide_build = reference(ruleset, args.due, args.step)
        step = "nudge: text, a reply" if args.step == "nudge" else "intro: text and HTML"
        title = f"{args.due:,} due email steps ({step}), batches of {sched.batch}"
        print(f"\n{title:<58} {'seconds':>8} {'steps/s':>9}")
        print(f"  {'reference: mail.message.build alone':<56} {build_alone:8.2f} {args.due / build_alone:9,.0f}")
        print(f"  {'reference: engine decide + build, no store':<56} {decide_build:8.2f} "
              f"{args.due / decide_build:9,.0f}")  # fmt: skip
        bursts = []
        for burst in range(args.bursts):
            make_due(db, args.enrollments, args.due, burst)
            report = scheduler.TickReport()
            loops = 0
            start = time.perf_counter()
            while await sched.run_due(NOW, report) >= sched.batch:
                loops += 1
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            pages = await store.checkpoint()  # what the daemon does after the tick, once its mail is out
            checkpoint = time.perf_counter() - start
            bursts.append(seconds)
            queued = count(db, "SELECT count(*) FROM outbox WHERE state = 'queued'")
            still_due = count(db, f"SELECT count(*) FROM enrollments WHERE status = 'active' "
                                  f"AND next_due_at <= '{stamp(NOW)}'")  # fmt: skip
            if queued != args.due * (burst + 1) or report.queued != args.due or still_due:
                print(f"  expected {args.due:,} more queued: outbox {queued:,}, report {report}, {still_due:,} "
                      "still due", file=sys.stderr)  # fmt: skip
                ok = False
            print(f"  {f'burst {burst + 1}: run_due until nothing is due ({loops + 1} calls)':<56} "
                  f"{seconds:8.2f} {args.due / seconds:9,.0f}")  # fmt: skip
            print(f"  {'  then the checkpoint: the WAL into the database file':<56} {checkpoint:8.2f}   "
                  f"({pages:,} pages; the daemon runs it after the tick's mail is handed over)")  # fmt: skip
        seconds = statistics.median(bursts)
        print(f"  {f'run_due, median of {args.bursts} bursts':<56} {seconds:8.2f} {args.due / seconds:9,.0f}")
        print(f"  -> {report} a burst; outbox: {queued:,} queued. By the references, message building would be "
              f"{build_alone / seconds:.0%} of the run_due time and the engine's decisions "
              f"{(decide_build - build_alone) / seconds:.0%}; the rest is the store and the glue")  # fmt: skip
        print(f"  target: under 2 s -> {'met' if seconds < DUE_TARGET else 'NOT met'} (median)")
        figures.update(due_median_s=seconds, due_best_s=min(bursts), build_s=build_alone, decide_build_s=decide_build)
    finally:
        await store.close()
    figures["ok"] = float(ok)
    return figures


def daemon_tick(work: Path, enrollments: int, due: int, burst: int) -> dict[str, float]:
    """The real daemon, `outreach run --once`, on the store `run` left in `work`, with `due` more enrollments due
    (burst number `burst`, so not those of the bursts): one tick queues their steps and hands them to a Maildir.
    Prints and returns its wall time and peak RSS, read from the kernel's rusage of that process alone."""
    db = work / "scheduler.db"
    conn = sqlite3.connect(db)
    with conn:  # the bursts' queued mail is not this tick's work: it would only add Maildir files
        conn.execute("UPDATE outbox SET state = 'sent' WHERE state = 'queued'")
    conn.close()
    make_due(db, enrollments, due, burst)
    rules = work / "rules"
    shutil.copytree(ROOT / "rules", rules, dirs_exist_ok=True)
    settings = rules / "settings.yaml"  # as load_rules: no daily limits, which would hold back most of the tick
    settings.write_text(settings.read_text(encoding="utf-8").replace(", daily_limit: 300", ""), encoding="utf-8")
    env = {**os.environ, "OUTREACH_SECRET": "bench-secret-of-at-least-thirty-two-bytes"}
    command = [str(Path(sys.executable).with_name("outreach")), "run", "--once", "--no-web", "--now",
               NOW.strftime("%Y-%m-%dT%H:%M:%SZ"), "--rules", str(rules), "--db", f"sqlite:///{db}"]  # fmt: skip
    seconds, peak, out = store_bench.timed(command, work, env=env)
    sent = count(db, "SELECT count(*) FROM outbox WHERE state = 'sent'")
    delivered = len(list((work / "var" / "outbox" / "new").iterdir())) if (work / "var" / "outbox" / "new").exists() \
        else 0  # fmt: skip
    print(f"\nthe daemon: `outreach run --once` over {enrollments:,} enrollments, {due:,} of them due")
    print(f"  {'one tick (start-up, the due steps queued and handed to a Maildir)':<66} {seconds:8.2f} s")
    print(f"  {'peak RSS of the daemon process (ru_maxrss)':<66} {peak:8.0f} MB")
    print(f"  its log: {out.strip().splitlines()[-1] if out.strip() else '(nothing)'}")
    if delivered != due:
        print(f"  expected {due:,} messages in the Maildir, found {delivered:,} ({sent:,} sent in all)", file=sys.stderr)
    return {"daemon_seconds": seconds, "daemon_peak_mb": peak, "ok": float(delivered == due)}


def measure(enrollments: int = 1_000_000, due: int = 10_000, ticks: int = 20, bursts: int = 3, step: str = "nudge",
            daemon: bool = False) -> dict[str, float]:  # fmt: skip
    """The whole benchmark in a temporary directory (and, with `daemon`, `daemon_tick` after it); prints as the
    command does and returns the figures of `run` and `daemon_tick`. Raises RuntimeError when a check fails."""
    args = argparse.Namespace(enrollments=enrollments, due=due, ticks=ticks, bursts=bursts, step=step)
    work = Path(tempfile.mkdtemp(prefix="outreach-bench-scheduler-"))
    try:
        figures = asyncio.run(run(args, work))
        if daemon and figures["ok"]:
            figures.update(daemon_tick(work, enrollments, due, bursts))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not figures["ok"]:
        raise RuntimeError("a check failed (see above)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--enrollments", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--bursts", type=int, default=3, help="bursts of due steps, each on other enrollments")
    parser.add_argument("--step", choices=["nudge", "intro"], default="nudge", help="the step that falls due")
    parser.add_argument("--daemon", action="store_true",
                        help="then one tick of the real daemon (outreach run --once) with --due more due: its peak RSS")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and print where")
    args = parser.parse_args()
    if args.bursts < 1 or args.due * (args.bursts + args.daemon) > args.enrollments:
        parser.error("--due times --bursts (one more with --daemon) cannot exceed --enrollments "
                     "(and --bursts is at least 1)")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="outreach-bench-scheduler-"))
    try:
        figures = asyncio.run(run(args, work))
        if args.daemon and figures["ok"]:
            figures.update(daemon_tick(work, args.enrollments, args.due, args.bursts))
        ok = bool(figures["ok"])
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
