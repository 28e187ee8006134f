"""Drill: a bad reload under load. An invalid rule set sent with SIGHUP while the daemon sends: the old rules keep
running, nothing is lost or sent twice; the rule set fixed and sent with SIGHUP again is taken at once.

    .venv/bin/python bench/drills/bad_reload.py [--messages 20000] [--pool 8] [--delay 0.02] [--quick]

The outbox holds MESSAGES queued messages; `outreach run` sends them to a drill relay (bench/drills/relay.py),
which logs each Message-ID it takes and answers after about DELAY seconds, so that the sending lasts. While it
sends, the drill breaks rules/sequences/welcome.yaml and sends SIGHUP, three times: invalid YAML, a schema error
(an unknown key) and a step naming a template that does not exist. Each time the daemon must log that the rules
were not reloaded, naming the file, keep the old definitions in force (read from the database) and keep sending.
Then the file is fixed, with a new description and, in settings.yaml, a second relay in place of the first (as
when a relay is retired), and SIGHUP once more: the reload must be logged ("rules applied: 2 changed", the sequence
and the settings, then "rules reloaded"), the new definition be in force, and the rest of the outbox go to the new
relay: the old one may take only the messages that were on the wire (at most POOL). At the end it checks, and
prints as figures:

- each round: the queue at the SIGHUP, how soon the daemon logged its answer, what it sent while the file was broken;
- lost: messages not `sent` (must be 0, as neither relay fails), and `sent` messages neither relay took (0);
- twice: Message-IDs taken more than once, by one relay or both (must be 0);
- the daemon alive through the reloads, stopping on SIGTERM with status 0, no traceback in its log.

--quick: 2,000 messages (CI runs it: tests/test_drills.py). Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Project, Relay, drained, stop_daemon, wait_until

NOT_RELOADED = "the rules were not reloaded; the old ones keep running"
RELOADED = "rules reloaded"
_APPLIED = re.compile(r"rules applied: (.*)")
_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", re.M)  # where a log line starts

# How each round breaks the sequence (each must change the example's text: checked).
BREAKS: list[tuple[str, Callable[[str], str]]] = [
    ("invalid YAML", lambda t: t.replace("eq: website}", "eq: website", 1)),
    ("schema error", lambda t: t.replace("calendar: anytime\n", "calendar: anytime\ncolour: blue\n", 1)),
    ("unknown template", lambda t: t.replace("email: welcome,", "email: welcom,", 1)),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds the relays take to answer (about)")
    parser.add_argument("--quick", action="store_true", help="2,000 messages")
    args = parser.parse_args()
    if args.quick:
        args.messages = 2000
    with tempfile.TemporaryDirectory(prefix="outreach-drill-reload-") as tmp:
        where = Path(tmp)
        (where / "new").mkdir()  # the second relay's log
        old_relay = Relay(where, delay=args.delay)
        new_relay = Relay(where / "new", delay=args.delay)
        proc: subprocess.Popen[bytes] | None = None
        try:
            project = Project(where, old_relay.port, pool=args.pool)
            project.seed(args.messages)
            sequence, settings = project.rules / "sequences" / "welcome.yaml", project.rules / "settings.yaml"
            original = sequence.read_text(encoding="utf-8")
            log = where / "daemon.log"
            log.touch()
            started = time.monotonic()
            proc = project.daemon("--tick", "0.2", log=log)
            sending = wait_until(lambda: project.states().get("sent", 0) > 0, 30, 0.02)
            kept = [_in_force(project.db)]
            rounds: list[str] = []  # a line of figures for each
            refused: list[bool] = []  # the daemon logged that the rules were not reloaded
            named: list[bool] = []  # and named the broken file, line and column
            went_on: list[bool] = []  # and sent `step` more messages after it
            step = max(1, args.messages // 40)  # sent after each bad reload: the daemon goes on sending
            for what, breaks in BREAKS:
                broken = breaks(original)
                if broken == original:
                    raise SystemExit(f"the example's welcome.yaml changed: the {what} round breaks nothing")
                _write(sequence, broken)
                queued, at, logged, answer = _sighup(proc, project, log, NOT_RELOADED)
                went_on.append(wait_until(lambda at=at: project.states().get("sent", 0) >= at + step, 30, 0.02))
                since = project.states().get("sent", 0) - at
                kept.append(_in_force(project.db))
                refused.append(NOT_RELOADED in answer)
                error = re.search(r"(welcome\.yaml:\d+:\d+): error: ([^\n]*)", answer)
                named.append(error is not None)
                said = f"{error.group(1)}: {_short(error.group(2))}" if error else "the file not named"
                rounds.append(f"  {what:<27}{'not reloaded' if refused[-1] else 'NO ANSWER'} in {logged:.1f} s, "
                              f"{queued:,} queued ({said}); {since:,} sent since")  # fmt: skip
            fixed = original.replace("description: New leads from the web site form.",
                                     "description: New leads from the web site form (reloaded).")  # fmt: skip
            _write(sequence, fixed)
            moved = settings.read_text(encoding="utf-8").replace(f"port: {old_relay.port},", f"port: {new_relay.port},")
            if fixed == original or str(new_relay.port) not in moved:
                raise SystemExit("the example's welcome.yaml or settings.yaml changed: the fix changes nothing")
            _write(settings, moved)
            queued, _, logged, answer = _sighup(proc, project, log, RELOADED)
            old_at_reload = sum(old_relay.taken().values())
            applied = _APPLIED.search(answer)
            reloaded = RELOADED in answer
            changed = applied.group(1) if applied else "nothing"
            rounds.append(f"  {'fixed, a new relay':<27}{'reloaded' if reloaded else 'NOT RELOADED'} in "
                          f"{logged:.1f} s, {queued:,} queued (rules applied: {changed})")  # fmt: skip
            new_in_force = _in_force(project.db)
            done = wait_until(lambda: drained(project), 600, 0.2)
            alive = proc.poll() is None
            status = stop_daemon(proc)
            seconds = time.monotonic() - started
            old_taken, new_taken = old_relay.taken(), new_relay.taken()
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
            old_relay.stop()
            new_relay.stop()
        states = project.states()
        sent = set(project.message_ids("sent"))
        taken = old_taken + new_taken
        lost = args.messages - len(sent)
        sent_not_taken = len(sent - set(taken))
        twice = sum(1 for n in taken.values() if n > 1)
        old_after = sum(old_taken.values()) - old_at_reload
        text = log.read_text(errors="replace")
        refusals, taken_reloads = text.count(NOT_RELOADED), text.count(RELOADED)
        tracebacks = text.count("Traceback")
        old_kept = all(k == kept[0] for k in kept)
        print(f"bad reload drill: {args.messages:,} messages, pool of {args.pool}, {len(BREAKS)} bad reloads and a "
              f"good one while it sends, {seconds:.0f} s in all; sending: {sending}, finished: {done}")  # fmt: skip
        print("\n".join(rounds))
        print(f"  welcome in force           {kept[0]!r} through the bad reloads: {old_kept}; "
              f"after the good one {new_in_force!r}")  # fmt: skip
        print(f"  log lines                  {refusals} not reloaded, {taken_reloads} reloaded")
        print(f"  to the old relay after     {old_after} (at most {args.pool}: the messages on the wire at the "
              f"reload); the new relay took {sum(new_taken.values()):,}")  # fmt: skip
        print(f"  outbox at the end          {dict(sorted(states.items()))}")
        print(f"  lost                       {lost} (not sent); sent but taken by neither relay: {sent_not_taken}")
        print(f"  taken twice                {twice}")
        print(f"  daemon                     alive through the reloads: {alive}; SIGTERM: exit {status}; "
              f"tracebacks in its log: {tracebacks}")  # fmt: skip
        ok = (sending and done and all(refused) and all(named) and all(went_on) and reloaded and applied is not None
              and old_kept and new_in_force != kept[0] and "(reloaded)" in str(new_in_force) and refusals == len(BREAKS)
              and taken_reloads == 1 and old_after <= args.pool and lost == 0 and sent_not_taken == 0 and twice == 0
              and alive and status == 0 and tracebacks == 0)  # fmt: skip
        print(f"  verdict                    {'passed' if ok else 'FAILED'}")
        if not ok:
            print(text[-4000:], file=sys.stderr)
        return 0 if ok else 1


def _write(path: Path, text: str) -> None:
    """Replace a rule file at once (as an editor saving it does), so that the daemon never reads half of it."""
    spare = path.parent.parent.parent / f".{path.name}.new"  # outside the rule directory: never read as a rule
    spare.write_text(text, encoding="utf-8")
    os.replace(spare, path)


def _sighup(proc: subprocess.Popen[bytes], project: Project, log: Path, wanted: str) -> tuple[int, int, float, str]:
    """SIGHUP, and the daemon's answer: the queue and the messages sent at the signal, the seconds until `wanted`
    was logged, and what the daemon logged from the signal until then (with the rest of that log line's text)."""
    states = project.states()
    queued, sent = states.get("queued", 0) + states.get("sending", 0), states.get("sent", 0)
    offset = log.stat().st_size
    signalled = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: wanted in log.read_text(errors="replace")[offset:], 30, 0.01)
    logged = time.monotonic() - signalled
    time.sleep(0.1)  # the rest of a message of several lines
    after = log.read_text(errors="replace")[offset:]
    found = after.find(wanted)
    if found < 0:
        return queued, sent, logged, after
    end = _TIME.search(after, found + len(wanted))
    return queued, sent, logged, after[: end.start() if end else len(after)]


def _short(text: str, most: int = 56) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _in_force(db_path: Path) -> str | None:
    """The description of the welcome sequence in force, as the database has it."""
    with sqlite3.connect(db_path) as db:
        row = db.execute(
            "SELECT d.body FROM active_definitions a JOIN definitions d USING (kind, name, hash) "
            "WHERE a.kind = 'Sequence' AND a.name = 'welcome'"
        ).fetchone()
    return json.loads(row[0]).get("description") if row else None


if __name__ == "__main__":
    sys.exit(main())
