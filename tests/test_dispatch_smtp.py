"""The scheduler's sending over a real SMTP server: sent, deferred with backoff, failed and blocked, and `unknown`
after a crash between "sending" and "sent" (never sent twice). On SQLite and PostgreSQL."""

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

PEOPLE = (
    Row(2, "L1", "lead", "jo@example.org", {"first_name": "Jo", "owner": "anna"}),
    Row(3, "L2", "lead", "kim@example.net", {"first_name": "Kim", "owner": "anna"}),
    Row(4, "L3", "lead", "sam@example.com", {"first_name": "Sam", "owner": "anna"}),
)


@dataclasses.dataclass
class Sending:
    store: Store
    server: SmtpServer
    scheduler: scheduler.Scheduler
    transport: smtp.SmtpTransport


@pytest.fixture
def open_store(people_store: Store) -> Store:
    """The example rules' store with this module's PEOPLE (conftest.py)."""
    return people_store


def sending(store: Store, server: SmtpServer, **relay: object) -> Sending:
    values: dict[str, object] = {"name": "relay", "host": "127.0.0.1", "port": server.port,
                                 "security": model.Security.NONE, "timeout": timing.Duration(seconds=2)}  # fmt: skip
    values.update(relay)
    transport = smtp.SmtpTransport(model.Server(**values))  # type: ignore[arg-type]
    sched = scheduler.Scheduler(store, RULES, transport, rng=random.Random(7))
    return Sending(store, server, sched, transport)


async def enroll_all(s: Sending, at: dt.datetime) -> dict[str, int]:
    ids = {}
    for record_id in ("L1", "L2", "L3"):
        record = await s.store.get_record(record_id)
        result = await enrolling.enroll(s.store, RULES, record, RULES.sequences["inbound-nurture"], enrolled_by="anna", now=at)
        assert isinstance(result, seq.Enrollment), result
        ids[record_id] = result.id
    return ids


async def outbox_by_recipient(store: Store) -> dict[str, dict[str, object]]:
    return {str(m["recipient"]): m for m in await store.outbox()}


async def test_one_tick_sends_defers_a_451_and_fails_a_550_blocking_that_enrollment(
    open_store: Store, smtp_server: SmtpServers
) -> None:
    server = smtp_server(rcpt={"kim@example.net": mailservers.temporary("451 4.7.1 Greylisted, try later"),
                               "sam@example.com": "550 5.1.1 <sam@example.com>: Recipient address rejected"})  # fmt: skip
    s = sending(open_store, server)
    ids = await enroll_all(s, MONDAY)

    report = await s.scheduler.tick(MONDAY)

    assert (report.queued, report.sent, report.deferred, report.failed) == (3, 1, 1, 1)
    assert report.replies == {"2xx": 1, "4xx": 1, "5xx": 1}  # /metrics counts them (outreach_smtp_replies_total)
    box = await outbox_by_recipient(s.store)
    assert box["jo@example.org"]["state"] == "sent"
    assert box["kim@example.net"]["state"] == "deferred"
    assert box["kim@example.net"]["last_error"] == "451 4.7.1 Greylisted, try later"
    assert box["sam@example.com"]["state"] == "failed"
    sam = await s.store.get_enrollment(ids["L3"])
    assert sam is not None and sam["status"] == "blocked"
    assert sam["reason"] == "undeliverable: 550 5.1.1 <sam@example.com>: Recipient address rejected"
    assert "send_failed" in [e.kind for e in await s.store.events("L3")]
    kim = await s.store.get_enrollment(ids["L2"])
    assert kim is not None and kim["status"] == "active"  # a temporary failure does not block

    # The first retry waits between half and all of a minute (equal jitter), then goes.
    assert str(await s.scheduler.tick(MONDAY + dt.timedelta(seconds=29))) == "nothing to do"
    report = await s.scheduler.tick(MONDAY + dt.timedelta(minutes=1))
    await s.transport.close()
    assert report.sent == 1
    assert (await outbox_by_recipient(s.store))["kim@example.net"]["state"] == "sent"
    assert sorted(m.rcpt_tos[0] for m in server.messages) == ["jo@example.org", "kim@example.net"]


async def test_temporary_failures_back_off_exponentially_with_jitter_until_max_attempts(
    open_store: Store, smtp_server: SmtpServers
) -> None:
    server = smtp_server(data="451 4.3.0 Mailbox busy")
    s = sending(open_store, server)
    record = await s.store.get_record("L1")
    await enrolling.enroll(s.store, RULES, record, RULES.sequences["inbound-nurture"], enrolled_by="anna", now=MONDAY)
    now, waits = MONDAY, []
    for _ in range(RULES.settings.limits.max_attempts):
        await s.scheduler.tick(now)
        message = (await s.store.outbox())[0]
        if message["state"] == "failed":
            break
        retry_at = message["next_attempt_at"]
        assert isinstance(retry_at, dt.datetime)
        waits.append((retry_at - now).total_seconds())
        now = retry_at
    await s.transport.close()

    assert (await s.store.outbox())[0]["state"] == "failed"
    assert len(server.answers) >= RULES.settings.limits.max_attempts
    for attempt, wait in enumerate(waits):
        ceiling = min(2**attempt, 360) * 60
        assert ceiling / 2 <= wait <= ceiling, (attempt, wait)
    assert len(set(waits)) == len(waits)


async def test_a_crash_between_sending_and_sent_leaves_the_message_unknown_and_never_sends_it_twice(
    open_store: Store, smtp_server: SmtpServers
) -> None:
    server = smtp_server()
    s = sending(open_store, server)
    record = await s.store.get_record("L1")
    await enrolling.enroll(s.store, RULES, record, RULES.sequences["inbound-nurture"], enrolled_by="anna", now=MONDAY)
    await s.scheduler.run_due(MONDAY, scheduler.TickReport())
    arrived = asyncio.Event()
    real_send = s.transport.send

    async def send_then_die(*args: object) -> object:
        result = await real_send(*args)  # type: ignore[arg-type]
        arrived.set()
        await asyncio.sleep(3600)  # the process dies here: "sent" is never written
        return result

    s.transport.send = send_then_die  # type: ignore[method-assign]
    task = asyncio.create_task(s.scheduler.dispatch(MONDAY, scheduler.TickReport()))
    await asyncio.wait_for(arrived.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await s.transport.close()
    assert [m["state"] for m in await s.store.outbox()] == ["sending"]

    # The daemon starts again: what was being sent becomes `unknown` and stays unsent.
    assert await s.store.recover_outbox() == 1
    restarted = sending(open_store, server)
    report = await restarted.scheduler.tick(MONDAY + dt.timedelta(minutes=5))
    await restarted.transport.close()
    assert report.sent == 0
    assert [m["state"] for m in await s.store.outbox()] == ["unknown"]
    assert len(server.messages) == 1


async def test_a_raising_transport_defers_and_the_batch_goes_on(open_store: Store, smtp_server: SmtpServers) -> None:
    server = smtp_server()
    s = sending(open_store, server)
    await enroll_all(s, MONDAY)
    real_send = s.transport.send

    async def flaky(sender: str, recipients: list[str], message: bytes) -> object:
        if recipients == ["kim@example.net"]:
            raise RuntimeError("a bug in a transport")
        return await real_send(sender, recipients, message)

    s.transport.send = flaky  # type: ignore[method-assign,assignment]
    report = await s.scheduler.tick(MONDAY)
    await s.transport.close()

    assert (report.sent, report.deferred) == (2, 1)
    assert report.replies == {"2xx": 2, "none": 1}  # no reply: the send never reached the relay
    box = await outbox_by_recipient(s.store)
    assert box["kim@example.net"]["last_error"] == "RuntimeError: a bug in a transport"
