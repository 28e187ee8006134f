"""The embedded default transport: every message a file in a Maildir, which any mail client can open."""

from __future__ import annotations

import asyncio
import datetime as dt
import mailbox
import os
import stat
from pathlib import Path

import pytest

from outreach.mail import message, transport

pytestmark = pytest.mark.unit

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def built(n: int, *, minutes: int | None = None) -> bytes:
    return message.build(
        sender=("Ana Rep", "ana@example.com"),
        to=f"jo{n}@customer.example.org",
        subject=f"Hello {n}",
        text=f"Message {n}\n",
        html=f"<p>Message {n}</p>",
        message_id=message.new_message_id("mail.example.com", f"m{n:03d}"),
        date=START + dt.timedelta(minutes=n if minutes is None else minutes),
    )


async def test_sent_messages_land_in_new_and_read_back_in_date_order(tmp_path: Path) -> None:
    outbox = transport.MaildirTransport(tmp_path / "outbox")
    for n in (2, 0, 1):  # sent out of order: read_all sorts by Date
        result = await outbox.send("ana@example.com", [f"jo{n}@customer.example.org"], built(n))
        assert result.ok, result.detail
        assert not result.permanent
    await outbox.close()

    messages = transport.read_all(tmp_path / "outbox")

    assert [str(m["Subject"]) for m in messages] == ["Hello 0", "Hello 1", "Hello 2"]
    assert [str(m["Message-ID"]) for m in messages] == [f"<m00{n}@mail.example.com>" for n in range(3)]
    assert [str(m["To"]) for m in messages] == [f"jo{n}@customer.example.org" for n in range(3)]
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 3


async def test_the_file_holds_the_built_message_with_the_envelope_on_top(tmp_path: Path) -> None:
    outbox = transport.MaildirTransport(tmp_path / "outbox")
    data = built(0)

    result = await outbox.send("bounces@example.com", ["jo0@customer.example.org", "audit@example.com"], data)

    (path,) = (tmp_path / "outbox" / "new").iterdir()
    assert result.detail == f"written to {path}"
    written = path.read_bytes()
    assert written == (
        b"Return-Path: <bounces@example.com>\n"
        b"Envelope-To: jo0@customer.example.org, audit@example.com\n" + data.replace(b"\r\n", b"\n")
    )
    (msg,) = transport.read_all(tmp_path / "outbox")
    plain, html = msg.iter_parts()
    assert plain.get_content() == "Message 0\n"
    assert html.get_content() == "<p>Message 0</p>\n"


async def test_an_existing_empty_directory_becomes_the_maildir(tmp_path: Path) -> None:
    outbox = transport.MaildirTransport(tmp_path)  # as after `mkdir -p var/outbox`

    assert (await outbox.send("ana@example.com", ["jo@example.org"], built(0))).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cur", "new", "tmp"]
    assert len(list((tmp_path / "new").iterdir())) == 1


async def test_the_outbox_and_the_var_directory_it_makes_are_their_owner_s_only(tmp_path: Path) -> None:
    # issue 18, item 3: var/ holds the database, the signing secret and every message
    old = os.umask(0o022)
    try:
        assert (await transport.MaildirTransport(tmp_path / "var" / "outbox").send(
            "ana@example.com", ["jo0@customer.example.org"], built(0))).ok  # fmt: skip
    finally:
        os.umask(old)
    for made in ("var", "var/outbox", "var/outbox/new", "var/outbox/cur", "var/outbox/tmp"):
        assert stat.S_IMODE((tmp_path / made).stat().st_mode) == 0o700, made


async def test_messages_with_the_same_date_are_ordered_by_message_id(tmp_path: Path) -> None:
    outbox = transport.MaildirTransport(tmp_path)
    for n in (3, 1, 2):
        await outbox.send("ana@example.com", ["jo@example.org"], built(n, minutes=0))

    assert [str(m["Message-ID"]) for m in transport.read_all(tmp_path)] == [
        f"<m00{n}@mail.example.com>" for n in (1, 2, 3)
    ]


async def test_a_maildir_that_cannot_be_created_is_a_failed_send_not_an_exception(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("a file where the outbox's parent directory should be")
    outbox = transport.MaildirTransport(tmp_path / "var" / "outbox")

    result = await outbox.send("ana@example.com", ["jo0@customer.example.org"], built(0))

    assert not result.ok
    assert not result.permanent  # the operator can fix the directory, and the message can then be sent
    assert "Not a directory" in result.detail
    assert str(tmp_path / "var" / "outbox") in result.detail


async def test_an_envelope_that_would_add_lines_is_a_permanent_failure(tmp_path: Path) -> None:
    outbox = transport.MaildirTransport(tmp_path)

    for sender, recipients in [("ana@example.com\nX-Evil: 1", ["jo@example.org"]), ("ana@example.com", [])]:
        result = await outbox.send(sender, recipients, built(0))
        assert (result.ok, result.permanent) == (False, True)
        assert "envelope" in result.detail

    assert list(tmp_path.iterdir()) == []  # not even the Maildir was created


async def test_fifty_concurrent_sends_each_land_exactly_once(tmp_path: Path) -> None:
    outbox = transport.MaildirTransport(tmp_path / "outbox")  # created by whichever send comes first

    results = await asyncio.gather(
        *(outbox.send("ana@example.com", [f"jo{n}@customer.example.org"], built(n)) for n in range(50))
    )

    assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
    assert len({r.detail for r in results}) == 50
    messages = transport.read_all(tmp_path / "outbox")
    assert sorted(str(m["Message-ID"]) for m in messages) == sorted(f"<m{n:03d}@mail.example.com>" for n in range(50))


def test_read_all_reads_new_and_cur_and_a_missing_maildir_is_an_error(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "box", create=True)
    seen = mailbox.MaildirMessage(built(1))
    seen.set_subdir("cur")
    box.add(seen)
    box.add(built(0))

    assert [str(m["Subject"]) for m in transport.read_all(tmp_path / "box")] == ["Hello 0", "Hello 1"]
    with pytest.raises(mailbox.NoSuchMailboxError):
        transport.read_all(tmp_path / "nowhere")


def test_the_default_outbox_is_var_outbox_and_the_maildir_transport_is_a_transport() -> None:
    outbox = transport.MaildirTransport()
    as_protocol: transport.Transport = outbox  # mypy checks that the signatures match

    assert outbox.path == "var/outbox"
    assert as_protocol is outbox
