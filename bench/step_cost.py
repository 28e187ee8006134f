"""The cost of one due email step in CPU instructions, which do not swing with the machine's speed as seconds do.

Run on demand from the repository root (needs valgrind; about a minute):

    .venv/bin/python bench/step_cost.py [--step nudge|intro] [--enrollments 4000] [--due 2000]

It runs itself twice under `valgrind --tool=callgrind` with PYTHONHASHSEED=0: each run builds the store of
bench/scheduler.py on a smaller scale (the example rules, 1,000 records, E enrollments in inbound-nurture, seeded
with sqlite3), makes N of them due (none in the second run), and runs `Scheduler.run_due` until nothing is due.
The difference of the two runs' instruction counts (every thread's, SQLite's included), divided by N, is the
cost of a step: what is the same in both runs (start-up, imports, seeding) cancels out. Two runs of the same code
agree to about 0.05%, so a change of 1% shows, where wall-clock times on these machines swing by up to 2x within
an hour. Instructions are not seconds: waiting for the disk (fsync) and the kernel's work are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import scheduler as bench  # noqa: E402 - bench/scheduler.py, after the path

from outreach.app import scheduler  # noqa: E402
from outreach.store import Store  # noqa: E402


async def run_due(enrollments: int, due: int, step: str) -> int:
    """One run, as measured: returns how many steps were queued."""
    with tempfile.TemporaryDirectory(prefix="outreach-bench-step-") as work:
        db = Path(work) / "s.db"
        ruleset, _ = await bench.prepare(db, enrollments, step)
        store = await Store.open(f"sqlite:///{db}", fields=ruleset.settings.fields)
        try:
            sched = bench.make_scheduler(store, ruleset, None)
            await sched.tick(bench.NOW)
            if due:
                bench.make_due(db, enrollments, due)
            report = scheduler.TickReport()
            while await sched.run_due(bench.NOW, report) >= sched.batch:
                pass
            return report.queued
        finally:
            await store.close()


def instructions(args: argparse.Namespace, due: int) -> int:
    with tempfile.TemporaryDirectory(prefix="outreach-callgrind-") as out:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.out", sys.executable,
                   __file__, "--inner", "--step", args.step, "--enrollments", str(args.enrollments), "--due", str(due)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        found = re.search(r"Collected : (\d+)", done.stderr)
        queued = re.search(r"queued (\d+)", done.stdout)
        if done.returncode != 0 or found is None or queued is None or int(queued.group(1)) != due:
            raise SystemExit(f"the run with {due} due failed:\n{done.stdout}\n{done.stderr[-2000:]}")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", choices=["nudge", "intro"], default="nudge", help="the step that falls due")
    parser.add_argument("--enrollments", type=int, default=4000)
    parser.add_argument("--due", type=int, default=2000)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)  # one run, under valgrind
    args = parser.parse_args()
    if args.inner:
        print(f"queued {asyncio.run(run_due(args.enrollments, args.due, args.step))}")
        return
    if args.due < 1 or args.due > args.enrollments:
        parser.error("--due must be between 1 and --enrollments")
    with_steps, without = instructions(args, args.due), instructions(args, 0)
    print(f"{args.step} step: {(with_steps - without) / args.due:,.0f} instructions a step "
          f"({args.due:,} due of {args.enrollments:,} enrollments; {with_steps:,} - {without:,})")  # fmt: skip


if __name__ == "__main__":
    main()
