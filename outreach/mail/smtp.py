"""The SMTP transport: a pool of connections to one relay, with STARTTLS or implicit TLS, AUTH and a send rate.

`send` gives one message to the relay and says how it went, as a SendResult:

- 2xx: taken (`ok`); the relay's reply is the detail.
- 4xx, a dropped connection, a timeout or a refused connection: not taken, worth trying again
  (`permanent` False). 421 also closes the connection, as the server does.
- 5xx: refused for good (`permanent`), e.g. "550 5.1.1 <kim@example.org>: Recipient address rejected".
- A failed login (535) is a temporary failure: a rotated password must not fail every queued message for good.

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
    ) -> None:
        self.server = server
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
            return await self._transaction(conn, sender, list(recipients), message)

    async def _transaction(
        self, conn: aiosmtplib.SMTP, sender: str, recipients: list[str], message: bytes
    ) -> mail_transport.SendResult:
        try:
            refused, reply = await conn.sendmail(sender, recipients, message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(_reply(r) for r in exc.recipients)
            await self._reuse_after_refusal(conn, codes)
            return mail_transport.SendResult(False, permanent=all(500 <= c < 600 for c in codes), detail=detail,
                                             code=max(codes, default=None))  # fmt: skip
        except (TimeoutError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            conn.close()
            return mail_transport.SendResult(False, detail=f"{self.where}: {_error(exc)}")
        except aiosmtplib.SMTPResponseException as exc:  # sender refused, DATA refused, ...
            await self._reuse_after_refusal(conn, [exc.code])
            return mail_transport.SendResult(False, permanent=500 <= exc.code < 600, detail=_reply(exc), code=exc.code)
        except aiosmtplib.SMTPException as exc:
            conn.close()
            return mail_transport.SendResult(False, detail=f"{self.where}: {_error(exc)}")
        self._idle.append((conn, self._clock()))
        if refused:  # some of several recipients refused: the others have it
            detail = "; ".join(f"{addr}: {_reply(r)}" for addr, r in refused.items())
            return mail_transport.SendResult(True, detail=f"250 {' '.join(reply.split())} (refused: {detail})", code=250)
        return mail_transport.SendResult(True, detail=f"250 {' '.join(reply.split())}", code=250)  # the text as sent

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
