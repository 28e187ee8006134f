"""The dispatcher when the database fails under it (issue 20's drills: bench/drills/database.py kills PostgreSQL's
connections, bench/drills/disk_full.py fills SQLite's volume): what became of the messages on the wire is kept
and written once the database takes it, nothing more is claimed meanwhile, and the log says why. Before, the
failure ended the dispatch and left those messages `sending` for as long as the daemon ran: never sent again,
never shown to an operator as `unknown`."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from outreach.app import enrolling, scheduler
from outreach.engine import sequences as seq
from outreach.mail import smtp
from outreach.rules import model, timing
from outreach.store import Store, changes
from outreach.store.sequencing import SendOutcome
from tests.mailservers import SmtpServer, SmtpServers
from tests.worlds import MONDAY, RULES, Row

pytestmark = pytest.mark.integration

PEOPLE = tuple(Row(2 + i, f"L{i}", "lead", f"p{i}@example.org", {"first_name": f"P{i}", "owner": "anna"})
               for i in range(6))  # fmt: skip
FULL = sa.exc.OperationalError("UPDATE outbox ...", {}, sqlite3.OperationalError("database or disk is full"))


@pytest.fixture
def open_store(people_store: Store) -> Store:
    return people_store


async def queued(store: Store, server: SmtpServer, pool: int) -> tuple[scheduler.Scheduler, smtp.SmtpTransport]:
    """The six people's first messages queued, and a scheduler that sends them to `server` over `pool` connections."""
    for i in range(6):
        e = await enrolling.enroll(store, RULES, await store.get_record(f"L{i}"), RULES.sequences["inbound-nurture"],
                                   enrolled_by="anna", now=MONDAY)  # fmt: skip
        assert isinstance(e, seq.Enrollment), e
    relay = model.Server(name="relay", host="127.0.0.1", port=server.port, security=model.Security.NONE,
                         pool_size=pool, timeout=timing.Duration(seconds=5))  # fmt: skip
    transport = smtp.SmtpTransport(relay)
    s = scheduler.Scheduler(store, RULES, transport, rng=random.Random(3))
    await s.run_due(MONDAY, scheduler.TickReport())
    return s, transport


async def test_answers_the_database_refuses_are_kept_and_written_when_it_takes_them(
    open_store: Store, smtp_server: SmtpServers, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = smtp_server()
    s, transport = await queued(open_store, server, pool=3)
    monkeypatch.setattr(scheduler, "WRITE_RETRY", 0.01)
    seen: list[str] = []  # what the dispatcher asked of the store, in order
    real_claim, real_finishing = open_store.claim_outbox, open_store.finishing_sends

    async def claim(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        seen.append("claim")
        return await real_claim(*args, **kwargs)

    @contextlib.asynccontextmanager
    async def finishing(done: Sequence[SendOutcome], now: dt.datetime) -> AsyncIterator[changes.FinishedSends]:
        if seen.count("refused") < 3:  # the disk is full for the first three tries
            seen.append("refused")
            raise FULL
        seen.append("written")
        async with real_finishing(done, now) as tx:
            yield tx

    monkeypatch.setattr(open_store, "claim_outbox", claim)
    monkeypatch.setattr(open_store, "finishing_sends", finishing)

    report = scheduler.TickReport()
    with caplog.at_level(logging.INFO, logger="outreach"):
        await s.dispatch(MONDAY, report)
    await transport.close()

    assert report.sent == 6
    assert {m["state"] for m in await open_store.outbox()} == {"sent"}
    assert sorted(m.rcpt_tos[0] for m in server.messages) == [f"p{i}@example.org" for i in range(6)]  # each once
    assert seen[:5] == ["claim", "refused", "refused", "refused", "written"]  # no claim while it was refused
    assert "cannot be written (database or disk is full); nothing more is claimed until it is" in caplog.text
    assert "is written after 3 failed tries; sending goes on" in caplog.text


async def test_a_claim_the_database_refuses_ends_the_dispatch_once_the_messages_in_flight_are_written(
    open_store: Store, smtp_server: SmtpServers, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = smtp_server()
    s, transport = await queued(open_store, server, pool=2)
    real_claim = open_store.claim_outbox
    claims = 0

    async def claim(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        nonlocal claims
        claims += 1
        if claims == 2:  # the connection ends under the second claim, with the first two messages on the wire
            raise sa.exc.DBAPIError("UPDATE outbox ...", {}, ConnectionError("terminating connection due to "
                                                                             "administrator command"))  # fmt: skip
        return await real_claim(*args, **kwargs)

    monkeypatch.setattr(open_store, "claim_outbox", claim)

    first, second = scheduler.TickReport(), scheduler.TickReport()
    with caplog.at_level(logging.WARNING, logger="outreach"):
        await s.dispatch(MONDAY, first)
    after_first = sorted(m["state"] for m in await open_store.outbox())
    await s.dispatch(MONDAY, second)  # the next look
    await transport.close()

    assert first.sent == 2 and after_first == ["queued"] * 4 + ["sent"] * 2  # nothing left `sending`
    assert "no mail can be claimed (terminating connection due to administrator command)" in caplog.text
    assert second.sent == 4 and {m["state"] for m in await open_store.outbox()} == {"sent"}
    assert len(server.messages) == 6
