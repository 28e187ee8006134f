"""The SMTP transport against real aiosmtpd servers: replies become results, connections are pooled and reused."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest

from outreach.mail import message as mail_message
from outreach.mail import smtp
from outreach.rules import model, timing
from tests import mailservers
from tests.mailservers import SmtpServers, SmtpSinks

pytestmark = pytest.mark.integration

SENDER = "anna@example.com"
DATE = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


def relay(port: int, **changes: object) -> model.Server:
    values: dict[str, object] = {"name": "relay", "host": "127.0.0.1", "port": port,
                                 "security": model.Security.NONE, "timeout": timing.Duration(seconds=10)}  # fmt: skip
    values.update(changes)
    return model.Server(**values)  # type: ignore[arg-type]


def built(to: str, n: int = 1) -> bytes:
    return mail_message.build(
        sender=("Anna Berger", SENDER), to=to, subject=f"Hello {n}", text=f"Message {n}.\n", html=None,
        message_id=f"<m{n}@example.com>", date=DATE,
    )  # fmt: skip


async def test_an_accepted_message_arrives_byte_for_byte_and_the_reply_is_the_detail(
    smtp_server: SmtpServers,
) -> None:
    server = smtp_server()
    transport = smtp.SmtpTransport(relay(server.port))
    data = built("kim@example.org")

    result = await transport.send(SENDER, ["kim@example.org"], data)
    await transport.close()

    assert result.ok and result.detail.startswith("250")
    [received] = server.messages
    assert (received.mail_from, received.rcpt_tos) == (SENDER, ("kim@example.org",))
    assert received.data == data


async def test_one_connection_carries_message_after_message(smtp_server: SmtpServers) -> None:
    server = smtp_server()
    transport = smtp.SmtpTransport(relay(server.port))

    results = [await transport.send(SENDER, [f"p{n}@example.org"], built(f"p{n}@example.org", n)) for n in range(5)]
    await transport.close()

    assert all(r.ok for r in results)
    assert len(server.messages) == 5 and server.connections == 1 and transport.opened == 1


async def test_concurrent_sends_use_at_most_pool_size_connections(smtp_server: SmtpServers) -> None:
    server = smtp_server()
    transport = smtp.SmtpTransport(relay(server.port, pool_size=3))

    results = await asyncio.gather(*(transport.send(SENDER, [f"p{n}@example.org"], built(f"p{n}@example.org", n))
                                     for n in range(30)))  # fmt: skip
    await transport.close()

    assert all(r.ok for r in results) and len(server.messages) == 30
    assert 1 < server.connections <= 3


async def test_451_defers_and_the_retry_is_accepted(smtp_server: SmtpServers) -> None:
    server = smtp_server(data=mailservers.temporary("451 4.3.0 Try again later"))
    transport = smtp.SmtpTransport(relay(server.port))

    first = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    second = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    await transport.close()

    assert (first.ok, first.permanent) == (False, False)
    assert first.detail == "451 4.3.0 Try again later"
    assert second.ok and len(server.messages) == 1
    assert server.connections == 1  # the connection survives a refused transaction (RSET)


async def test_421_closes_the_connection_and_the_next_message_opens_a_new_one(smtp_server: SmtpServers) -> None:
    server = smtp_server(data=mailservers.temporary("421 4.7.0 Too busy, closing", times=1))
    transport = smtp.SmtpTransport(relay(server.port))

    first = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    second = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    await transport.close()

    assert not first.ok and not first.permanent and first.detail.startswith("421")
    assert second.ok and server.connections == 2 and len(server.messages) == 1


async def test_550_for_a_recipient_is_permanent_with_the_servers_words(smtp_server: SmtpServers) -> None:
    server = smtp_server(rcpt={"nobody@example.org": "550 5.1.1 <nobody@example.org>: Recipient address rejected"})
    transport = smtp.SmtpTransport(relay(server.port))

    refused = await transport.send(SENDER, ["nobody@example.org"], built("nobody@example.org"))
    accepted = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    await transport.close()

    assert (refused.ok, refused.permanent) == (False, True)
    assert refused.detail == "550 5.1.1 <nobody@example.org>: Recipient address rejected"
    assert accepted.ok and [m.rcpt_tos for m in server.messages] == [("kim@example.org",)]


@pytest.mark.parametrize("reply", ["552 5.3.4 Message too big", "554 5.7.1 Spam detected"])
async def test_a_5xx_after_data_is_permanent(smtp_server: SmtpServers, reply: str) -> None:
    server = smtp_server(data=mailservers.permanent(reply))
    transport = smtp.SmtpTransport(relay(server.port))

    result = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    await transport.close()

    assert (result.ok, result.permanent, result.detail) == (False, True, reply)


async def test_starttls_with_auth_from_the_environment_sends_logged_in(
    smtp_server: SmtpServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server(starttls=True, auth=("anna", "pw-1"))
    monkeypatch.setenv("TEST_SMTP_USER", "anna")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "pw-1")
    transport = smtp.SmtpTransport(
        relay(server.port, security=model.Security.STARTTLS, username_env="TEST_SMTP_USER",
              password_env="TEST_SMTP_PASSWORD"),
        tls_context=server.client_tls_context(),
    )  # fmt: skip

    result = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    await transport.close()

    assert result.ok
    [received] = server.messages
    assert (received.tls, received.login) == (True, "anna")


async def test_a_wrong_password_defers_rather_than_failing_every_message(
    smtp_server: SmtpServers, tmp_path: Path
) -> None:
    server = smtp_server(starttls=True, auth=("anna", "pw-1"))
    secret = tmp_path / "smtp-password"
    secret.write_text("not-the-password\n")
    transport = smtp.SmtpTransport(
        relay(server.port, security=model.Security.STARTTLS, username="anna", password_file=str(secret)),
        tls_context=server.client_tls_context(),
    )

    result = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    await transport.close()

    assert (result.ok, result.permanent) == (False, False)
    assert result.detail.startswith(f"login to 127.0.0.1:{server.port} refused: 535")
    assert server.messages == []


async def test_implicit_tls_sends_on_the_tls_port(smtp_server: SmtpServers) -> None:
    server = smtp_server(implicit_tls=True)
    assert server.tls_port is not None
    transport = smtp.SmtpTransport(relay(server.tls_port, security=model.Security.TLS),
                                   tls_context=server.client_tls_context())  # fmt: skip

    result = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    await transport.close()

    assert result.ok and server.messages[0].tls


async def test_a_server_that_hangs_after_the_message_times_out_and_leaves_it_in_doubt(
    smtp_server: SmtpServers,
) -> None:
    server = smtp_server(data=mailservers.HANG)
    transport = smtp.SmtpTransport(relay(server.port, timeout=timing.Duration(seconds=1)))

    started = time.monotonic()
    result = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))
    took = time.monotonic() - started
    await transport.close()

    assert (result.ok, result.permanent, result.in_doubt) == (False, False, True)  # not retried: never twice
    assert "Timeout" in result.detail
    assert took < 5


async def test_a_relay_that_is_not_listening_is_a_temporary_failure() -> None:
    transport = smtp.SmtpTransport(relay(mailservers.free_port()))

    result = await transport.send(SENDER, ["kim@example.org"], built("kim@example.org"))

    assert (result.ok, result.permanent) == (False, False)
    assert result.detail.startswith("cannot connect to 127.0.0.1:")


async def test_a_connection_the_server_dropped_while_idle_is_replaced(smtp_server: SmtpServers) -> None:
    server = smtp_server()
    clock = [0.0]
    transport = smtp.SmtpTransport(relay(server.port), clock=lambda: clock[0])
    assert (await transport.send(SENDER, ["a@example.org"], built("a@example.org"))).ok

    server.drop_connections()
    clock[0] += smtp.IDLE_CHECK + 1  # idle long enough to be checked before use
    result = await transport.send(SENDER, ["b@example.org"], built("b@example.org", 2))
    await transport.close()

    assert result.ok and transport.opened == 2
    assert [m.rcpt_tos for m in server.messages] == [("a@example.org",), ("b@example.org",)]


async def test_the_relay_rate_spaces_transactions_out(smtp_server: SmtpServers) -> None:
    server = smtp_server()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    transport = smtp.SmtpTransport(relay(server.port, rate=2.0), clock=lambda: 100.0, sleep=sleep)
    for n in range(5):
        assert (await transport.send(SENDER, [f"p{n}@example.org"], built(f"p{n}@example.org", n))).ok
    await transport.close()

    assert waits == [0.5, 1.0, 1.5, 2.0]  # the first goes at once, then one every half second


async def test_postfix_smtp_sink_takes_what_the_transport_sends(smtp_sink: SmtpSinks) -> None:
    sink = smtp_sink()
    transport = smtp.SmtpTransport(relay(sink.port, pool_size=2))

    results = await asyncio.gather(*(transport.send(SENDER, [f"p{n}@example.org"], built(f"p{n}@example.org", n))
                                     for n in range(20)))  # fmt: skip
    await transport.close()

    assert all(r.ok for r in results)
