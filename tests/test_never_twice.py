"""Never twice, never lost (issue 20, items 1-4), against a real aiosmtpd server that makes each fault: a message
the relay may have taken is `unknown` and never sent again by itself; each answer is written as it arrives, so a
crash leaves `sending` only what was on the wire; a 5xx on a sequence's last step blocks the enrollment; claims
go through an index."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random

import pytest

from outreach.app import enrolling, scheduler
from outreach.engine import sequences as seq
from outreach.mail import smtp
from outreach.rules import model, timing
from outreach.store import Store
from tests import mailservers
from tests.mailservers import SmtpServer, SmtpServers
from tests.worlds import MONDAY, RULES, Row

pytestmark = pytest.mark.integration

SENDER = "anna@example.com"
PEOPLE = tuple(Row(2 + i, f"L{i}", "lead", f"p{i}@example.org", {"first_name": f"P{i}", "owner": "anna"})
               for i in range(6))  # fmt: skip


@pytest.fixture
def open_store(people_store: Store) -> Store:
    return people_store


def relay(server: SmtpServer, **changes: object) -> model.Server:
    values: dict[str, object] = {"name": "relay", "host": "127.0.0.1", "port": server.port,
                                 "security": model.Security.NONE, "timeout": timing.Duration(seconds=2)}  # fmt: skip
    values.update(changes)
    return model.Server(**values)  # type: ignore[arg-type]


def built(to: str) -> bytes:
    return (f"From: {SENDER}\r\nTo: {to}\r\nSubject: hello\r\nMessage-ID: <{to}@test>\r\n\r\nHi\r\n").encode()


# --- the transport ---------------------------------------------------------------------------------------


async def test_a_connection_cut_after_the_relay_took_the_message_is_in_doubt_not_a_temporary_failure(
    smtp_server: SmtpServers,
) -> None:
    server = smtp_server(data=mailservers.temporary(mailservers.DROP))
    transport = smtp.SmtpTransport(relay(server))

    result = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    await transport.close()

    assert (result.ok, result.permanent, result.in_doubt) == (False, False, True)
    assert "the relay may have taken it" in result.detail
    assert len(server.messages) == 1  # it did


async def test_an_answer_that_comes_after_the_timeout_is_in_doubt(smtp_server: SmtpServers) -> None:
    server = smtp_server(data=mailservers.temporary(f"{mailservers.SLOW}2.5"))
    transport = smtp.SmtpTransport(relay(server, timeout=timing.Duration(seconds=1)))

    result = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    await transport.close()

    assert (result.ok, result.in_doubt) == (False, True)
    assert "TimeoutError" in result.detail or "Timeout" in result.detail
    assert [a.command for a in server.answers] == ["RCPT", "DATA"]  # the whole message was handed over


async def test_a_refusal_or_a_cut_before_the_message_is_handed_over_is_still_tried_again(
    smtp_server: SmtpServers,
) -> None:
    server = smtp_server(rcpt={"kim@example.org": mailservers.temporary("421 4.3.2 Shutting down")},
                         data=mailservers.temporary("451 4.3.0 Try again"))  # fmt: skip
    transport = smtp.SmtpTransport(relay(server))

    cut = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    refused = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    taken = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    await transport.close()

    assert (cut.ok, cut.in_doubt, cut.code) == (False, False, 421)
    assert (refused.ok, refused.in_doubt, refused.code) == (False, False, 451)
    assert taken.ok and len(server.messages) == 1


# --- the dispatcher ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Sending:
    store: Store
    scheduler: scheduler.Scheduler
    transport: smtp.SmtpTransport


def sending(store: Store, server: SmtpServer, **changes: object) -> Sending:
    transport = smtp.SmtpTransport(relay(server, **changes))
    return Sending(store, scheduler.Scheduler(store, RULES, transport, rng=random.Random(3)), transport)


async def enrolled(store: Store, name: str, ids: list[str], at: dt.datetime = MONDAY) -> dict[str, int]:
    found = {}
    for record_id in ids:
        e = await enrolling.enroll(store, RULES, await store.get_record(record_id), RULES.sequences[name],
                                   enrolled_by="anna", now=at)  # fmt: skip
        assert isinstance(e, seq.Enrollment), e
        found[record_id] = e.id
    return found


async def test_a_message_whose_answer_was_lost_becomes_unknown_and_is_never_sent_again_by_itself(
    open_store: Store, smtp_server: SmtpServers
) -> None:
    server = smtp_server(data_to={"p1@example.org": mailservers.temporary(mailservers.DROP)})
    s = sending(open_store, server)
    await enrolled(s.store, "inbound-nurture", ["L0", "L1", "L2"])

    report = await s.scheduler.tick(MONDAY)
    later = [await s.scheduler.tick(MONDAY + dt.timedelta(hours=h)) for h in (1, 6, 30)]
    await s.transport.close()

    assert (report.sent, report.in_doubt, report.deferred) == (2, 1, 0)
    states = {m["recipient"]: (m["state"], m["last_error"]) for m in await s.store.outbox()}
    assert states["p1@example.org"][0] == "unknown"
    assert "the relay may have taken it" in str(states["p1@example.org"][1])
    assert all(r.sent == 0 and r.in_doubt == 0 for r in later)
    received = sorted(m.rcpt_tos[0] for m in server.messages)
    assert received == ["p0@example.org", "p1@example.org", "p2@example.org"]  # p1 once: taken, never again


async def test_each_answer_is_written_as_it_arrives_so_a_crash_leaves_sending_only_what_is_on_the_wire(
    open_store: Store, smtp_server: SmtpServers
) -> None:
    server = smtp_server(data_to={"p3@example.org": mailservers.HANG})
    s = sending(open_store, server, pool_size=2, timeout=timing.Duration(seconds=60))
    await enrolled(s.store, "inbound-nurture", [f"L{i}" for i in range(6)])
    await s.scheduler.run_due(MONDAY, scheduler.TickReport())

    task = asyncio.create_task(s.scheduler.dispatch(MONDAY, scheduler.TickReport()))
    for _ in range(200):
        states = {m["recipient"]: m["state"] for m in await s.store.outbox()}
        if sorted(states.values()) == ["sending"] + ["sent"] * 5:
            break
        await asyncio.sleep(0.05)
    task.cancel()  # the process dies while p3's message hangs on the wire
    with pytest.raises(asyncio.CancelledError):
        await task
    await s.transport.close()

    states = {m["recipient"]: m["state"] for m in await s.store.outbox()}
    assert states == {f"p{i}@example.org": ("sending" if i == 3 else "sent") for i in range(6)}
    assert await s.store.recover_outbox() == 1  # at the next start: only the message on the wire is in doubt


async def test_a_5xx_on_the_last_step_blocks_the_enrollment_with_the_reason(
    open_store: Store, smtp_server: SmtpServers
) -> None:
    refused = "550 5.1.1 <p0@example.org>: Mailbox unavailable"
    server = smtp_server(rcpt={"p0@example.org": mailservers.Reply(first=("250 OK",), then=refused)})
    s = sending(open_store, server)
    ids = await enrolled(s.store, "welcome", ["L0"])

    await s.scheduler.tick(MONDAY)  # the welcome goes
    report = await s.scheduler.tick(MONDAY + dt.timedelta(days=4))  # the check-in, the last step, is refused
    await s.transport.close()

    assert (report.completed, report.failed) == (1, 1)
    row = await s.store.get_enrollment(ids["L0"])
    assert row is not None
    assert (row["status"], row["reason"], row["ended_at"]) == ("blocked", f"undeliverable: {refused}", None)
    assert "send_failed" in [e.kind for e in await s.store.events("L0")]


async def test_a_completed_enrollment_is_not_reopened_when_the_address_is_live_in_the_sequence_again(
    open_store: Store, smtp_server: SmtpServers
) -> None:
    refused = "550 5.1.1 <p0@example.org>: Mailbox unavailable"
    server = smtp_server(rcpt={"p0@example.org": mailservers.Reply(first=("250 OK",), then=refused)})
    s = sending(open_store, server)
    ids = await enrolled(s.store, "welcome", ["L0"])
    await s.scheduler.tick(MONDAY)
    await s.scheduler.run_due(MONDAY + dt.timedelta(days=4), scheduler.TickReport())  # completed, mail queued
    again = await enrolled(s.store, "welcome", ["L0"], at=MONDAY + dt.timedelta(days=4))  # enrolled anew

    await s.scheduler.dispatch(MONDAY + dt.timedelta(days=4), scheduler.TickReport())
    await s.transport.close()

    first = await s.store.get_enrollment(ids["L0"])
    assert first is not None and first["status"] == "completed"  # one live enrollment per address
    second = await s.store.get_enrollment(again["L0"])
    assert second is not None and second["status"] == "active"  # untouched: its own welcome is not queued yet
