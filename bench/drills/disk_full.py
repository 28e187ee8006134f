"""Drill: the SQLite volume fills up while the daemon sends; the daemon stops claiming, says why, loses nothing,
and resumes when space returns.

    .venv/bin/python bench/drills/disk_full.py [--messages 5000] [--full 15] [--pool 8] [--quick]

The project (its rules and its SQLite database) lives on a small tmpfs mounted for the drill (unmounted after),
with room for the seeded outbox of MESSAGES queued messages and for the WAL that sending them all in one
dispatch writes (about 20 kB a message, copied back only when the dispatch ends); the daemon's log and the relay's
(bench/drills/relay.py, which takes every message after a few milliseconds and logs its Message-ID) are
elsewhere. When a fifth of the mail has gone, the drill fills what is left of the volume with a file, waits for
the daemon to say why it cannot go on, watches it for FULL seconds, deletes the file, and waits until nothing is
queued or being sent. It checks, and prints as figures:

- said: the daemon's log names the full disk ("database or disk is full"), and how often it did: the claims
  and writes the database refused, the loops that failed;
- claimed while full: messages that left `queued` during the FULL seconds (must be 0: it stops claiming);
- the daemon: still running while the disk is full and after (it must not exit), stopped cleanly by SIGTERM;
- resumed: the seconds from the file's deletion until more mail was sent;
- lost: messages neither `sent` nor `unknown` (must be 0, `sending` included: a message left `sending` by a
  daemon that runs on is never sent nor given to an operator), and `sent` messages the relay never took (0);
- twice: Message-IDs the relay took more than once (must be 0);
- in doubt: `unknown` messages, at most POOL (those on the wire when the disk filled).

Mounting needs root: elsewhere it says so and exits 0, unless CI=true (then 1). --quick: 1,000 messages and
5 seconds full (CI runs it: tests/test_drills.py). Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import errno
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Project, Relay, Said, drained, skipped, stop_daemon, wait_until

TITLE = "disk full drill"
FULL = "database or disk is full"  # SQLite's words for SQLITE_FULL
# Room a message takes on the volume: its row in the database file (bench/smtp_throughput.py builds messages of
# 1,500 bytes), and what sending it adds to SQLite's WAL, its pages written at the claim and at the answer, which
# the daemon copies back only when a dispatch ends (about 20 kB, measured).
BYTES_A_MESSAGE, WAL_A_MESSAGE = 1800, 24 * 1024


def fill(path: Path) -> int:
    """Write `path` until the file system has no room left; returns its size."""
    written = 0
    with path.open("wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1 << 9):  # the last blocks too, so that nothing is left
            while True:
                try:
                    written += f.write(b"\0" * chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--full", type=float, default=15.0, help="seconds the disk stays full (default 15)")
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="1,000 messages, 5 seconds full")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.full = 1000, 5.0
    if os.geteuid() != 0:
        return skipped(TITLE, "mounting a small file system needs root")
    with tempfile.TemporaryDirectory(prefix="outreach-drill-disk-full-") as tmp:
        where, volume = Path(tmp), Path(tmp) / "volume"
        volume.mkdir()
        # Room for the outbox and for the WAL of a dispatch that sends it all: when the file is deleted, what it
        # took must let the daemon finish, whatever share of the WAL it had written before the disk filled.
        size_kb = args.messages * (BYTES_A_MESSAGE + WAL_A_MESSAGE) // 1024 + 4096
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(volume)],
                                 capture_output=True, text=True)  # fmt: skip
        if mounted.returncode != 0:
            return skipped(TITLE, f"mount -t tmpfs failed: {mounted.stderr.strip()}")
        log = where / "daemon.log"
        filler = volume / "filler"
        relay: Relay | None = None
        proc: subprocess.Popen[bytes] | None = None
        try:
            relay = Relay(where, delay=0.004)
            project = Project(volume, relay.port, pool=args.pool)
            project.seed(args.messages)
            database_kb = project.db.stat().st_size // 1024
            started = time.monotonic()
            proc = project.daemon(log=log)
            wait_until(lambda: proc.poll() is not None or project.states().get("sent", 0) >= args.messages // 5, 120,
                       0.02)  # fmt: skip
            sent_at_fill = project.states().get("sent", 0)
            wal = project.db.with_name(project.db.name + "-wal")
            wal_kb = wal.stat().st_size // 1024 if wal.exists() else 0
            filled_kb = fill(filler) // 1024
            said_why = wait_until(lambda: FULL in log.read_text(errors="replace"), 60, 0.1)
            queued_before = project.states().get("queued", 0)
            time.sleep(args.full)
            queued_after = project.states().get("queued", 0)
            alive_while_full = proc.poll() is None
            sent_before = project.states().get("sent", 0)
            filler.unlink()
            freed = time.monotonic()
            resumed = wait_until(lambda: project.states().get("sent", 0) > sent_before or not project.states().get(
                "queued", 0), 120, 0.05)  # fmt: skip
            resumed_after = time.monotonic() - freed
            done = wait_until(lambda: proc.poll() is not None or
                              drained(project), 120, 0.2)  # fmt: skip
            alive = alive_while_full and proc.poll() is None
            done = done and alive
            code = stop_daemon(proc)
            seconds = time.monotonic() - started
            states = project.states()
            sent, unknown = set(project.message_ids("sent")), set(project.message_ids("unknown"))
            taken = relay.taken()
        finally:
            if relay is not None:
                relay.stop()
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            # SQLite keeps this process's descriptors of the database open while any of its connections to it
            # is (POSIX locks), and the seed's last one waits for the garbage collector.
            gc.collect()
            if subprocess.run(["umount", str(volume)], check=False).returncode != 0:
                subprocess.run(["umount", "--lazy", str(volume)], check=False)
        text = log.read_text(errors="replace")
        said = Said(text)
        said_why = said_why and FULL in (said.reason or "")  # the first reason it gave is the full disk
        lost = args.messages - len(sent) - len(unknown)
        sent_not_taken = len(sent - set(taken))
        twice = sum(1 for n in taken.values() if n > 1)
        unknown_taken = len(unknown & set(taken))
        claimed_while_full = queued_before - queued_after
        print(f"{TITLE}: {args.messages:,} messages, SQLite on a tmpfs of {size_kb:,} kB, full for {args.full:g} s, "
              f"pool of {args.pool}, {seconds:.0f} s in all; finished: {done}")  # fmt: skip
        print(f"  volume                     database of {database_kb:,} kB; filled with {filled_kb:,} kB "
              f"when {sent_at_fill:,} were sent and the WAL held {wal_kb:,} kB")  # fmt: skip
        print(f"  said                       {said}")
        print(f"  claimed while full         {claimed_while_full} in {args.full:g} s")
        print(f"  daemon                     {'ran on through the full disk' if alive else 'EXITED during the drill'}; "
              f"exit code after SIGTERM {code}")  # fmt: skip
        print(f"  resumed                    {f'{resumed_after:.1f} s after space returned' if resumed else 'no'}")
        print(f"  outbox at the end          {dict(sorted(states.items()))}")
        print(f"  unknown in all             {len(unknown)}, of which the relay had taken {unknown_taken} "
              f"(at most {args.pool})")  # fmt: skip
        print(f"  lost                       {lost} (neither sent nor unknown); sent but not taken: {sent_not_taken}")
        print(f"  taken twice                {twice}")
        ok = (said_why and not said.gave_up and claimed_while_full == 0 and done and resumed and code == 0
              and lost == 0 and sent_not_taken == 0 and twice == 0 and len(unknown) <= args.pool)  # fmt: skip
        print(f"  verdict                    {'passed' if ok else 'FAILED'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
