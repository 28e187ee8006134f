"""The SMTP transport: a pool of connections to one relay, with STARTTLS or implicit TLS, AUTH and a send rate.

`send` gives one message to the relay and says how it went, as a SendResult:

- 2xx: taken (`ok`); the relay's reply is the detail.
- 4xx, a dropped connection, a timeout or a refused connection: not taken, worth trying again
  (`permanent` False). 421 also closes the connection, as the server does.
- 5xx: refused for good (`permanent`), e.g. "550 5.1.1 <kim@example.org>: Recipient address rejected".
- A failed login (535) is a temporary failure: a rotated password must not fail every queued message for good.

The envelope sender (MAIL FROM) is the message's sender, or, with `envelope` (Settings.bounce_address: a VERP address
per message, outreach/mail/verp.py), the address it gives for the message's bytes.

The pool holds up to `pool_size` connections; a connection is reused for the next message (RSET after a refusal)
and checked with NOOP when it has been idle for a while, since relays close idle sessions. `rate` (messages per
second over the whole pool) spaces the transactions out.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence

import aiosmtplib

from outreach.mail import credentials
from outreach.mail import transport as mail_transport
from outreach.rules import model

DEFAULT_PORTS = {model.Security.STARTTLS: 587, model.Security.TLS: 465, model.Security.NONE: 25}
IDLE_CHECK = 10.0  # seconds a pooled connection may sit unused before it is checked with NOOP


class SmtpTransport:
    """Sends over one relay. Secrets are read when it is built (credentials.MissingSecret if one is absent)."""

    def __init__(
        self,
        server: model.Server,
        *,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        envelope: Callable[[bytes], str | None] | None = None,
    ) -> None:
        self.server = server
        self.envelope = envelope  # the envelope sender of a message (VERP); None or a None answer: the sender
        self.host = server.host
        self.port = server.port or DEFAULT_PORTS[server.security]
        self.username = credentials.read(
            "the SMTP user name", env=server.username_env, file=server.username_file, literal=server.username
        )
        self.password = credentials.read("the SMTP password", env=server.password_env, file=server.password_file)
        if (self.username is None) != (self.password is None):
            missing = "password (password_env or password_file)" if self.password is None else "user name"
            raise credentials.MissingSecret(f"SMTP relay {server.host}: AUTH needs a {missing} too")
        self.timeout = server.timeout.seconds or None
        self.tls_context = tls_context
        self.local_hostname = local_hostname
        self._clock = clock
        self._sleep = sleep
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._slots: asyncio.Semaphore | None = None
        self._next_start = 0.0
        self.opened = 0  # connections opened so far
        self.concurrency = max(1, server.pool_size)  # sends at once: the dispatcher keeps this many on the wire

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> mail_transport.SendResult:
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(1, self.server.pool_size))
        async with self._slots:
            await self._pace()
            try:
                conn = await self._connection()
            except aiosmtplib.SMTPAuthenticationError as exc:
                return mail_transport.SendResult(False, detail=f"login to {self.where} refused: {_reply(exc)}",
                                                 code=exc.code)  # fmt: skip
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                return mail_transport.SendResult(False, detail=f"cannot connect to {self.where}: {_error(exc)}")
            mail_from = (self.envelope(message) if self.envelope is not None else None) or sender
            return await self._transaction(conn, mail_from, list(recipients), message)

    async def _transaction(
        self, conn: aiosmtplib.SMTP, sender: str, recipients: list[str], message: bytes
    ) -> mail_transport.SendResult:
        """MAIL, RCPT for each recipient, DATA. Until DATA a lost connection is a temporary failure (the relay has
        nothing); once the message is being handed over, a lost connection or a missing answer leaves it in doubt
        (the relay may have taken it before the answer was lost), never a temporary failure that would send it twice.
        aiosmtplib sends DATA and the message in one call, so a connection lost while waiting for the 354 counts
        as in doubt too: rare, and an operator's requeue, never a second copy."""
        try:
            await conn.mail(sender)
            refused: dict[str, aiosmtplib.SMTPRecipientRefused] = {}
            for rcpt in recipients:
                try:
                    await conn.rcpt(rcpt)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused[rcpt] = exc
            if len(refused) == len(recipients):
                codes = [r.code for r in refused.values()]
                await self._reuse_after_refusal(conn, codes)
                return mail_transport.SendResult(False, permanent=all(500 <= c < 600 for c in codes),
                                                 detail="; ".join(_reply(r) for r in refused.values()),
                                                 code=max(codes, default=None))  # fmt: skip
        except (TimeoutError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            conn.close()
            return mail_transport.SendResult(False, detail=f"{self.where}: {_error(exc)}")
        except aiosmtplib.SMTPResponseException as exc:  # sender refused, ...
            await self._reuse_after_refusal(conn, [exc.code])
            return mail_transport.SendResult(False, permanent=500 <= exc.code < 600, detail=_reply(exc), code=exc.code)
        except aiosmtplib.SMTPException as exc:
            conn.close()
            return mail_transport.SendResult(False, detail=f"{self.where}: {_error(exc)}")
        try:
            reply = await conn.data(message)
        except aiosmtplib.SMTPResponseException as exc:  # DATA refused, or the message refused after the dot
            await self._reuse_after_refusal(conn, [exc.code])
            return mail_transport.SendResult(False, permanent=500 <= exc.code < 600, detail=_reply(exc), code=exc.code)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            conn.close()
            return mail_transport.SendResult(False, in_doubt=True, detail=f"{self.where}: {_error(exc)} while the "
                                             "message was handed over: the relay may have taken it")  # fmt: skip
        self._idle.append((conn, self._clock()))
        text = f"{reply.code} {' '.join(reply.message.split())}"  # the text as sent
        if refused:  # some of several recipients refused: the others have it
            detail = "; ".join(f"{addr}: {_reply(r)}" for addr, r in refused.items())
            return mail_transport.SendResult(True, detail=f"{text} (refused: {detail})", code=reply.code)
        return mail_transport.SendResult(True, detail=text, code=reply.code)

    async def _reuse_after_refusal(self, conn: aiosmtplib.SMTP, codes: list[int]) -> None:
        if 421 in codes or not conn.is_connected:
            conn.close()
            return
        try:
            await conn.rset()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            conn.close()
            return
        self._idle.append((conn, self._clock()))

    async def _connection(self) -> aiosmtplib.SMTP:
        while self._idle:
            conn, since = self._idle.pop()
            if not conn.is_connected:
                continue
            if self._clock() - since < IDLE_CHECK:
                return conn
            try:
                await conn.noop()
                return conn
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                conn.close()
        security = self.server.security
        conn = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=self.timeout, local_hostname=self.local_hostname,
            use_tls=security is model.Security.TLS, start_tls=security is model.Security.STARTTLS,
            tls_context=self.tls_context,
        )  # fmt: skip
        await conn.connect()
        self.opened += 1
        if self.username is not None and self.password is not None:
            try:
                await conn.login(self.username, self.password)
            except aiosmtplib.SMTPException:
                conn.close()
                raise
        return conn

    async def _pace(self) -> None:
        """At most `rate` transactions a second: each waits for its turn."""
        if not self.server.rate:
            return
        now = self._clock()
        start = max(now, self._next_start)
        self._next_start = start + 1 / self.server.rate
        if start > now:
            await self._sleep(start - now)

    async def check(self) -> None:
        """Connect, say EHLO (STARTTLS, log in) and QUIT, sending nothing; raises what the relay or network said."""
        conn = await self._connection()
        await conn.quit()

    async def close(self) -> None:
        """QUIT every pooled connection."""
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            try:
                await conn.quit()
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                conn.close()


def _reply(reply: aiosmtplib.SMTPResponseException | aiosmtplib.SMTPResponse) -> str:
    """`550 5.1.1 <kim@example.org>: Recipient address rejected`, on one line."""
    return f"{reply.code} {' '.join(reply.message.split())}"


def _error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
