"""Benchmark: `outreach enroll SEQUENCE --where country=DE` on 20,000 matching records, as a user runs it.

Run on demand from the repository root:

    .venv/bin/python bench/enroll.py [--records N] [--runs R] [--keep]

It makes a project in a temporary directory: a copy of the example `rules/`, a
SQLite database (`OUTREACH_DB`) into which `outreach records import` loads N
leads (default 20,000) with `country=DE` and one address each, plus 10% more
records that do not match (country AT), 1% that share an address with a
matching record and 1% unsubscribed; then `outreach apply`. Each timed run
(default 3, each on a fresh copy of that database) is the whole command as a
subprocess, interpreter start-up included:

    outreach enroll inbound-nurture --where country=DE --as anna

It prints the best and median wall time, records per second, what the command
printed (its summary), and the target from issue 19: **20,000 enrollments in
under 5 s** on the project's 2-core machines (judged on the median). A check
that the database holds the enrollments the summary names guards against
timing a command that did nothing. It only prints (`measure()` returns the
figures, for `python -m bench`); it exits 1 only when that check fails.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 5.0
OUTREACH = str(Path(sys.executable).with_name("outreach"))


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OUTREACH, *args], env=env, cwd=cwd, capture_output=True, text=True, check=False)


def _project(where: Path, records: int) -> Path:
    shutil.copytree(ROOT / "rules", where / "rules")
    rows = where / "leads.csv"
    others = records // 10
    with open(rows, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "type", "email", "first_name", "company", "country", "owner"])
        for i in range(records):
            shared = i % 100 == 99  # 1% share an address with the record before them
            email = f"lead{i - 1 if shared else i}@example.org"
            out.writerow([f"B{i}", "lead", email, f"Name{i}", f"Company {i // 7}", "DE", "anna" if i % 2 else "ben"])
        for i in range(others):
            out.writerow([f"O{i}", "lead", f"other{i}@example.net", f"Other{i}", "Elsewhere", "AT", "anna"])
    return rows


def run(records: int, runs: int, tmp: Path) -> dict[str, float]:
    """The project in `tmp` and the timed runs; prints as the command does and returns the figures. Raises
    RuntimeError when the set-up or a run fails, or the database does not hold what the summary names."""
    seed_db = tmp / "seed.db"
    env = {**os.environ, "OUTREACH_DB": f"sqlite:///{seed_db}"}
    rows = _project(tmp, records)
    started = time.perf_counter()
    for command in (["records", "import", str(rows)], ["apply", "rules"]):
        done = _run(command, env, tmp)
        if done.returncode != 0:
            raise RuntimeError(f"setup failed: outreach {' '.join(command)}\n{done.stdout}{done.stderr}")
    db = sqlite3.connect(seed_db)  # 1% unsubscribed: refused, and counted by reason
    with db:
        db.executemany(
            "INSERT INTO suppressions (email, reason, at) VALUES (?, 'unsubscribed', '2026-11-01 00:00:00.000000')",
            [(f"lead{i}@example.org",) for i in range(0, records, 100)],
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the copies below take the database file alone
    db.close()
    print(f"set-up: {records:,} matching records and {records // 10:,} others imported and the rules "
          f"applied in {time.perf_counter() - started:.1f} s")  # fmt: skip

    timings = []
    last = None
    command = ["enroll", "inbound-nurture", "--where", "country=DE", "--as", "anna", "--now", "2026-11-23T08:00:00Z"]
    for run in range(runs):
        db_file = tmp / f"run{run}.db"
        shutil.copy(seed_db, db_file)
        run_env = {**env, "OUTREACH_DB": f"sqlite:///{db_file}"}
        t0 = time.perf_counter()
        last = _run(command, run_env, tmp)
        timings.append(time.perf_counter() - t0)
        if last.returncode != 0:
            raise RuntimeError(f"enroll failed ({last.returncode}):\n{last.stdout}{last.stderr}")
        with sqlite3.connect(db_file) as db:
            (count,) = db.execute("SELECT count(*) FROM enrollments").fetchone()
            (events,) = db.execute("SELECT count(*) FROM events WHERE kind = 'enrolled'").fetchone()
        expected = records - records // 100 - len(range(0, records, 100))
        if count != expected or events != expected:
            raise RuntimeError(f"expected {expected:,} enrollments and events, found {count:,} and {events:,}")

    assert last is not None
    best, median = min(timings), statistics.median(timings)
    print(f"\n$ outreach {' '.join(command)}\n{last.stdout.rstrip()}\n")
    print(f"{'runs':<28}{', '.join(f'{t:.2f} s' for t in timings)}")
    print(f"{'best / median':<28}{best:.2f} s / {median:.2f} s")
    print(f"{'records per second':<28}{records / median:,.0f} (median)")
    verdict = "met" if median < TARGET_SECONDS * records / 20_000 else "missed"
    print(f"{'target':<28}{records:,} in under {TARGET_SECONDS * records / 20_000:.1f} s: {verdict}")
    return {"records": records, "seconds": median, "best": best}


def measure(records: int = 20_000, runs: int = 3) -> dict[str, float]:
    """`run` in a temporary directory, removed after."""
    tmp = Path(tempfile.mkdtemp(prefix="outreach-bench-enroll-"))
    try:
        return run(records, runs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="matching records (default 20,000)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project and print where")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="outreach-bench-enroll-"))
    try:
        run(args.records, args.runs, tmp)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
