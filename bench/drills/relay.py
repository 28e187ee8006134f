"""A relay for the drills: an aiosmtpd server that takes every message and appends its Message-ID to a log.

    python bench/drills/relay.py --port PORT --log FILE [--delay SECONDS] [--script FILE]

The log is the relay's memory of what it took, one Message-ID a line, written (and flushed) before the 250 is
sent: a message in the log was accepted, whatever the client heard. --delay waits that long before answering
each message, so that a kill lands while messages are on the wire. --script names a JSON file of faults by
recipient domain and share, read at start: {"fail_domain": "bad.example", "temporary": 0.3, "drop": 0.05}:
every message to fail_domain gets a 550; a share `temporary` of the others a 421 or a 451 (not taken); a
share `drop` is taken (logged) and the connection is then cut without an answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import sys
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.I | re.M)


class Handler:
    def __init__(self, log: Path, delay: float, script: dict[str, object], seed: int) -> None:
        self.log = open(log, "ab", buffering=0)  # noqa: SIM115 - open for the server's life
        self.delay = delay
        self.script = script
        self.rng = random.Random(seed)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        found = _MESSAGE_ID.search(data)
        message_id = found.group(1) if found else b"<none>"
        domain = (envelope.rcpt_tos[0] if envelope.rcpt_tos else "").rpartition("@")[2].lower()
        if self.delay:
            await asyncio.sleep(self.delay * self.rng.uniform(0.5, 1.5))
        if domain and domain == self.script.get("fail_domain"):
            return "550 5.1.1 No such user here"
        roll = self.rng.random()
        temporary = float(self.script.get("temporary", 0.0))  # type: ignore[arg-type]
        drop = float(self.script.get("drop", 0.0))  # type: ignore[arg-type]
        if roll < temporary:
            return self.rng.choice(["421 4.3.2 Service shutting down", "451 4.3.0 Try again later"])
        self.log.write(message_id + b"\n")
        if roll < temporary + drop and server.transport is not None:
            server.transport.abort()  # taken, and the answer never goes
            await asyncio.Event().wait()
        return "250 2.0.0 Ok: queued"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--script", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    script = json.loads(args.script.read_text()) if args.script else {}
    controller = Controller(Handler(args.log, args.delay, script, args.seed), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    asyncio.run(wait())
    controller.stop()


if __name__ == "__main__":
    sys.exit(main())
