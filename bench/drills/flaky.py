"""Drill: a flaky relay. 30% of transactions get a 421 or a 451, 5% are taken and the connection cut before the
answer, and one domain answers 550: everything else is delivered exactly once in the end, the 550s fail with the
relay's reason, and the messages whose answer was lost are `unknown`, taken once and never sent again.

    .venv/bin/python bench/drills/flaky.py [--messages 5000] [--quick]

The daemon runs as `outreach run --once --now T`, T moving on 10 minutes each round, so that deferred
messages come due (their backoff is minutes) without the drill waiting for the clock. It prints the outbox, the
rounds it took and the checks; exit 1 when one fails. --quick: 1,000 messages (CI runs it: tests/test_drills.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUTREACH, Project, Relay

START = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
BAD = "bad.example"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="1,000 messages")
    args = parser.parse_args()
    if args.quick:
        args.messages = 1000
    with tempfile.TemporaryDirectory(prefix="outreach-drill-flaky-") as tmp:
        where = Path(tmp)
        script = where / "faults.json"
        script.write_text(json.dumps({"fail_domain": BAD, "temporary": 0.3, "drop": 0.05}))
        relay = Relay(where, script=script)
        try:
            project = Project(where, relay.port, pool=8)
            project.seed(args.messages, domains=("example.org", "example.net", "example.com", BAD))
            rounds, now = 0, START
            while {"queued", "deferred"} & set(project.states()) and rounds < 60:
                rounds += 1
                done = subprocess.run([OUTREACH, "run", "--once", "--no-web", "--now", now.isoformat(), "--rules",
                                       str(project.rules)], cwd=where, env=project.env, capture_output=True)  # fmt: skip
                if done.returncode != 0:
                    print(done.stderr.decode()[-2000:], file=sys.stderr)
                    return 1
                now += dt.timedelta(minutes=10)
            taken = relay.taken()
        finally:
            relay.stop()
        with sqlite3.connect(project.db) as db:
            rows = db.execute("SELECT message_id, recipient, state, last_error FROM outbox").fetchall()
        bad = [r for r in rows if r[1].endswith("@" + BAD)]
        good = [r for r in rows if not r[1].endswith("@" + BAD)]
        states = project.states()
        twice = sum(1 for n in taken.values() if n > 1)
        bad_ok = all(r[2] == "failed" and str(r[3]).startswith("550") for r in bad)
        good_sent_taken = all(taken[r[0]] == 1 for r in good if r[2] in ("sent", "unknown"))
        good_done = all(r[2] in ("sent", "unknown") for r in good)
        unknown_not_taken = sum(1 for r in good if r[2] == "unknown" and taken[r[0]] == 0)
        print(f"flaky relay drill: {args.messages:,} messages, {rounds} rounds of `run --once` 10 minutes apart")
        print(f"  outbox at the end          {dict(sorted(states.items()))}")
        print(f"  to {BAD} (550)        {len(bad)}, all failed with the relay's reply: {bad_ok}")
        print(f"  the others                 {len(good)}, all sent or unknown: {good_done}; each taken exactly "
              f"once: {good_sent_taken}")  # fmt: skip
        print(f"  unknown the relay lacks    {unknown_not_taken} (an answer lost before the message was taken)")
        print(f"  taken twice                {twice}")
        ok = bad_ok and good_done and good_sent_taken and twice == 0 and unknown_not_taken == 0
        print(f"  verdict                    {'passed' if ok else 'FAILED'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
