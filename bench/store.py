"""Benchmarks of the store: a large CSV import, and `outreach plan` over many enrollments.

Run on demand from the repository root:

    .venv/bin/python bench/store.py [--rows 1000000] [--enrollments 1000000] [--keep]

It times, as subprocesses by wall clock, with the peak memory of the command
(from the kernel's rusage of the child):

- `outreach records import FILE --type lead` of a generated CSV of N leads
  (ids, emails on a mix of domains, names, companies, countries, owners,
  stages, scores, booleans, dates) into a fresh SQLite file. Targets from the
  issue: under 60 s and under 300 MB.
- `outreach plan rules/` against a store holding M live enrollments spread over
  the example sequence's version and others. Target: under 2 s.

For reference, in the same run, it times the bare parse of the CSV with
Python's csv module (what any importer must pay) and `sqlite3` inserting the
same number of plain rows in one transaction. It only prints (`measure()`
returns the figures, for `python -m bench`); it exits 0 unless a command fails.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTREACH = str(Path(sys.executable).with_name("outreach"))

DOMAINS = ["gmail.com", "example.org", "acme-corp.de", "mail.co.uk", "fjord.no", "outlook.com", "web.de", "firma.at"]
FIRST = ["Jo", "Kim", "Sam", "Anna", "Ben", "Lena", "Max", "Mia", "Noah", "Emma", "Luca", "Sofia"]
COMPANIES = ["Fjord AS", "ACME GmbH", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne & Co"]
COUNTRIES = ["DE", "AT", "CH", "NO", "SE", "FR", "IT", "ES"]
STAGES = ["New", "Contacted", "Qualified", "Won", ""]
IMPORT_TARGET_S, IMPORT_TARGET_MB = 60.0, 300.0  # 1M records
PLAN_TARGET_S = 2.0  # 1M enrollments


def write_csv(path: Path, n: int) -> None:
    rnd = random.Random(7)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "email", "first_name", "last_name", "company", "country", "owner", "stage", "score",
                    "purchased", "source", "next_appointment_at"])  # fmt: skip
        for i in range(n):
            first = rnd.choice(FIRST)
            w.writerow([
                f"L{i:07d}", f"{first.lower()}.{i}@{rnd.choice(DOMAINS)}", first, f"Name{i % 997}",
                rnd.choice(COMPANIES), rnd.choice(COUNTRIES), rnd.choice(["anna", "ben"]), rnd.choice(STAGES),
                rnd.randint(0, 100), rnd.choice(["true", "false"]), rnd.choice(["webinar", "website", "partner"]),
                "2026-12-01T10:00:00+01:00" if i % 5 == 0 else "",
            ])  # fmt: skip


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(seconds, peak MB of this child alone, output)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if proc.returncode not in (0, 2):
        print(text, file=sys.stderr)
        raise SystemExit(f"{' '.join(cmd)} failed with {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024, text


def reference_parse(path: Path) -> float:
    start = time.perf_counter()
    with open(path, newline="", encoding="utf-8") as fh:
        for _ in csv.DictReader(fh):
            pass
    return time.perf_counter() - start


def reference_sqlite(n: int, work: Path) -> float:
    db = sqlite3.connect(work / "ref.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, email TEXT, fields TEXT)")
    start = time.perf_counter()
    with db:
        db.executemany("INSERT INTO t VALUES (?, ?, ?)",
                       ((f"L{i:07d}", f"x{i}@example.org", '{"a": 1}') for i in range(n)))  # fmt: skip
    seconds = time.perf_counter() - start
    db.close()
    return seconds


def seed_enrollments(db_url: str, rules: Path, m: int) -> None:
    sys.path.insert(0, str(ROOT))
    import datetime as dt

    import sqlalchemy as sa

    from outreach.rules import validate
    from outreach.store import Store, tables

    ruleset = validate.validate([str(rules)]).ruleset
    assert ruleset is not None
    current = ruleset.sequences["inbound-nurture"].source.hash
    now = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)

    async def go() -> None:
        store = await Store.open(db_url)
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(tables.records), [
                {"id": f"L{i:07d}", "type": "lead", "email": f"r{i}@example.org", "fields": {}, "created_at": now,
                 "updated_at": now}
                for i in range(1000)
            ])  # fmt: skip
            chunk = 50_000
            for start in range(0, m, chunk):
                await conn.execute(sa.insert(tables.enrollments), [
                    {"record_id": f"L{i % 1000:07d}", "email": f"p{i}@example.org",
                     "sequence": "inbound-nurture" if i % 3 else f"seq-{i % 40}",
                     "sequence_hash": current if i % 2 else "0" * 64,
                     "enrolled_by": "anna", "status": ("active", "blocked", "completed", "stopped")[i % 4],
                     "step_index": 1, "steps_done": 1, "started_at": now}
                    for i in range(start, min(start + chunk, m))
                ])  # fmt: skip
        await store.close()

    asyncio.run(go())


def run(rows: int, enrollments: int, work: Path) -> dict[str, float]:
    """Both benchmarks in `work`; prints them and returns the figures."""
    rules = work / "rules"
    shutil.copytree(ROOT / "rules", rules)
    shutil.rmtree(rules / "tests")
    csv_path = work / "leads.csv"
    write_csv(csv_path, rows)
    size_mb = csv_path.stat().st_size / 1e6
    print(f"outreach store benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"CSV: {rows:,} rows, {size_mb:.0f} MB")

    parse = reference_parse(csv_path)
    ref_sql = reference_sqlite(rows, work)
    db = f"sqlite:///{work / 'import.db'}"
    seconds, peak, out = timed([OUTREACH, "records", "import", str(csv_path), "--type", "lead", "--db", db,
                                "--rules", str(rules)], work)  # fmt: skip
    print(f"\n{'import':<58} {'seconds':>8} {'peak MB':>8}")
    print(f"  {'reference: csv.DictReader, parse only':<56} {parse:8.2f}")
    print(f"  {'reference: sqlite3 executemany of plain rows':<56} {ref_sql:8.2f}")
    print(f"  {'outreach records import (one transaction)':<56} {seconds:8.2f} {peak:8.0f}")
    print(f"  -> {rows / seconds:,.0f} rows/s; {out.strip().splitlines()[-1]}")
    met = seconds < IMPORT_TARGET_S and peak < IMPORT_TARGET_MB
    print(f"  target: under {IMPORT_TARGET_S:.0f} s and {IMPORT_TARGET_MB:.0f} MB -> {'met' if met else 'NOT met'}")
    figures = {"rows": rows, "import_s": seconds, "import_peak_mb": peak, "parse_s": parse, "sqlite_s": ref_sql}

    plan_db = f"sqlite:///{work / 'plan.db'}"
    subprocess.run([OUTREACH, "apply", "--db", plan_db, str(rules)], cwd=work, capture_output=True, check=True)
    seed_enrollments(plan_db, rules, enrollments)
    (rules / "sequences" / "inbound-nurture.yaml").write_text(
        (rules / "sequences" / "inbound-nurture.yaml").read_text().replace("2 business days, thread: reply",
                                                                          "3 business days, thread: reply"))  # fmt: skip
    runs = [timed([OUTREACH, "plan", "--db", plan_db, str(rules)], work) for _ in range(3)]
    best = min(r[0] for r in runs)
    print(f"\nplan over {enrollments:,} enrollments (best of 3): {best:.2f} s, peak {runs[0][1]:.0f} MB")
    print("  " + "\n  ".join(line for line in runs[0][2].splitlines() if "=>" in line or line.startswith("Plan")))
    print(f"  target: under {PLAN_TARGET_S:.0f} s -> {'met' if best < PLAN_TARGET_S else 'NOT met'}")
    figures.update(enrollments=enrollments, plan_s=best, plan_peak_mb=runs[0][1])
    return figures


def measure(rows: int = 1_000_000, enrollments: int = 1_000_000) -> dict[str, float]:
    """`run` in a temporary directory, removed after."""
    work = Path(tempfile.mkdtemp(prefix="outreach-bench-store-"))
    try:
        return run(rows, enrollments, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--enrollments", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the work directory and print where")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="outreach-bench-store-"))
    try:
        run(args.rows, args.enrollments, work)
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
