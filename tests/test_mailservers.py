"""The test mail servers are real: aiosmtpd, Postfix's smtp-sink and Dovecot answer the project's client libraries."""

from __future__ import annotations

import asyncio
import email.message
import re
import time

import aioimaplib
import aiosmtplib
import pytest

from tests import mailservers
from tests.mailservers import Dovecot, SmtpServers, SmtpSinks

pytestmark = pytest.mark.integration

SENDER = "anna@example.com"
REPLY = b"""\
From: Kim Lee <kim@example.org>\r
To: anna@example.com\r
Subject: Re: Our call\r
Message-ID: <reply-1@example.org>\r
In-Reply-To: <seq-1@outreach.example.com>\r
\r
Thursday works.\r
"""


def _message(to: str, n: int = 1) -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"] = SENDER
    message["To"] = to
    message["Subject"] = f"Hello {n}"
    message["Message-ID"] = f"<m{n}@outreach.example.com>"
    message.set_content(f"Message {n}.\n")
    return message


async def test_an_accepting_server_keeps_the_bytes_aiosmtplib_sent(smtp_server: SmtpServers) -> None:
    server = smtp_server()
    message = _message("kim@example.org")
    await aiosmtplib.send(message, hostname=server.host, port=server.port, timeout=10)
    [received] = server.messages
    assert received.mail_from == SENDER and received.rcpt_tos == ("kim@example.org",)
    assert received.message["Message-ID"] == "<m1@outreach.example.com>"
    assert received.data.replace(b"\r\n", b"\n") == message.as_bytes()
    assert (received.connection, received.tls, received.login) == (1, False, None)


async def test_451_then_250_defers_the_first_attempt_and_accepts_the_retry(smtp_server: SmtpServers) -> None:
    server = smtp_server(data=mailservers.temporary("451 4.3.0 Try again later"))
    message = _message("kim@example.org")
    with pytest.raises(aiosmtplib.SMTPDataError) as first:
        await aiosmtplib.send(message, hostname=server.host, port=server.port, timeout=10)
    assert first.value.code == 451 and server.messages == []
    await aiosmtplib.send(message, hostname=server.host, port=server.port, timeout=10)
    assert len(server.messages) == 1
    assert [a.reply[:3] for a in server.answers if a.command == "DATA"] == ["451", "250"]


async def test_421_closes_the_connection_and_the_next_connection_is_accepted(smtp_server: SmtpServers) -> None:
    server = smtp_server(data=mailservers.temporary("421 4.3.2 Shutting down", times=1))
    client = aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=10)
    await client.connect()
    with pytest.raises(aiosmtplib.SMTPResponseException) as first:
        await client.send_message(_message("kim@example.org"))
    assert first.value.code == 421 and not client.is_connected
    async with aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=10) as again:
        await again.send_message(_message("kim@example.org"))
    assert server.connections == 2 and [m.connection for m in server.messages] == [2]


async def test_a_scripted_recipient_gets_550_and_the_others_still_get_the_message(smtp_server: SmtpServers) -> None:
    server = smtp_server(rcpt={"nobody@example.org": "550 5.1.1 <nobody@example.org>: no such user"})
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await aiosmtplib.send(_message("nobody@example.org"), hostname=server.host, port=server.port, timeout=10)
    assert refused.value.recipients[0].code == 550
    errors, _ = await aiosmtplib.send(
        _message("kim@example.org, nobody@example.org", 2), hostname=server.host, port=server.port, timeout=10
    )
    assert errors["nobody@example.org"].code == 550
    assert [m.rcpt_tos for m in server.messages] == [("kim@example.org",)]


async def test_a_recipient_deferred_at_rcpt_is_accepted_on_the_next_attempt(smtp_server: SmtpServers) -> None:
    server = smtp_server(rcpt={"kim@example.org": mailservers.temporary("450 4.2.1 Mailbox busy", times=2)})
    for code in (450, 450):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await aiosmtplib.send(_message("kim@example.org"), hostname=server.host, port=server.port, timeout=10)
        assert refused.value.recipients[0].code == code
    await aiosmtplib.send(_message("kim@example.org"), hostname=server.host, port=server.port, timeout=10)
    assert len(server.messages) == 1


async def test_dropped_connections_fail_the_client_without_a_reply(smtp_server: SmtpServers) -> None:
    server = smtp_server()
    client = aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=10)
    await client.connect()
    assert server.open_connections == 1
    server.drop_connections()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await client.send_message(_message("kim@example.org"))
    assert server.messages == []


@pytest.mark.parametrize("reply", ["552 5.3.4 Message too big", "554 5.7.1 Rejected as spam"])
async def test_messages_to_a_scripted_recipient_are_refused_after_data(smtp_server: SmtpServers, reply: str) -> None:
    server = smtp_server(data_to={"kim@example.org": reply})
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await aiosmtplib.send(_message("kim@example.org"), hostname=server.host, port=server.port, timeout=10)
    assert refused.value.code == int(reply[:3])
    await aiosmtplib.send(_message("lee@example.org", 2), hostname=server.host, port=server.port, timeout=10)
    assert [m.rcpt_tos for m in server.messages] == [("lee@example.org",)]


async def test_a_hanging_server_lets_the_client_timeout_fire_and_still_stops_promptly(smtp_server: SmtpServers) -> None:
    server = smtp_server(data=mailservers.HANG)
    client = aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=10)
    await client.connect()
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        await client.sendmail(SENDER, ["kim@example.org"], _message("kim@example.org").as_bytes(), timeout=0.3)
    second = aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=10)
    await second.connect()
    send = asyncio.create_task(second.sendmail(SENDER, ["kim@example.org"], b"Subject: x\r\n\r\nx\r\n"))
    while len(server.answers) < 2:  # the second message is hanging at the server
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await asyncio.to_thread(server.stop)
    assert time.monotonic() - started < 2
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await asyncio.wait_for(send, 5)
    assert server.messages == []


async def test_one_connection_carries_many_messages_so_pooling_can_be_counted(smtp_server: SmtpServers) -> None:
    server = smtp_server()
    async with aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=10) as client:
        for n in range(3):
            await client.send_message(_message("kim@example.org", n))
    await aiosmtplib.send(_message("kim@example.org", 3), hostname=server.host, port=server.port, timeout=10)
    assert server.connections == 2
    assert [m.connection for m in server.messages] == [1, 1, 1, 2]


async def test_starttls_and_auth_accept_the_right_password_and_refuse_a_wrong_one(smtp_server: SmtpServers) -> None:
    server = smtp_server(starttls=True, auth=("anna", "pw-1"))
    tls = server.client_tls_context()
    await aiosmtplib.send(
        _message("kim@example.org"), hostname=server.host, port=server.port, start_tls=True, tls_context=tls,
        username="anna", password="pw-1", timeout=10,
    )  # fmt: skip
    [received] = server.messages
    assert received.tls and received.login == "anna"
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await aiosmtplib.send(
            _message("kim@example.org", 2), hostname=server.host, port=server.port, start_tls=True, tls_context=tls,
            username="anna", password="wrong", timeout=10,
        )  # fmt: skip
    with pytest.raises(aiosmtplib.SMTPResponseException):  # no AUTH, no mail
        await aiosmtplib.send(
            _message("kim@example.org", 3), hostname=server.host, port=server.port, start_tls=True, tls_context=tls,
            timeout=10,
        )  # fmt: skip
    assert len(server.messages) == 1


async def test_implicit_tls_listens_on_a_second_port(smtp_server: SmtpServers) -> None:
    server = smtp_server(implicit_tls=True, auth=("anna", "pw-1"))
    assert server.tls_port is not None and server.tls_port != server.port
    await aiosmtplib.send(
        _message("kim@example.org"), hostname=server.host, port=server.tls_port, use_tls=True,
        tls_context=server.client_tls_context(), username="anna", password="pw-1", timeout=10,
    )  # fmt: skip
    [received] = server.messages
    assert received.tls and received.login == "anna"


async def test_smtp_sink_accepts_what_aiosmtplib_sends(smtp_sink: SmtpSinks) -> None:
    sink = smtp_sink()
    errors, response = await aiosmtplib.send(
        _message("kim@example.org"), hostname=sink.host, port=sink.port, timeout=10
    )
    assert errors == {} and response.startswith("2")


async def test_smtp_sink_refuses_commands_it_was_told_to_refuse(smtp_sink: SmtpSinks) -> None:
    sink = smtp_sink(hard=["RCPT"], hard_reply="550 5.1.1 No such user")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await aiosmtplib.send(_message("kim@example.org"), hostname=sink.host, port=sink.port, timeout=10)
    assert refused.value.recipients[0].code == 550


async def test_dovecot_serves_an_appended_message_to_aioimaplib(dovecot: Dovecot) -> None:
    uid = dovecot.append("rep@example.com", "secret", REPLY)
    client = aioimaplib.IMAP4(host=dovecot.host, port=dovecot.port, timeout=10)
    await client.wait_hello_from_server()
    assert client.has_capability("IDLE")
    assert (await client.login("rep@example.com", "secret")).result == "OK"
    selected = await client.select("INBOX")
    assert selected.result == "OK"
    [uidvalidity] = [int(m.group(1)) for line in selected.lines if (m := re.search(rb"UIDVALIDITY (\d+)", line))]
    assert uidvalidity == dovecot.uidvalidity("rep@example.com", "secret")
    fetched = await client.uid("fetch", str(uid), "(BODY.PEEK[])")
    assert fetched.result == "OK"
    assert REPLY in [bytes(line) for line in fetched.lines]
    await client.logout()
    assert dovecot.flags_of("rep@example.com", "secret") == {uid: frozenset()}  # PEEK marked nothing as read


async def test_dovecot_keeps_flags_and_folders_of_appended_mail(dovecot: Dovecot) -> None:
    seen = dovecot.append("rep@example.com", "secret", REPLY, flags=["\\Seen"])
    unseen = dovecot.append("rep@example.com", "secret", REPLY.replace(b"reply-1", b"reply-2"))
    other = dovecot.append("rep@example.com", "secret", REPLY, mailbox="Old Replies")
    assert dovecot.uids("rep@example.com", "secret") == [seen, unseen]
    assert dovecot.flags_of("rep@example.com", "secret") == {seen: frozenset({"\\Seen"}), unseen: frozenset()}
    assert dovecot.uids("rep@example.com", "secret", "Old Replies") == [other]
    assert dovecot.uids("anna@example.com", "secret") == []


async def test_a_changed_uidvalidity_renumbers_the_mailbox_and_keeps_its_mail(dovecot: Dovecot) -> None:
    first = dovecot.append("rep@example.com", "secret", REPLY, flags=["\\Seen"])
    second = dovecot.append("rep@example.com", "secret", REPLY.replace(b"reply-1", b"reply-2"))
    before = dovecot.uidvalidity("rep@example.com", "secret")
    after = dovecot.change_uidvalidity("rep@example.com", "secret")
    assert after != before and dovecot.uidvalidity("rep@example.com", "secret") == after
    uids = dovecot.uids("rep@example.com", "secret")
    assert len(uids) == 2 and min(uids) > second
    assert dovecot.flags_of("rep@example.com", "secret") == {uids[0]: frozenset({"\\Seen"}), uids[1]: frozenset()}
    assert first not in uids


async def test_kick_drops_an_open_aioimaplib_connection(dovecot: Dovecot) -> None:
    lost = asyncio.Event()
    client = aioimaplib.IMAP4(host=dovecot.host, port=dovecot.port, timeout=10, conn_lost_cb=lambda _exc: lost.set())
    await client.wait_hello_from_server()
    await client.login("rep@example.com", "secret")
    await client.select("INBOX")
    assert dovecot.connected_users() == ["rep@example.com"]
    dovecot.kick()
    await asyncio.wait_for(lost.wait(), 10)
    with pytest.raises((aioimaplib.AioImapException, asyncio.TimeoutError)):
        await asyncio.wait_for(client.noop(), 0.5)
    assert dovecot.connected_users() == []
