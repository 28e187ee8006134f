"""The IMAP poller without a server: each user's mailbox from the settings, FETCH, SEARCH and SELECT responses read,
and IDLE kept up or given up on a fake client. (A real Dovecot: tests/test_imap_poller.py.)"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import aioimaplib
import pytest

from outreach.mail import imap
from outreach.rules import model, timing
from tests.worlds import RULES

pytestmark = pytest.mark.unit

UTC = dt.UTC


def test_a_mailbox_belongs_to_the_users_who_name_it() -> None:
    boxes = imap.mailboxes(RULES.settings)
    assert boxes["anna"].senders == ("anna@example.com",) and boxes["ben"].senders == ("ben@example.com",)


def test_fetch_responses_are_read_with_the_uid_before_or_after_the_message() -> None:
    lines = [
        b'1 FETCH (UID 7 INTERNALDATE "23-Nov-2026 09:05:00 +0100" BODY[]<0> {5}',
        bytearray(b"hello"),
        b")",
        b"2 FETCH (BODY[]<0> {3}",
        bytearray(b"abc"),
        b' UID 9 INTERNALDATE " 1-Dec-2026 10:00:00 -0000")',
        b"3 FETCH (FLAGS (\\Seen))",  # a flag change somebody else made: no UID, left out
        b"Fetch completed (0.001 + 0.000 secs).",
    ]
    got = imap.parse_fetch(lines)
    assert [(f.uid, f.data) for f in got] == [(7, b"hello"), (9, b"abc")]
    assert got[0].internaldate == dt.datetime(2026, 11, 23, 8, 5, tzinfo=UTC)
    assert got[1].internaldate == dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert imap.parse_search([b"4 5 9", b"Search completed"]) == [4, 5, 9]
    assert imap.parse_search([b"", b"Search completed"]) == []
    assert imap.uid_set([9, 3, 4, 5, 11, 12]) == "3:5,9,11:12"


async def test_a_keepalive_status_does_not_end_an_idle_but_news_does() -> None:
    class Client:
        def __init__(self) -> None:
            self.pushes = [[b"OK Still here"], [b"OK Still here"], [b"4 EXISTS", b"1 RECENT"]]
            self.done: asyncio.Future[Any] | None = None

        async def idle_start(self, timeout: float) -> asyncio.Future[Any]:
            self.done = asyncio.get_running_loop().create_future()
            return self.done

        async def wait_server_push(self, timeout: float) -> list[bytes]:
            return self.pushes.pop(0)

        def idle_done(self) -> None:
            assert self.done is not None
            self.done.set_result(aioimaplib.Response("OK", [b"Idle completed."]))

    client = Client()
    session = imap.Session(client, asyncio.get_running_loop().create_future(), "fake:143", 1.0)  # type: ignore[arg-type]
    await session.idle(60)
    assert client.pushes == [] and client.done is not None and client.done.done()


async def test_a_server_that_refuses_idle_is_polled_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    class Client:
        def has_capability(self, name: str) -> bool:
            return name == "IDLE"

        async def idle_start(self, timeout: float) -> asyncio.Future[Any]:
            raise aioimaplib.Abort("server returned error to IDLE command")

    monkeypatch.setenv("IMAP_PASSWORD", "x")
    server = model.Server(name="m", host="imap.example.com", username="u", password_env="IMAP_PASSWORD",
                          poll_every=timing.Duration(seconds=90))  # fmt: skip
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    poller = imap.Poller(imap.Mailbox("m", server), None, None, sleep=sleep)  # type: ignore[arg-type]
    session = imap.Session(Client(), asyncio.get_running_loop().create_future(), "fake:143", 1.0)  # type: ignore[arg-type]
    await poller.wait(session)
    await poller.wait(session)
    assert waits == [90, 90] and not poller.use_idle and poller.idles == 1


def test_a_select_without_uidvalidity_is_refused() -> None:
    ok = imap.parse_select([b"2 EXISTS", b"OK [UIDVALIDITY 17] UIDs valid", b"OK [UIDNEXT 3] Predicted", b"done"])
    assert ok == imap.Selected(17, 3, 2)
    with pytest.raises(imap.ImapError, match="no UIDVALIDITY"):
        imap.parse_select([b"2 EXISTS", b"done"])
