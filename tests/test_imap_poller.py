"""Reading replies, auto-replies and bounces from a real Dovecot, on SQLite and PostgreSQL.

Mail is delivered into the rep's INBOX by IMAP APPEND, as a mail server would. The poller never marks anything
read and never deletes; it reads each message once, across restarts, dropped connections and UIDVALIDITY changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
import shutil
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from outreach import daemon as daemon_module
from outreach.app import enrolling, inbox, scheduler
from outreach.engine import sequences as seq
from outreach.mail import imap, inbound, links, verp
from outreach.mail import transport as mail_transport
from outreach.rules import model, timing
from outreach.store import Store, tables
from tests.conftest import FIXTURES, ROOT, need
from tests.mailservers import Certificate, Dovecot, free_port
from tests.worlds import MONDAY, RULES, Row, rows, seeded_store

pytestmark = pytest.mark.integration

REP, PASSWORD = "rep@example.com", "secret"
UTC = dt.UTC
PEOPLE = (
    Row(2, "L1", "lead", "jo@example.org", {"first_name": "Jo", "owner": "anna"}),
    Row(3, "L2", "lead", "kim@example.net", {"first_name": "Kim", "owner": "anna"}),
    Row(4, "L3", "lead", "sam@example.com", {"first_name": "Sam", "owner": "anna"}),
)
EMAIL = {"L1": "jo@example.org", "L2": "kim@example.net", "L3": "sam@example.com"}
CORPUS = FIXTURES / "inbound"
WAIT = 10.0  # seconds a test waits at most for something the poller does


# --- mail as it arrives ---------------------------------------------------------------------------------------


def reply(our_id: str, sender: str, *, subject: str = "Re: Quick question", number: int = 1) -> bytes:
    """A person's reply that quotes our message and names it in In-Reply-To and References."""
    return (
        f"From: <{sender}>\r\nTo: Anna Berger <anna@example.com>\r\nSubject: {subject}\r\n"
        f"Message-ID: <reply-{number}.{sender}>\r\nIn-Reply-To: {our_id}\r\nReferences: {our_id}\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "\r\nSounds good, let's talk on Thursday.\r\n\r\n> Hi, a quick question...\r\n"
    ).encode()


def auto_reply(our_id: str) -> bytes:
    """Gmail's vacation responder (from the corpus), answering our message."""
    return corpus("gmail-vacation-responder.eml", {"<b0b1b2b3b4b5b6b7b8b9babbbcbdbebf@example.com>": our_id})


def dsn(our_id: str, recipient: str, *, action: str = "failed", status: str = "5.1.1") -> bytes:
    """A Postfix delivery status notification about our message to `recipient`."""
    code = "550" if status.startswith("5") else "451"
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mail.example.com (Mail Delivery System)\r\nTo: anna@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
        "Message-ID: <dsn-1@mail.example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mail.example.com.\r\n\r\n"
        f"<{recipient}>: host mx.example.org said: {code} {status} user unknown\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {code} {status} user unknown\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Anna Berger <anna@example.com>\r\nTo: {recipient}\r\nMessage-ID: {our_id}\r\n"
        "Subject: Quick question\r\n\r\n--B--\r\n"
    ).encode()


def corpus(name: str, replace: dict[str, str] | None = None) -> bytes:
    data = (CORPUS / name).read_bytes()
    for old, new in (replace or {}).items():
        assert old.encode() in data, (name, old)
        data = data.replace(old.encode(), new.encode())
    return data


def imap_time(at: dt.datetime) -> str:
    return at.astimezone(UTC).strftime('"%d-%b-%Y %H:%M:%S +0000"')


# --- the world: a store with sent mail, a Dovecot, a poller -----------------------------------------------------


@dataclasses.dataclass
class World:
    store: Store
    dovecot: Dovecot
    scheduler: scheduler.Scheduler
    server: model.Server
    now: list[dt.datetime]

    def clock(self) -> dt.datetime:
        return self.now[0]

    def poller(self, server: model.Server | None = None, **options: Any) -> imap.Poller:
        mailbox = imap.Mailbox("anna", server or self.server, senders=("anna@example.com",))
        return imap.Poller(mailbox, self.store, inbox.InboundMail(self.store), clock=self.clock, **options)

    def deliver(self, raw: bytes, at: dt.datetime | None = None) -> int:
        """APPEND to the rep's INBOX, with INTERNALDATE `at` (default: the test's clock)."""
        return self.dovecot.append(REP, PASSWORD, raw, internaldate=imap_time(at or self.clock()))

    async def sent_id(self, record_id: str) -> str:
        (message,) = [m for m in await self.store.outbox(record_id=record_id)]
        return str(message["message_id"])

    async def events(self, record_id: str, kind: str) -> int:
        return sum(1 for e in await self.store.events(record_id) if e.kind == kind)

    async def status(self, record_id: str) -> tuple[str, str | None]:
        (e,) = await self.store.enrollments(record_id=record_id)
        return e["status"], e["reason"]

    def unread(self) -> bool:
        """Every message in the INBOX is as unread as it arrived."""
        return all("\\Seen" not in flags for flags in self.dovecot.flags_of(REP, PASSWORD).values())


@pytest.fixture
def imap_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rep's IMAP password as a systemd credential: $CREDENTIALS_DIRECTORY/anna-imap."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "anna-imap").write_text(PASSWORD + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))


@pytest.fixture
async def world(
    backend: tuple[str, str | None],
    dovecot: Dovecot,
    tmp_path: Path,
    imap_password: None,
) -> AsyncIterator[World]:
    store = await seeded_store(backend, PEOPLE)
    sched = scheduler.Scheduler(store, RULES, mail_transport.MaildirTransport(str(tmp_path / "outbox")))
    for record_id in EMAIL:
        record = await store.get_record(record_id)
        enrolled = await enrolling.enroll(sched.store, RULES, record, RULES.sequences["inbound-nurture"], enrolled_by="anna",
                                          now=MONDAY)
        assert isinstance(enrolled, seq.Enrollment), enrolled
    assert (await sched.tick(MONDAY)).sent == 3  # the intros, from anna@example.com
    server = model.Server(
        name="anna", host=dovecot.host, port=dovecot.port, security=model.Security.NONE, username=REP,
        password_file="$CREDENTIALS_DIRECTORY/anna-imap", timeout=timing.Duration(seconds=5),
    )  # fmt: skip
    w = World(store, dovecot, sched, server, [MONDAY + dt.timedelta(hours=1)])
    try:
        yield w
    finally:
        await store.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT) -> None:
    """Wait, polling briefly, until `check` holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel a poller or daemon task: it must end, cancelled, at once."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=WAIT)
    assert done and task.cancelled(), "the task did not stop when cancelled"


# --- what each kind of mail does ----------------------------------------------------------------------------


async def test_a_reply_to_our_message_stops_every_sequence_of_that_person(world: World) -> None:
    w = world
    assert str(await w.poller().poll_once()) == "no new mail"  # the first look: nothing arrived yet
    jo = await w.store.get_record("L1")
    assert isinstance(await enrolling.enroll(w.store, RULES, jo, RULES.sequences["welcome"], enrolled_by="anna", now=MONDAY),
                      seq.Enrollment)  # fmt: skip
    w.deliver(reply(await w.sent_id("L1"), "jo@example.org"))
    before = w.dovecot.flags_of(REP, PASSWORD)

    report = await w.poller().poll_once()

    assert str(report) == "1 new: 1 reply"
    assert [(e["sequence"], e["status"], e["reason"]) for e in await w.store.enrollments(record_id="L1")] == [
        ("inbound-nurture", "stopped", "replied"), ("welcome", "stopped", "replied")]  # fmt: skip
    assert await w.status("L2") == ("active", None)
    (event,) = [e for e in await w.store.events("L1") if e.kind == "replied"]
    assert event.source == "imap" and event.data["mailbox"] == "anna/INBOX"
    assert event.data["message_id"] == "<reply-1.jo@example.org>" and event.data["from"] == "jo@example.org"
    assert w.dovecot.flags_of(REP, PASSWORD) == before and w.unread()  # not marked read, nothing deleted


async def test_a_reply_found_by_its_subject_alone_stops_the_sequence(world: World) -> None:
    w = world
    await w.poller().poll_once()
    raw = (
        b"From: Kim <kim@example.net>\r\nTo: anna@example.com\r\nSubject: AW: Quick question, Kim\r\n"
        b"Message-ID: <no-threading@example.net>\r\n\r\nJa, gerne.\r\n"
    )  # a client that drops In-Reply-To and References
    w.deliver(raw)
    await w.poller().poll_once()
    assert await w.status("L2") == ("stopped", "replied")
    assert await w.status("L1") == ("active", None)


async def test_an_auto_reply_is_recorded_and_the_sequence_goes_on(world: World) -> None:
    w = world
    await w.poller().poll_once()
    w.deliver(auto_reply(await w.sent_id("L1")))

    assert str(await w.poller().poll_once()) == "1 new: 1 auto-reply"
    assert await w.status("L1") == ("active", None)
    (event,) = [e for e in await w.store.events("L1") if e.kind == "auto_reply"]
    assert event.data["reason"].startswith("Auto-Submitted: auto-replied")
    assert w.unread()


async def test_a_bounce_blocks_suppresses_and_marks_our_message_bounced(world: World) -> None:
    w = world
    await w.poller().poll_once()
    ours = await w.sent_id("L3")
    w.deliver(dsn(ours, "sam@example.com"))

    assert str(await w.poller().poll_once()) == "1 new: 1 bounce"
    (message,) = await w.store.outbox(record_id="L3")
    assert message["state"] == "bounced"
    assert await w.status("L3") == ("blocked", "bounced: 550 5.1.1 user unknown")
    async with w.store.engine.connect() as conn:
        s = tables.suppressions
        suppressed = (await conn.execute(sa.select(s.c.email, s.c.reason, s.c.source))).all()
    assert [tuple(r) for r in suppressed] == [("sam@example.com", "bounced", "imap anna/INBOX")]
    (event,) = [e for e in await w.store.events("L3") if e.kind == "bounced"]
    assert event.data["original"] == ours and event.data["status"] == "5.1.1"
    assert await w.status("L1") == ("active", None)
    assert w.unread()


async def test_a_gmail_bounce_from_the_corpus_names_the_server_s_words(world: World) -> None:
    w = world
    await w.poller().poll_once()
    w.deliver(corpus("gmail-dsn-failure.eml", {
        "<b4c5d6e7f8091a2b3c4d5e6f708192a3@example.com>": await w.sent_id("L2"),
        "kate.typo@customer-mail.example.com": "kim@example.net",
    }))  # fmt: skip
    await w.poller().poll_once()
    status, reason = await w.status("L2")
    assert status == "blocked" and reason is not None
    assert reason.startswith("bounced: 550") and "5.1.1 The email account that you tried to reach does" in reason
    assert await w.store.unsubscribed_at("kim@example.net") == w.clock()


async def test_a_delay_warning_only_warns(world: World) -> None:
    w = world
    await w.poller().poll_once()
    w.deliver(corpus("gmail-dsn-delay.eml", {
        "<c5d6e7f8091a2b3c4d5e6f708192a3b4@example.com>": await w.sent_id("L1"),
        "team@slowhost.example.org": "jo@example.org",
    }))  # fmt: skip

    assert str(await w.poller().poll_once()) == "1 new: 1 delayed"
    assert await w.status("L1") == ("active", None)
    assert [m["state"] for m in await w.store.outbox(record_id="L1")] == ["sent"]
    assert await w.store.unsubscribed_at("jo@example.org") is None
    (event,) = [e for e in await w.store.events("L1") if e.kind == "bounce_delayed"]
    assert event.data["status"] == "4.4.1"


async def test_unrelated_mail_is_ignored_stays_unread_and_nothing_is_deleted(world: World) -> None:
    w = world
    await w.poller().poll_once()
    uids = [w.deliver(corpus(name)) for name in ("newsletter-precedence-bulk.eml", "colleague-internal.eml",
                                                 "mailing-list-post.eml")]  # fmt: skip
    w.dovecot.append(REP, PASSWORD, corpus("colleague-internal.eml"), flags=["\\Flagged"])
    before = w.dovecot.flags_of(REP, PASSWORD)

    report = await w.poller().poll_once()

    assert str(report) == "4 new: 4 other"
    assert w.dovecot.flags_of(REP, PASSWORD) == before  # \Flagged kept, no \Seen added, all four there
    assert set(uids) < set(w.dovecot.uids(REP, PASSWORD))
    for record_id in EMAIL:
        assert await w.status(record_id) == ("active", None)
    position = await w.store.mailbox_position("anna/INBOX")
    assert position is not None and position.last_uid == max(before)


# --- trust: a report acts only on the recipient of a message of ours it refers to ------------------------------


async def _unverified_events(w: World) -> list[dict[str, Any]]:
    async with w.store.engine.connect() as conn:
        e = tables.events
        found = (await conn.execute(sa.select(e.c.record_id, e.c.data).where(e.c.kind == "unverified"))).all()
    assert all(row.record_id is None for row in found)
    return [dict(row.data) for row in found]


async def _suppressed(w: World) -> list[tuple[str, str]]:
    async with w.store.engine.connect() as conn:
        s = tables.suppressions
        return [tuple(r) for r in (await conn.execute(sa.select(s.c.email, s.c.reason).order_by(s.c.email))).all()]


def forged_dsn(*recipients: str, original: str | None = None, in_reply_to: str | None = None) -> bytes:
    """A multipart/report naming `recipients` as unknown users; with `original`, the returned message's id; with
    `in_reply_to`, the id it answers (as Exchange writes it)."""
    blocks = "".join(f"Final-Recipient: rfc822; {r}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n" for r in recipients)
    returned = (f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: Anna Berger <anna@example.com>\r\n"
                f"Message-ID: {original}\r\nSubject: Quick question\r\n\r\n") if original else ""  # fmt: skip
    answers = f"In-Reply-To: {in_reply_to}\r\n" if in_reply_to else ""
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@forger.example.net (Mail Delivery System)\r\n"
        "To: anna@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <forged@forger.example.net>\r\n"
        f'{answers}MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; forger.example.net\r\n\r\n"
        f"{blocks}{returned}--B--\r\n"
    ).encode()


async def test_a_forged_report_naming_people_we_mail_suppresses_and_blocks_nobody(world: World) -> None:
    # anyone could suppress anyone: a multipart/report naming addresses we mailed blocked and suppressed them
    w = world
    await w.poller().poll_once()
    w.deliver(forged_dsn(*EMAIL.values()))

    assert str(await w.poller().poll_once()) == "1 new: 1 bounce"
    for record_id in EMAIL:
        assert await w.status(record_id) == ("active", None)
    assert [m["state"] for m in await w.store.outbox()] == ["sent"] * 3
    assert await _suppressed(w) == []
    (event,) = await _unverified_events(w)
    assert event["kind"] == "bounce" and event["named"] == 3 and event["addresses"] == list(EMAIL.values())
    assert event["reason"].endswith("unverified: no reference to a message of ours")


async def test_a_report_of_20000_recipients_about_our_message_acts_on_its_recipient_only(world: World) -> None:
    w = world
    await w.poller().poll_once()
    victims = [f"user{i}@victim.example" for i in range(20_000)]
    data = forged_dsn("jo@example.org", *victims, "sam@example.com", in_reply_to=await w.sent_id("L1"))
    w.deliver(data[: 1 << 20] + b"\r\n")  # the poller reads the first MiB of it

    await w.poller().poll_once()
    assert await w.status("L1") == ("blocked", "bounced: 5.1.1")
    assert await w.status("L3") == ("active", None)  # named, but our message went to jo
    assert await _suppressed(w) == [("jo@example.org", "bounced")]


async def test_an_arf_complaint_stops_every_sequence_and_suppresses_the_address_as_a_complaint(world: World) -> None:
    # complaints were ignored, although the suppression list has a `complaint` reason
    w = world
    await w.poller().poll_once()
    ours = await w.sent_id("L2")
    w.deliver(corpus("arf-complaint.eml", {"<b52330734209d9eb2abd1052db30e73b@example.com>": ours,
                                           "rosa@yahoo.example.com": "kim@example.net"}))  # fmt: skip

    assert str(await w.poller().poll_once()) == "1 new: 1 complaint"
    assert await w.status("L2") == ("stopped", "complained")
    assert await _suppressed(w) == [("kim@example.net", "complaint")]
    (event,) = [e for e in await w.store.events("L2") if e.kind == "complained"]
    assert event.data["original"] == ours and event.source == "imap"
    assert await w.status("L1") == ("active", None)


async def test_a_complaint_that_refers_to_nothing_of_ours_is_only_recorded(world: World) -> None:
    w = world
    await w.poller().poll_once()
    w.deliver(corpus("arf-complaint.eml", {"rosa@yahoo.example.com": "kim@example.net"}))
    await w.poller().poll_once()
    assert await w.status("L2") == ("active", None) and await _suppressed(w) == []
    assert [e["kind"] for e in await _unverified_events(w)] == ["complaint"]


async def test_a_bounce_from_post_master_that_answers_our_message_is_no_reply(world: World) -> None:
    # Re: our subject and In-Reply-To our message from post_master@: it stopped the sequence as a reply
    w = world
    await w.poller().poll_once()
    ours = await w.sent_id("L1")
    w.deliver(corpus("post-master-re-subject.eml", {"<6f829906abcca4cc9e3a8f157d411eb0@example.com>": ours,
                                                    "2025550143@vtext.example.com": "jo@example.org"}))  # fmt: skip

    assert str(await w.poller().poll_once()) == "1 new: 1 bounce"
    assert await w.events("L1", "replied") == 0
    status, reason = await w.status("L1")
    assert status == "blocked" and reason is not None and "no such user here" in reason


async def test_a_success_report_and_a_full_mailbox_suppress_nothing(world: World) -> None:
    w = world
    await w.poller().poll_once()
    w.deliver(corpus("dsn-deliverable-2.1.5.eml", {"<ffe84dd94ba396ca4c6df01204a9cdd2@example.com>":
                                                   await w.sent_id("L1"), "lee@partner.example.net": "jo@example.org"}))  # fmt: skip
    w.deliver(dsn(await w.sent_id("L2"), "kim@example.net", status="5.2.2").replace(b"user unknown", b"mailbox full"))

    assert str(await w.poller().poll_once()) == "2 new: 1 bounce, 1 other"
    assert await w.status("L1") == ("active", None)
    assert await w.status("L2") == ("active", None)  # the address is fine: the mailbox is full
    assert [m["state"] for m in await w.store.outbox(record_id="L2")] == ["bounced"]
    (event,) = [e for e in await w.store.events("L2") if e.kind == "bounced"]
    assert (event.data["reason_code"], event.data["permanent"], event.data["blocked"]) == ("mailbox_full", False, 0)
    assert await _suppressed(w) == []


async def test_a_bounce_delivered_to_our_verp_address_names_its_message_even_when_its_text_names_nobody(
    world: World,
) -> None:
    w = world
    keys = links.Keys.parse("a-secret-of-at-least-32-bytes-0123456789")
    bounces = verp.Verp("bounces+{token}@example.com", keys, ("example.com",))
    await w.poller(verp=bounces).poll_once()
    (message,) = await w.store.outbox(record_id="L3")
    full = await w.store.outbox_message(message["id"])
    assert full is not None
    address = bounces.sender_for(full["message"])
    assert address is not None
    unreadable = (
        f"Delivered-To: {address}\r\nReturn-Path: <>\r\nFrom: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
        f"To: {address}\r\nSubject: Undeliverable\r\nMessage-ID: <verp-1@mx.example.com>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n550 5.1.1 Die Adresse ist unbekannt.\r\n"
    ).encode()
    forged = unreadable.replace(address.encode(), address[:-17].encode() + b"aaaa@example.com").replace(
        b"verp-1", b"verp-2")  # fmt: skip
    w.deliver(forged)  # a token we did not sign
    w.deliver(unreadable)

    await w.poller(verp=bounces).poll_once()
    assert await w.status("L3") == ("blocked", "bounced: 550 5.1.1 Die Adresse ist unbekannt.")
    assert await _suppressed(w) == [("sam@example.com", "bounced")]
    (event,) = await _unverified_events(w)
    assert event["message_id"] == "<verp-2@mx.example.com>"
    (bounced,) = [e for e in await w.store.events("L3") if e.kind == "bounced"]
    assert bounced.data["reason"].endswith(f"VERP address of our message {message['message_id']}")


async def test_x_outreach_headers_tie_a_bounce_to_our_message_only_for_the_address_we_wrote_to(world: World) -> None:
    w = world
    await w.poller().poll_once()
    (message,) = await w.store.outbox(record_id="L1")
    enrollment, step = message["enrollment_id"], message["step_id"]
    assert await w.store.message_ids_of_step(enrollment, step, ["jo@example.org"]) == {message["message_id"]}
    assert await w.store.message_ids_of_step(enrollment, step, ["kim@example.net"]) == set()

    def returned(recipient: str) -> bytes:
        return (
            "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.org\r\nTo: anna@example.com\r\n"
            "Subject: Mail delivery failed: returning message to sender\r\n"
            f"Message-ID: <x-{recipient.partition('@')[0]}@mx.example.org>\r\n\r\n"
            f"This message was created automatically by mail delivery software.\r\n\r\n  {recipient}\r\n"
            "    550 5.1.1 user unknown\r\n\r\n------ This is a copy of the message's headers. ------\r\n\r\n"
            f"X-Outreach-Enrollment: {enrollment}\r\nX-Outreach-Step: {step}\r\nSubject: Quick question\r\n"
        ).encode()

    w.deliver(returned("kim@example.net"))  # the headers of jo's message, another address: guessed
    w.deliver(returned("jo@example.org"))
    await w.poller().poll_once()
    assert await w.status("L2") == ("active", None)
    assert await w.status("L1") == ("blocked", "bounced: 550 5.1.1 user unknown")
    assert await _suppressed(w) == [("jo@example.org", "bounced")]


async def test_messages_are_read_off_the_event_loop(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    await w.poller().poll_once()
    threads: list[bool] = []
    real = inbound.read

    def read(data: bytes) -> inbound.Facts:
        threads.append(threading.current_thread() is threading.main_thread())
        return real(data)

    monkeypatch.setattr(inbound, "read", read)
    w.deliver(reply(await w.sent_id("L1"), "jo@example.org"))
    await w.poller().poll_once()
    assert threads == [False] and await w.status("L1") == ("stopped", "replied")


# --- reading each message once ---------------------------------------------------------------------------


async def test_a_restart_reads_nothing_twice_and_misses_nothing_that_arrived_while_it_was_down(world: World) -> None:
    w = world
    await w.poller().poll_once()
    w.deliver(reply(await w.sent_id("L1"), "jo@example.org"))
    w.deliver(auto_reply(await w.sent_id("L2")))
    assert str(await w.poller().poll_once()) == "2 new: 1 auto-reply, 1 reply"

    # Down: mail keeps arriving.
    w.deliver(reply(await w.sent_id("L2"), "kim@example.net"))
    w.deliver(corpus("newsletter-precedence-bulk.eml"))
    restarted = w.poller()  # a new process: only the store remembers
    assert str(await restarted.poll_once()) == "2 new: 1 other, 1 reply"
    assert str(await restarted.poll_once()) == "no new mail"

    assert (await w.events("L1", "replied"), await w.events("L2", "auto_reply"), await w.events("L2", "replied")) \
        == (1, 1, 1)  # fmt: skip
    assert await w.status("L2") == ("stopped", "replied")


async def test_a_connection_dropped_mid_fetch_loses_no_reply_and_counts_none_twice(world: World) -> None:
    w = world
    await w.poller().poll_once()
    for i, record_id in enumerate(EMAIL):
        w.deliver(corpus("newsletter-precedence-bulk.eml"))
        w.deliver(reply(await w.sent_id(record_id), EMAIL[record_id], number=i))
    relay = Relay(w.dovecot.port, cut_after_fetches=3)  # the 4th message's FETCH is cut halfway
    await relay.start()
    delays: list[float] = []

    async def no_wait(seconds: float) -> None:
        delays.append(seconds)

    poller = w.poller(dataclasses.replace(w.server, port=relay.port), sleep=no_wait, batch=1)
    task = asyncio.create_task(poller.run())
    try:

        async def all_stopped() -> bool:
            return [(await w.status(r))[0] for r in EMAIL] == ["stopped"] * 3

        await eventually(all_stopped, "every reply applied")
        await eventually(lambda: _true(poller.idling.is_set()), "the poller idles")
    finally:
        await stop(task)
        await relay.stop()
    assert relay.cuts == 1 and poller.connections == 2 and len(delays) == 1
    for record_id in EMAIL:
        assert await w.events(record_id, "replied") == 1
    assert w.unread()


async def test_a_kicked_connection_is_opened_again_and_idles_again(world: World) -> None:
    w = world
    delays: list[float] = []

    async def no_wait(seconds: float) -> None:
        delays.append(seconds)

    poller = w.poller(sleep=no_wait)
    task = asyncio.create_task(poller.run())
    try:
        await eventually(lambda: _true(poller.idling.is_set()), "the poller idles")
        w.dovecot.kick(REP)
        await eventually(lambda: _true(poller.connections == 2 and poller.idling.is_set()), "idling again")
        w.deliver(reply(await w.sent_id("L1"), "jo@example.org"))
        await eventually(lambda: _replied(w, "L1"), "the reply")
    finally:
        await stop(task)
    assert await w.events("L1", "replied") == 1


async def _replied(w: World, record_id: str) -> bool:
    return await w.events(record_id, "replied") == 1


async def _true(value: bool) -> bool:
    return value


async def test_a_changed_uidvalidity_resynchronises_without_reading_old_mail_as_new(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    w = world
    hour = dt.timedelta(hours=1)
    await w.poller().poll_once()
    w.deliver(auto_reply(await w.sent_id("L2")), at=MONDAY + 2 * hour)
    w.now[0] = MONDAY + 2 * hour
    await w.poller().poll_once()
    w.deliver(reply(await w.sent_id("L1"), "jo@example.org"), at=MONDAY + 5 * hour)
    w.now[0] = MONDAY + 5 * hour + dt.timedelta(minutes=1)
    await w.poller().poll_once()  # read to its end at 13:01
    w.deliver(reply(await w.sent_id("L3"), "sam@example.com"), at=MONDAY + 5.5 * hour)  # not read yet

    old = w.dovecot.uidvalidity(REP, PASSWORD)
    new = w.dovecot.change_uidvalidity(REP, PASSWORD)  # the same messages under new UIDs
    w.deliver(reply(await w.sent_id("L2"), "kim@example.net"), at=MONDAY + 6 * hour)
    w.now[0] = MONDAY + 6 * hour + dt.timedelta(minutes=5)
    with caplog.at_level(logging.WARNING, logger="outreach.imap"):
        report = await w.poller().poll_once()

    assert report.resynced and f"UIDVALIDITY changed from {old} to {new}" in caplog.text
    # The auto-reply (before 12:01) is not read again; the reply of L1 (read at 13:01) is read again and
    # recognised; the reply of L3 that arrived before the change and the one of L2 after it are applied.
    assert str(report) == "3 new: 3 reply"
    assert await w.events("L2", "auto_reply") == 1
    assert (await w.events("L1", "replied"), await w.events("L3", "replied"), await w.events("L2", "replied")) \
        == (1, 1, 1)  # fmt: skip
    position = await w.store.mailbox_position("anna/INBOX")
    assert position is not None and position.uidvalidity == new
    assert position.last_uid == max(w.dovecot.uids(REP, PASSWORD))
    assert str(await w.poller().poll_once()) == "no new mail"
    assert w.unread()


async def test_a_first_look_reads_only_what_arrived_since_our_first_message(world: World) -> None:
    w = world
    w.deliver(reply(await w.sent_id("L1"), "jo@example.org"), at=MONDAY - dt.timedelta(days=30))  # ids reused
    w.deliver(reply(await w.sent_id("L2"), "kim@example.net"), at=MONDAY + dt.timedelta(minutes=30))
    report = await w.poller().poll_once()
    assert report.resynced and str(report) == "1 new: 1 reply"
    assert await w.status("L1") == ("active", None)
    assert await w.status("L2") == ("stopped", "replied")


async def test_a_malformed_message_is_skipped_and_the_next_one_is_read(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    w = world
    await w.poller().poll_once()
    w.deliver(corpus("not-a-mail-message.eml"))
    w.deliver(dsn(await w.sent_id("L3"), "sam@example.com")[:300])  # cut in the middle of its header
    w.deliver(reply(await w.sent_id("L1"), "jo@example.org"))
    with caplog.at_level(logging.WARNING, logger="outreach.imap"):
        report = await w.poller().poll_once()
    assert report.skipped == 1 and "skipped: no header fields" in caplog.text
    assert await w.status("L1") == ("stopped", "replied")
    position = await w.store.mailbox_position("anna/INBOX")
    assert position is not None and position.last_uid == max(w.dovecot.uids(REP, PASSWORD))


async def test_a_message_the_classifier_fails_on_is_skipped(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    w = world
    await w.poller().poll_once()
    w.deliver(b"From: <x@example.org>\r\nSubject: boom\r\n\r\nx\r\n")
    w.deliver(reply(await w.sent_id("L1"), "jo@example.org"))
    real = inbound.read

    def read(data: bytes) -> inbound.Facts:
        if b"boom" in data:
            raise RuntimeError("a bug in the classifier")
        return real(data)

    monkeypatch.setattr(inbound, "read", read)
    report = await w.poller().poll_once()
    assert report.skipped == 1 and "the classifier failed" in caplog.text
    assert await w.status("L1") == ("stopped", "replied")


# --- waiting for mail ------------------------------------------------------------------------------------


async def test_idle_reads_a_message_as_soon_as_it_arrives_and_is_renewed(world: World) -> None:
    w = world
    poller = w.poller(idle_renew=0.3)
    task = asyncio.create_task(poller.run())
    try:
        await eventually(lambda: _true(poller.idling.is_set()), "the poller idles")
        w.deliver(reply(await w.sent_id("L1"), "jo@example.org"))
        await eventually(lambda: _replied(w, "L1"), "the reply, while idling", timeout=5)
        renewed = poller.idles
        await eventually(lambda: _true(poller.idles >= renewed + 2), "IDLE re-issued")
        w.deliver(auto_reply(await w.sent_id("L2")))
        await eventually(lambda: _events(w, "L2", "auto_reply"), "the auto-reply, after renewals", timeout=5)
    finally:
        await stop(task)
    assert poller.connections == 1 and poller.failures == 0


async def _events(w: World, record_id: str, kind: str) -> bool:
    return await w.events(record_id, kind) > 0


async def test_without_idle_it_polls_every_poll_every(world: World) -> None:
    w = world
    waits: list[float] = []
    go = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await go.wait()
        go.clear()

    server = dataclasses.replace(w.server, poll_every=timing.Duration(seconds=120))
    poller = w.poller(server, idle=False, sleep=sleep)
    task = asyncio.create_task(poller.run())
    try:
        await eventually(lambda: _true(len(waits) == 1), "the first wait")
        w.deliver(reply(await w.sent_id("L1"), "jo@example.org"))
        assert await w.events("L1", "replied") == 0
        go.set()  # two minutes pass
        await eventually(lambda: _replied(w, "L1"), "the reply, at the next poll")
    finally:
        await stop(task)
    assert waits[0] == 120 and poller.connections == 1 and not poller.idles


async def test_connection_failures_back_off_exponentially(world: World) -> None:
    w = world
    delays: list[float] = []
    done = asyncio.Event()

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 6:
            done.set()
            await asyncio.Event().wait()

    refused = dataclasses.replace(w.server, port=free_port())
    task = asyncio.create_task(w.poller(refused, sleep=sleep, rng=random.Random(3)).run())
    try:
        await asyncio.wait_for(done.wait(), WAIT)
    finally:
        await stop(task)
    for failure, delay in enumerate(delays, start=1):
        ceiling = min(imap.BACKOFF_MAX, 2 ** (failure - 1))
        assert ceiling / 2 <= delay <= ceiling, (failure, delay)


async def test_a_refused_login_is_reported_and_retried(world: World, caplog: pytest.LogCaptureFixture) -> None:
    w = world
    bad = dataclasses.replace(w.server, username="nobody@example.com")  # Dovecot answers after 2 s
    delays: list[float] = []
    retried = asyncio.Event()

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 1:
            retried.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(w.poller(bad, sleep=sleep).run())
    try:
        await asyncio.wait_for(retried.wait(), WAIT)
    finally:
        await stop(task)
    assert "refused the login of nobody@example.com" in caplog.text and "trying again in" in caplog.text


# --- the wire ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("security", [model.Security.TLS, model.Security.STARTTLS])
async def test_implicit_tls_and_starttls(world: World, tls_certificate: Certificate, security: model.Security) -> None:
    w = world
    server_side = tls_certificate.server_context()
    relay = Relay(w.dovecot.port, **({"tls": server_side} if security is model.Security.TLS else
                                     {"starttls": server_side}))  # fmt: skip
    await relay.start()
    try:
        server = dataclasses.replace(w.server, host="localhost", port=relay.port, security=security)
        poller = w.poller(server, tls_context=tls_certificate.client_context())
        await poller.poll_once()
        w.deliver(reply(await w.sent_id("L1"), "jo@example.org"))
        assert str(await poller.poll_once()) == "1 new: 1 reply"
        untrusted = w.poller(server)  # the system's trust store does not know our certificate
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusted.poll_once()
    finally:
        await relay.stop()
    assert relay.tls_connections == 2


# --- the daemon -----------------------------------------------------------------------------------------------


def daemon_rules(tmp: Path, anna: str) -> Path:
    """The example rules with anna's mailbox `anna`, and ben's whose password is not there (logged, not read)."""
    ben = "  ben: {host: 127.0.0.1, port: 1, security: none, username: ben, password_env: NO_SUCH_VARIABLE}\n"
    rules = tmp / "rules"
    if rules.exists():
        shutil.rmtree(rules)
    shutil.copytree(ROOT / "rules", rules)
    settings = (rules / "settings.yaml").read_text()
    start, end = settings.index("mailboxes:"), settings.index("tracking:")
    settings = settings[:start] + "mailboxes:\n" + anna + ben + settings[end:]
    settings = settings.replace("maildir: var/outbox", f"maildir: {tmp / 'out'}")
    (rules / "settings.yaml").write_text(settings)
    return rules


async def _idling(d: daemon_module.Daemon) -> bool:
    """Whether the daemon's poller of anna's mailbox idles (there is none while a reload restarts it)."""
    poller = d.inbox.pollers.get("anna") if d.inbox is not None else None
    return poller is not None and poller.idling.is_set()


def anna_mailbox(dovecot: Dovecot, port: int | None = None, folder: str = "INBOX") -> str:
    return (f"  anna: {{host: 127.0.0.1, port: {port or dovecot.port}, security: none, username: {REP},\n"
            f"         password_file: $CREDENTIALS_DIRECTORY/anna-imap, folder: {folder}, timeout: 5s}}\n")  # fmt: skip


async def test_the_daemon_reads_each_mailbox_restarts_a_changed_one_and_stops_cleanly(
    dovecot: Dovecot, imap_password: None, tmp_path: Path
) -> None:
    rules = daemon_rules(tmp_path, anna_mailbox(dovecot))
    d = daemon_module.Daemon(str(rules), f"sqlite:///{tmp_path / 'd.db'}", clock=lambda: MONDAY, tick=0.05)
    run = asyncio.create_task(d.run())
    try:
        await eventually(lambda: _true(d.inbox is not None and "anna" in d.inbox.pollers), "anna's poller")
        assert d.inbox is not None and set(d.inbox.tasks) == {"anna"}
        first = d.inbox.tasks["anna"]
        await eventually(lambda: _idling(d), "idling")

        d.reload_wanted = True  # SIGHUP, nothing changed: the poller goes on
        await eventually(lambda: _true(not d.reload_wanted), "the reload")
        assert d.inbox.tasks["anna"] is first

        dovecot.append(REP, PASSWORD, b"Subject: x\r\n\r\n", mailbox="Replies")
        (rules / "settings.yaml").write_text((rules / "settings.yaml").read_text().replace("folder: INBOX",
                                                                                          "folder: Replies"))  # fmt: skip
        d.reload_wanted = True  # SIGHUP, the folder changed: a new poller
        await eventually(lambda: _true(d.inbox is not None and d.inbox.tasks.get("anna") not in (None, first)),
                         "a new poller")  # fmt: skip
        assert first.cancelled()
        await eventually(lambda: _idling(d), "idling")
        d.stopping.set()  # SIGTERM
        await asyncio.wait_for(run, WAIT)
    finally:
        if not run.done():
            await stop(run)
    assert d.inbox is None
    await eventually(lambda: _true(dovecot.connected_users() == []), "logged out")


async def test_run_once_reads_the_mailboxes_before_the_tick(
    dovecot: Dovecot, imap_password: None, tmp_path: Path
) -> None:
    rules = daemon_rules(tmp_path, anna_mailbox(dovecot))
    url = f"sqlite:///{tmp_path / 'd.db'}"
    d = daemon_module.Daemon(str(rules), url, clock=lambda: MONDAY)
    await d.start()
    assert d.store is not None
    await d.store.import_records(rows(*PEOPLE), now=MONDAY)
    record = await d.store.get_record("L1")
    assert d.scheduler is not None
    await enrolling.enroll(d.store, RULES, record, RULES.sequences["inbound-nurture"], enrolled_by="anna", now=MONDAY)
    await d.tick()  # the intro goes out
    (intro,) = await d.store.outbox(record_id="L1")
    await d.close()
    raw = reply(str(intro["message_id"]), "jo@example.org")
    dovecot.append(REP, PASSWORD, raw, internaldate=imap_time(MONDAY + dt.timedelta(hours=1)))

    nudge_due = dt.datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # Wednesday: the nudge would go now
    d = daemon_module.Daemon(str(rules), url, clock=lambda: nudge_due)
    await d.run(once=True)
    reopened = await Store.open(url)
    try:
        (e,) = await reopened.enrollments(record_id="L1")
        assert (e["status"], e["reason"], e["steps_done"]) == ("stopped", "replied", 1)  # no nudge
        assert len(await reopened.outbox(record_id="L1")) == 1
    finally:
        await reopened.close()


async def test_run_once_with_a_virtual_time_reads_no_mailbox(
    dovecot: Dovecot, imap_password: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_module.Daemon, "install_signals", lambda self: None)
    rules = daemon_rules(tmp_path, anna_mailbox(dovecot))
    code = await daemon_module.serve(str(rules), f"sqlite:///{tmp_path / 'd.db'}", once=True, tick=1, now=MONDAY)
    assert code == 0
    reopened = await Store.open(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        assert await reopened.mailbox_position("anna/INBOX") is None
    finally:
        await reopened.close()


# --- a relay in front of Dovecot: TLS on the client's side, and a connection cut mid-fetch ---------------------


class Relay:
    """A TCP relay to Dovecot on a free port: implicit TLS (`tls`) or STARTTLS (`starttls`) towards the client,
    plain towards Dovecot; `cut_after_fetches` cuts the first connection halfway through that FETCH response + 1."""

    def __init__(
        self,
        target: int,
        *,
        tls: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
        cut_after_fetches: int | None = None,
    ) -> None:
        self.target = target
        self.tls = tls
        self.starttls = starttls
        self.cut_after = cut_after_fetches
        self.port = 0
        self.connections = 0
        self.tls_connections = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.tls is not None:
            self.tls_connections += 1
        cut = self.cut_after if self.connections == 1 else None
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [writer, up_writer]

        def close() -> None:
            writer.transport.abort()
            up_writer.transport.abort()

        async def down() -> None:  # Dovecot -> client
            fetches = 0
            while data := await up_reader.read(65536):
                if self.starttls is not None:
                    data = data.replace(b"CAPABILITY IMAP4rev1 ", b"CAPABILITY IMAP4rev1 STARTTLS ")
                if cut is not None:
                    at = -1
                    for _ in range(data.count(b" FETCH (")):
                        at = data.index(b" FETCH (", at + 1)
                        fetches += 1
                        if fetches > cut:
                            writer.write(data[: at + 40])
                            await writer.drain()
                            self.cuts += 1
                            close()
                            return
                writer.write(data)
                await writer.drain()
            close()

        async def up() -> None:  # client -> Dovecot
            while data := await reader.read(65536):
                if self.starttls is not None and data.rstrip().upper().endswith(b" STARTTLS"):
                    writer.write(data.split()[0] + b" OK Begin TLS negotiation now\r\n")
                    await writer.drain()
                    await writer.start_tls(self.starttls)
                    self.tls_connections += 1
                    continue
                up_writer.write(data)
                await up_writer.drain()
            close()

        try:
            await asyncio.gather(down(), up())
        except (OSError, ssl.SSLError):
            close()


async def test_a_killed_daemons_mailbox_is_read_by_another_within_a_lease_period(
    dovecot: Dovecot, imap_password: None, tmp_path: Path
) -> None:
    """Two daemons on one PostgreSQL database: the first reads anna's mailbox under its lease and is SIGKILLed;
    the second, which held nothing, takes the lease over and reads the mail that came in meanwhile."""
    import subprocess
    import sys

    from tests import stores

    found = await stores.new_pg_database()
    need(found is not None, f"PostgreSQL at {stores.PG_URL} is not reachable")
    assert found is not None
    url = found
    prepared = await Store.open(url, upgrade=True)
    await prepared.close()
    rules = daemon_rules(tmp_path, anna_mailbox(dovecot))
    first = subprocess.Popen([sys.executable, "-m", "outreach.cli", "run", "--rules", str(rules), "--db", url,
                              "--listen", "127.0.0.1:0", "--lease", "2", "--tick", "0.2"],
                             cwd=tmp_path, stderr=subprocess.PIPE, text=True)  # fmt: skip
    second: daemon_module.Daemon | None = None
    run: asyncio.Task[None] | None = None
    watcher = await Store.open(url)
    try:

        async def holder() -> str | None:
            leases = {x.name: x for x in await watcher.leases()}
            lease = leases.get("mailbox:anna")
            return lease.holder if lease is not None and lease.expires_at > dt.datetime.now(UTC) else None

        await eventually(lambda: _true_async(holder), "the first daemon reads anna's mailbox", timeout=30)
        taken_by = await holder()
        second = daemon_module.Daemon(str(rules), url, lease=dt.timedelta(seconds=2), tick=0.2)
        run = asyncio.create_task(second.run())
        await eventually(lambda: _true(second is not None and second.last_tick is not None), "the second one runs")
        assert second.inbox is not None and "anna" not in second.inbox.tasks  # the first one reads it
        assert "mailbox:anna" not in second.held and await holder() == taken_by

        first.kill()  # SIGKILL: nothing given up, the lease runs out
        first.wait()
        dovecot.append(REP, PASSWORD, b"From: jo@example.org\r\nSubject: after the kill\r\n\r\nhello\r\n")
        await eventually(lambda: _true(second is not None and "mailbox:anna" in second.held), "the takeover", 15)
        assert await holder() == second.id
        uid = max(dovecot.uids(REP, PASSWORD, "INBOX"))

        async def read_through() -> bool:
            position = await watcher.mailbox_position("anna/INBOX")
            return position is not None and (position.last_uid or 0) >= uid and \
                second is not None and second.inbox is not None and "anna" in second.inbox.tasks  # fmt: skip

        await eventually(read_through, "the second daemon read the mailbox", 15)
        await eventually(lambda: _idling(second), "the second daemon waits for more mail")  # connected, reading
    finally:
        if first.poll() is None:
            first.kill()
        if run is not None and second is not None:
            second.stopping.set()
            await asyncio.wait_for(run, WAIT)
        await watcher.close()
        await stores.drop_pg_database(url)


async def _true_async(check: Callable[[], Awaitable[object]]) -> bool:
    return bool(await check())
