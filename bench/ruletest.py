"""Benchmark of `outreach test`: 100 RuleTests of a month of simulated time each.

Run on demand from the repository root:

    .venv/bin/python bench/ruletest.py [--tests 100] [--days 30] [--runs 3] [--keep]

It writes a rule directory in a temporary directory: the example rules (Settings, templates, the
inbound-nurture and welcome sequences, the partner-leads process; not the campaign and its view:
these month-long tests start in November, months before its send time)
and N RuleTests (default 100), each running `--days` days (default 30) from a Monday. They take turns
among four shapes, so the run exercises every part of the daemon's tick:

- nurture to the end: two leads enrolled in inbound-nurture, the call task completed, the promo sent;
- a reply ends it: a lead enrolled, replying after the follow-up; a second lead bounces after the intro;
- welcome: two sign-ups from the web site, auto-enrolled on import and welcomed, checked in three days later;
- reminders: two leads overdue in New and Contacted, reminded weekly; one moves on, one gets a task.

Each test states what it expects, and every test must pass (exit 1 otherwise). Then it times
`outreach.review.ruletests.run_all` over all of them (the rules validated once, before the clock starts), R runs
(default 3), and prints the best and median, the seconds per RuleTest and per simulated day, and the target
from the issue: under 5 s for 100 RuleTests of a month (judged on the median). For reference it also times
the whole command (`outreach test DIR`, a subprocess: start-up, imports and validation included). It only
prints (`measure()` returns the figures, for `python -m bench`); no test of the suite checks a time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.review import ruletests as ruletest  # noqa: E402 - after the path
from outreach.rules import validate  # noqa: E402

START = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)  # a Monday, 09:00 in Berlin
TARGET = 5.0


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def shape(i: int, days: int) -> str:
    """The i-th RuleTest: one of four shapes, started on a Monday (one of four weeks)."""
    start = START + dt.timedelta(weeks=i % 4)
    head = f"kind: RuleTest\nname: bench {i}\nstart: {iso(start)}\nuntil: {iso(start + dt.timedelta(days=days))}\n"
    at = lambda days_, hours=0.0: iso(start + dt.timedelta(days=days_, hours=hours))  # noqa: E731
    kind = i % 4
    if kind == 0:
        return (
            head
            + f"""records:
  - {{id: A{i}, type: lead, email: a{i}@example.org, first_name: Ada, company: Nordlicht, owner: anna}}
  - {{id: B{i}, type: contact, email: b{i}@example.org, first_name: Bo, owner: ben}}
events:
  - {{at: {at(0)}, enroll: {{sequence: inbound-nurture, record: A{i}, as: anna}}}}
  - {{at: {at(0, 1)}, enroll: {{sequence: inbound-nurture, record: B{i}, as: ben}}}}
  - {{at: {at(4, 6)}, complete_task: {{record: A{i}}}}}
  - {{at: {at(4, 7)}, complete_task: {{record: B{i}}}}}
expect:
  sent:
    - {{at: {at(0)}, to: a{i}@example.org, template: intro}}
    - {{at: {at(0, 1)}, to: b{i}@example.org, template: intro}}
    - {{at: {at(2)}, to: a{i}@example.org, template: follow-up}}
    - {{at: {at(2, 1)}, to: b{i}@example.org, template: follow-up}}
    - {{at: {{after: {at(5)}, before: {at(9)}}}, to: a{i}@example.org, template: promo}}
    - {{at: {{after: {at(5)}, before: {at(9)}}}, to: b{i}@example.org, template: promo}}
  tasks:
    - {{record: A{i}, subject: Call the lead}}
  enrollments:
    - {{record: A{i}, sequence: inbound-nurture, status: completed}}
    - {{record: B{i}, sequence: inbound-nurture, status: completed}}
"""
        )
    if kind == 1:
        return (
            head
            + f"""records:
  - {{id: R{i}, type: lead, email: r{i}@example.org, first_name: Rui, owner: anna}}
  - {{id: X{i}, type: lead, email: x{i}@example.net, first_name: Xia, owner: anna}}
events:
  - {{at: {at(0)}, enroll: {{sequence: inbound-nurture, record: R{i}, as: anna}}}}
  - {{at: {at(0)}, enroll: {{sequence: inbound-nurture, record: X{i}, as: anna}}}}
  - {{at: {at(0, 0.5)}, bounce: {{record: X{i}, status: 5.1.1}}}}
  - {{at: {at(2, 4)}, reply: {{record: R{i}}}}}
expect:
  sent:
    - {{at: {at(0)}, to: r{i}@example.org, template: intro}}
    - {{at: {at(0)}, to: x{i}@example.net, template: intro}}
    - {{at: {at(2)}, to: r{i}@example.org, template: follow-up}}
  enrollments:
    - {{record: R{i}, sequence: inbound-nurture, status: stopped, reason: replied}}
    - {{record: X{i}, sequence: inbound-nurture, status: blocked, reason: bounced}}
"""
        )
    if kind == 2:
        return (
            head
            + f"""records:
  - {{id: W{i}, type: lead, email: w{i}@example.org, first_name: Wim, owner: ben, source: website}}
  - {{id: V{i}, type: lead, email: v{i}@example.org, owner: anna, source: website}}
events:
  - {{at: {at(1)}, set: {{record: V{i}, first_name: Vera}}}}
expect:
  sent:
    - {{at: {at(0)}, to: w{i}@example.org, template: welcome}}
    - {{at: {at(0)}, to: v{i}@example.org, template: welcome}}
    - {{at: {at(3)}, to: w{i}@example.org, template: check-in}}
    - {{at: {at(3)}, to: v{i}@example.org, template: check-in}}
  updates:
    - {{record: V{i}, field: first_name, value: Vera}}
"""
        )
    # the reminders: a Monday start, New max 2 days, Contacted max 1 week; the daily run is 07:00 UTC
    entered = iso(start - dt.timedelta(days=2, hours=1))
    return (
        head
        + f"""records:
  - {{id: P{i}, type: lead, email: p{i}@partner.example, owner: ben, stage: New, stage_entered_at: {entered}}}
  - {{id: Q{i}, type: lead, email: q{i}@partner.example, owner: anna, stage: Contacted,
     stage_entered_at: {entered}}}
events:
  - {{at: {at(9, 2)}, set: {{record: P{i}, stage: Qualified}}}}
  - {{at: {at(12)}, task: {{record: Q{i}, subject: Call about the contract}}}}
expect:
  sent:
    # overdue on Monday at 07:00: Tuesday 07:00, the next Tuesday, and in Qualified (2 weeks) a Thursday
    - {{at: {at(1, -1)}, to: ben@example.com, template: overdue-reminder}}
    - {{at: {at(8, -1)}, to: ben@example.com, template: overdue-reminder}}
    - {{at: {at(24, -1)}, to: ben@example.com, template: overdue-reminder}}
    # overdue on Saturday: Sunday 07:00; the task of day 12 stops the next one
    - {{at: {at(6, -1)}, to: anna@example.com, template: overdue-reminder}}
  tasks:
    - {{record: Q{i}, subject: Call about the contract}}
"""
    )


def write_rules(where: Path, tests: int, days: int) -> None:
    shutil.copytree(ROOT / "rules", where, ignore=shutil.ignore_patterns("tests", "campaigns", "views"))
    (where / "tests").mkdir()
    for i in range(tests):
        (where / "tests" / f"bench-{i:03d}.yaml").write_text(shape(i, days), encoding="utf-8")


def run(tests: int, days: int, runs: int, rules: Path) -> dict[str, float]:
    """Write the rules and tests into `rules` and time them; prints as the command does and returns the figures.
    Raises RuntimeError when the rules do not validate, a RuleTest fails or `outreach test` does."""
    write_rules(rules, tests, days)
    result = validate.validate([str(rules)])
    if result.ruleset is None:
        raise RuntimeError("\n".join(f"{d.file}:{d.line}: {d.message}" for d in result.errors[:10]))
    found = sorted(result.ruleset.tests.values(), key=lambda t: t.source.file)
    print(f"{len(found)} RuleTests of {days} simulated days each ({rules})")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        results = asyncio.run(ruletest.run_all(found, result.ruleset))
        times.append(time.perf_counter() - started)
        failed = [r for r in results if not r.passed]
        if failed:
            raise RuntimeError(ruletest.format_text(failed))
    median = statistics.median(times)
    print(f"  run_all: best {min(times):.2f} s, median {median:.2f} s over {runs} runs; "
          f"{median / len(found) * 1000:.1f} ms a RuleTest, "
          f"{median / (len(found) * days) * 1000:.2f} ms a simulated day")  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "outreach.cli", "test", str(rules)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    whole = time.perf_counter() - started
    print(f"  outreach test {rules.name}/ (start-up, imports, validation included): {whole:.2f} s, "
          f"exit {done.returncode}: {done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ''}")  # fmt: skip
    print(f"  target: {tests} RuleTests of a month under {TARGET:.0f} s -> "
          f"{'met' if median < TARGET else 'NOT met'} (median of run_all)")  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"outreach test exited {done.returncode}")
    return {"tests": len(found), "days": days, "run_all_s": median, "command_s": whole}


def measure(tests: int = 100, days: int = 30, runs: int = 3) -> dict[str, float]:
    """`run` in a temporary directory, removed after."""
    tmp = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    try:
        return run(tests, days, runs, tmp / "rules")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated rules and print where")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    rules = tmp / "rules"
    try:
        run(args.tests, args.days, args.runs, rules)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {rules}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
