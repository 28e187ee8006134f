"""Drill: PostgreSQL's connections killed (pg_terminate_backend) again and again while the daemon sends; the daemon
reconnects and sends on, no message lost, none twice.

    .venv/bin/python bench/drills/database.py [--messages 10000] [--kills 10] [--pool 8] [--quick]

The project's store is a fresh PostgreSQL database (made on $OUTREACH_TEST_PG's server, the tests' one, and
dropped after), its outbox MESSAGES queued messages; a drill relay (bench/drills/relay.py) takes every message,
logging its Message-ID, after a few milliseconds. One `outreach run` sends them over a pool of POOL connections
while the drill, KILLS times, when a random share of the messages has been sent, ends every connection to the
database: `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = DB AND pid <> pg_backend_pid()`,
again every few milliseconds until the daemon's log says a statement of its own failed (ending only idle
connections tests no more than the pool's reconnecting). Then it waits until nothing is queued or being sent. It checks, and prints as figures:

- the daemon: felt every kill (a failed statement in its log), still running after each (it reconnects; it must
  not exit), and stopped cleanly by SIGTERM at the end; what it said: the claims and writes the database
  refused, the loops that failed;
- lost: messages neither `sent` nor `unknown` (must be 0, `sending` included: a message left `sending` by a
  daemon that runs on is never sent nor given to an operator), and `sent` messages the relay never took (0);
- twice: Message-IDs the relay took more than once (must be 0);
- in doubt: `unknown` messages, at most POOL a kill (the messages on the wire when their answers could not be
  written), and how many of them the relay had in fact taken.

--quick: 2,000 messages and 3 kills (CI runs it: tests/test_drills.py). Without a PostgreSQL server it says so
and exits 0, unless CI=true (then 1). Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PostgresProject, Relay, Said, drained, pg_problem, skipped, stop_daemon, wait_until

TITLE = "database drill"


def kill(project: PostgresProject, log: Path) -> tuple[int, bool]:
    """End every connection to the project's database, again every few milliseconds until the daemon says that a
    statement of its own failed (for at most 10 s): ending idle connections only makes the pool connect again,
    which tests little. Returns how many connections were ended, and whether the daemon felt it."""
    before = Said(log.read_text(errors="replace")).complaints
    ended, deadline = 0, time.monotonic() + 10
    while time.monotonic() < deadline:
        ended += len(project.terminate())
        if wait_until(lambda: Said(log.read_text(errors="replace")).complaints > before, 0.05, 0.01):
            return ended, True
    return ended, False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="2,000 messages, 3 kills")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.kills = 2000, 3
    problem = pg_problem()
    if problem is not None:
        return skipped(TITLE, problem)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="outreach-drill-database-") as tmp:
        where = Path(tmp)
        relay = Relay(where, delay=0.004)
        log = where / "daemon.log"
        project: PostgresProject | None = None
        proc: subprocess.Popen[bytes] | None = None
        try:
            project = PostgresProject(where, relay.port, pool=args.pool)
            project.seed(args.messages)
            # each kill when a random share of the mail has gone: under load, whatever the machine's speed
            marks = sorted(int(rng.uniform(0.05, 0.9) * args.messages) for _ in range(args.kills))
            ended: list[tuple[int, bool]] = []  # connections ended at each kill, and whether the daemon felt it
            sending: list[int] = []  # messages `sending` just after each kill
            started = time.monotonic()
            proc = project.daemon(log=log)
            for mark in marks:
                wait_until(lambda m=mark: proc.poll() is not None or project.states().get("sent", 0) >= m, 120, 0.05)
                if proc.poll() is not None:
                    break
                ended.append(kill(project, log))
                sending.append(project.states().get("sending", 0))
            done = wait_until(lambda: proc.poll() is not None or
                              drained(project), 120, 0.2)  # fmt: skip
            alive = proc.poll() is None
            done = done and alive
            code = stop_daemon(proc)
            seconds = time.monotonic() - started
            states = project.states()
            sent, unknown = set(project.message_ids("sent")), set(project.message_ids("unknown"))
            taken = relay.taken()
        finally:
            relay.stop()
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if project is not None:
                project.drop()
        said = Said(log.read_text(errors="replace"))
        lost = args.messages - len(sent) - len(unknown)
        sent_not_taken = len(sent - set(taken))
        twice = sum(1 for n in taken.values() if n > 1)
        unknown_taken = len(unknown & set(taken))
        print(f"{TITLE}: {args.messages:,} messages on PostgreSQL, {len(ended)} of {args.kills} kills of every "
              f"connection, pool of {args.pool}, {seconds:.0f} s in all; finished: {done}")  # fmt: skip
        print(f"  connections ended          {[n for n, _ in ended]} at each kill; the daemon felt "
              f"{sum(felt for _, felt in ended)} of the {len(ended)} kills")  # fmt: skip
        print(f"  sending after each kill    {sending}")
        print(f"  daemon                     {'ran on through every kill' if alive else 'EXITED during the drill'}; "
              f"exit code after SIGTERM {code}")  # fmt: skip
        print(f"  said                       {said}")
        print(f"  outbox at the end          {dict(sorted(states.items()))}")
        print(f"  unknown in all             {len(unknown)}, of which the relay had taken {unknown_taken} "
              f"(at most {args.pool} a kill)")  # fmt: skip
        print(f"  lost                       {lost} (neither sent nor unknown); sent but not taken: {sent_not_taken}")
        print(f"  taken twice                {twice}")
        felt_all = len(ended) == args.kills and all(felt for _, felt in ended)
        ok = (done and code == 0 and not said.gave_up and felt_all and lost == 0 and sent_not_taken == 0
              and twice == 0 and len(unknown) <= args.pool * args.kills)  # fmt: skip
        print(f"  verdict                    {'passed' if ok else 'FAILED'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
