"""Where built messages go: one `send` of sender, recipients and the bytes, whatever the transport.

`MaildirTransport` is the embedded default: every message becomes a file in `var/outbox/new`, which any mail
client opens (`mutt -f var/outbox`). SMTP sends the same bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import mailbox
import os
import re
import threading
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Protocol

from outreach import files

_CONTROL = re.compile("[\x00-\x1f\x7f]")
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class SendResult:
    """ok: the transport took the message. permanent: a failure not worth retrying (SMTP 5xx).
    detail: the server's reply or the error. code: the SMTP reply's code, when a relay answered.
    in_doubt: not ok, and not a failure either: the message was handed over and the answer was lost (the
    connection dropped or timed out after the final dot); the outbox keeps it `unknown` for an operator."""

    ok: bool
    permanent: bool = False
    detail: str = ""
    code: int | None = None  # the relay's reply code (250, 451, 550 ...); None: no relay answered
    in_doubt: bool = False  # the whole message went and no answer came: the relay may have taken it (never retry)


class Transport(Protocol):
    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> SendResult: ...

    async def close(self) -> None: ...


class MaildirTransport:
    """Writes each message into a Maildir (directories made on the first send). A failed write is a result."""

    def __init__(self, path: str | os.PathLike[str] = "var/outbox") -> None:
        self.path = os.fspath(path)
        self._maildir: mailbox.Maildir | None = None
        self._lock = threading.Lock()  # creating the directories and Maildir's unique names are not thread-safe

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> SendResult:
        envelope = [sender, *recipients]
        if not recipients or any(_CONTROL.search(a) for a in envelope):
            return SendResult(False, permanent=True, detail=f"invalid envelope: from {sender!r} to {list(recipients)!r}")  # fmt: skip
        # The envelope goes where a delivery agent puts it; a Maildir file has LF line ends.
        data = b"".join([
            f"Return-Path: <{sender}>\n".encode(),
            f"Envelope-To: {', '.join(recipients)}\n".encode(),
            message.replace(b"\r\n", b"\n"),
        ])  # fmt: skip
        try:
            key = await asyncio.to_thread(self._write, data)
        except (OSError, mailbox.Error) as exc:
            return SendResult(False, permanent=False, detail=str(exc))
        return SendResult(True, detail=f"written to {os.path.join(self.path, 'new', key)}")

    def _write(self, data: bytes) -> str:
        with self._lock:
            if self._maildir is None:
                # Maildir(create=True) leaves an existing directory without tmp/new/cur, so an outbox made by
                # hand (mkdir -p var/outbox) would refuse every message.
                for sub in ("tmp", "new", "cur"):
                    files.private_directory(os.path.join(self.path, sub))  # var/ too, when it is made here
                self._maildir = mailbox.Maildir(self.path, create=False)
            return self._maildir.add(data)

    async def close(self) -> None:
        """Nothing to release: each write opens and closes its own file."""


def read_all(path: str | os.PathLike[str]) -> list[EmailMessage]:
    """Every message in a Maildir (new/ and cur/), parsed, sorted by Date then Message-ID."""
    box = mailbox.Maildir(path, create=False)
    messages = [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.iterkeys()]
    return sorted(messages, key=_date_and_id)


def _date_and_id(message: EmailMessage) -> tuple[dt.datetime, str]:
    date = message["Date"]
    when = date.datetime if date is not None and date.datetime is not None else _NEVER
    if when.tzinfo is None:  # "-0000": a time in UTC whose sender did not say its zone
        when = when.replace(tzinfo=dt.UTC)
    return when, str(message["Message-ID"] or "")
