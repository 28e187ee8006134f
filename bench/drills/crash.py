"""Drill: SIGKILL the daemon again and again while it sends; no message lost, none twice, `unknown` at most the
messages on the wire at each kill.

    .venv/bin/python bench/drills/crash.py [--messages 20000] [--kills 20] [--pool 8] [--quick]

A drill relay (bench/drills/relay.py) takes every message, logging its Message-ID, after a few milliseconds. The
outbox holds MESSAGES queued messages; `outreach run` sends them over a pool of POOL connections and is killed
(SIGKILL) at a random moment, KILLS times, each time started again; then it runs until nothing is queued. At each
kill the drill counts the messages left `sending` (they become `unknown` at the next start: the relay may have
taken them). At the end it checks, and prints as figures:

- lost: messages neither `sent` nor `unknown` (must be 0), and `sent` messages the relay never took (0);
- twice: Message-IDs the relay took more than once (must be 0);
- in doubt: `sending` at each kill, at most POOL (the messages on the wire), and how many of them the relay
  had in fact taken (an operator would look in the relay's log before `outreach outbox requeue`).

--quick: 2,000 messages and 5 kills (CI runs it: tests/test_drills.py). Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Project, Relay, drained, wait_until


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="2,000 messages, 5 kills")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.kills = 2000, 5
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="outreach-drill-crash-") as tmp:
        where = Path(tmp)
        relay = Relay(where, delay=0.004)
        try:
            project = Project(where, relay.port, pool=args.pool)
            project.seed(args.messages)
            in_doubt: list[int] = []
            started = time.monotonic()
            for _ in range(args.kills):
                proc = project.daemon()
                sent_before = project.states().get("sent", 0)
                wait_until(lambda before=sent_before: project.states().get("sent", 0) > before, 30, 0.02)  # it is sending
                time.sleep(rng.uniform(0.05, 0.6))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                in_doubt.append(project.states().get("sending", 0))
            proc = project.daemon()
            done = wait_until(lambda: drained(project), 600, 0.2)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            seconds = time.monotonic() - started
            states = project.states()
            taken = relay.taken()
        finally:
            relay.stop()
        sent, unknown = set(project.message_ids("sent")), set(project.message_ids("unknown"))
        lost = args.messages - len(sent) - len(unknown)
        sent_not_taken = len(sent - set(taken))
        twice = sum(1 for n in taken.values() if n > 1)
        unknown_taken = len(unknown & set(taken))
        print(f"crash drill: {args.messages:,} messages, {args.kills} SIGKILLs, pool of {args.pool}, "
              f"{seconds:.0f} s in all; finished: {done}")  # fmt: skip
        print(f"  outbox at the end          {dict(sorted(states.items()))}")
        print(f"  in doubt at each kill      {in_doubt} (at most {args.pool}: the messages on the wire)")
        print(f"  unknown in all             {len(unknown)}, of which the relay had taken {unknown_taken}")
        print(f"  lost                       {lost} (neither sent nor unknown); sent but not taken: {sent_not_taken}")
        print(f"  taken twice                {twice}")
        ok = done and lost == 0 and sent_not_taken == 0 and twice == 0 and max(in_doubt, default=0) <= args.pool
        print(f"  verdict                    {'passed' if ok else 'FAILED'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
