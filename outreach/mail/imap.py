"""Reading replies and bounces over IMAP: one poller per mailbox of Settings.mailboxes.

A poller logs in (LOGIN over implicit TLS, STARTTLS or plain, as the mailbox's `security` says; secrets through
outreach.mail.credentials), SELECTs the folder and reads every message whose UID is above the last one it handled, in
UID order. Each is classified (outreach.mail.inbound, read in a worker thread: a hostile message must not hold the
event loop; a report tied to our mail by a VERP address or its X-Outreach fields as the store confirms) and handed
to a Recorder (outreach/app/inbox.py), which
records what it means and moves the mailbox's position (`mailbox_state`: UIDVALIDITY and last UID) in the same
transaction: after a crash, a restart or a dropped connection, reading resumes after the last message applied, so
nothing is missed and nothing is read twice. Then it waits for new mail: IDLE when the server's CAPABILITY offers it, re-issued every
25 minutes (RFC 2177 asks for less than 29), else a new look every `poll_every`. Any connection error closes the
connection and tries again after an exponential backoff (1 s doubling to 5 minutes, with jitter).

It never changes the mailbox: messages are fetched with BODY.PEEK[] (no \\Seen), no flag is stored, nothing is
expunged, moved or deleted. SELECT rather than EXAMINE only because some servers refuse IDLE on a read-only
mailbox; nothing it sends could write.

Choices:

- A message that cannot be read or classified is logged and skipped: its UID is passed like any other's. Only
  the store failing stops the reading (the message is read again after the backoff), since its effects would be
  lost otherwise.
- Of each message the first MiB is fetched (BODY.PEEK[]<0.1048576>): headers and a bounce report come first, and
  a 30 MB attachment need not be held in memory. The classifier reads a cut message as it reads any other.
- A changed UIDVALIDITY (a migrated or rebuilt mailbox: every UID now means another message) is resynchronised
  without reading old mail as new. The mail whose INTERNALDATE is before the last time the mailbox was read to
  its end (less an hour for the server's clock) is taken as read; the rest is read again, and a message that
  left an event of this mailbox already (same Message-ID) is skipped, so a reply is never counted twice. Then
  reading goes on after the new UIDNEXT - 1. Taking up at UIDNEXT - 1 alone would lose what arrived while the
  mailbox was being moved; trusting the dates alone would count twice what arrived in the last hour.
- A mailbox read for the first time is taken up the same way from the time our first message from its users went
  out (nothing older can be about our mail), or at its end when none has yet.
- The position moves with each message that caused something; a run of messages that caused nothing is passed
  with one write at the end of each fetched batch (reading them again after a crash costs a classification).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from typing import Any, Protocol

import aioimaplib

from outreach.mail import credentials, inbound, links
from outreach.mail import verp as verp_module
from outreach.rules import model

log = logging.getLogger("outreach.imap")

DEFAULT_PORTS = {model.Security.TLS: 993, model.Security.STARTTLS: 143, model.Security.NONE: 143}
IDLE_RENEW = 25 * 60.0  # seconds an IDLE lasts before it is re-issued (RFC 2177: under 29 minutes)
FETCH_BATCH = 20  # messages per UID FETCH
MAX_BYTES = 1 << 20  # of each message fetched
RESYNC_MARGIN = dt.timedelta(hours=1)  # how far the server's INTERNALDATE clock may be off ours
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
LOGOUT_TIMEOUT = 2.0  # seconds a LOGOUT may take when the poller stops

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FETCH = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_INTERNALDATE = re.compile(rb'\bINTERNALDATE "([^"]*)"')
_DATE = re.compile(r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\s*$")
_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS$")


class ImapError(Exception):
    """The server refused a command, or the connection broke or timed out."""


class LoginRefused(ImapError):
    """The server refused the user name and password."""


class IdleRefused(ImapError):
    """The server offers IDLE but refused it."""


# --- what the poller reads from Settings ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mailbox:
    """One mailbox to read: its name in Settings.mailboxes, the server, and the addresses of the users whose
    mail arrives there (lower case; empty: the mailbox of no user, and mail from anyone is ours)."""

    name: str
    server: model.Server
    senders: tuple[str, ...] = ()


def mailboxes(settings: model.Settings) -> dict[str, Mailbox]:
    """The mailboxes of Settings, each with the addresses of the users whose `mailbox` it is."""
    return {
        name: Mailbox(name, server, tuple(sorted({u.email.lower() for u in settings.users.values()
                                                 if u.mailbox == name})))
        for name, server in settings.mailboxes.items()
    }  # fmt: skip


# --- the pure part: reading server responses, deciding where to start -----------------------------------------


@dataclasses.dataclass(frozen=True)
class Selected:
    """What SELECT said about the folder."""

    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclasses.dataclass(frozen=True)
class Fetched:
    """One message of a UID FETCH: its UID, INTERNALDATE and bytes (b"" when only the date was asked for)."""

    uid: int
    internaldate: dt.datetime | None
    data: bytes


def parse_select(lines: Sequence[Any]) -> Selected:
    """UIDVALIDITY, UIDNEXT and EXISTS from a SELECT response; ImapError without a UIDVALIDITY."""
    codes: dict[bytes, int] = {}
    exists = 0
    for line in lines:
        if not isinstance(line, bytes):
            continue
        for name, value in _CODE.findall(line):
            codes[name] = int(value)
        if match := _EXISTS.match(line.strip()):
            exists = int(match.group(1))
    if b"UIDVALIDITY" not in codes:
        raise ImapError("SELECT gave no UIDVALIDITY: UIDs cannot be trusted across sessions")
    return Selected(codes[b"UIDVALIDITY"], codes.get(b"UIDNEXT"), exists)


def parse_search(lines: Sequence[Any]) -> list[int]:
    """The numbers of a SEARCH response (its last line is the completion text)."""
    found: list[int] = []
    for line in lines[:-1]:
        if isinstance(line, bytes):
            found += [int(word) for word in line.split() if word.isdigit()]
    return sorted(set(found))


def parse_fetch(lines: Sequence[Any]) -> list[Fetched]:
    """The messages of a UID FETCH response in UID order. A FETCH without a UID (an unsolicited flag change) is
    left out."""
    items: list[tuple[bytes, bytes]] = []
    meta: bytes | None = None
    data = b""
    for line in lines[:-1]:  # the last line is the completion text
        if isinstance(line, bytearray):  # a literal: the message
            data = bytes(line)
        elif _FETCH.match(line):
            if meta is not None:
                items.append((meta, data))
            meta, data = line, b""
        elif meta is not None:
            meta += b" " + line  # what follows a literal, e.g. " UID 7)"
    if meta is not None:
        items.append((meta, data))
    out: list[Fetched] = []
    for meta, data in items:
        uid = _UID.search(meta)
        if uid is None:
            continue
        date = _INTERNALDATE.search(meta)
        out.append(Fetched(int(uid.group(1)), parse_internaldate(date.group(1).decode()) if date else None, data))
    return sorted(out, key=lambda f: f.uid)


def parse_internaldate(text: str) -> dt.datetime | None:
    """`23-Nov-2026 09:05:00 +0100` as an aware datetime; None when it does not parse."""
    match = _DATE.match(text)
    if match is None or match.group(2).title() not in _MONTHS:
        return None
    day, month, year, hour, minute, second, sign, off_h, off_m = match.groups()
    offset = dt.timedelta(hours=int(off_h), minutes=int(off_m)) * (1 if sign == "+" else -1)
    try:
        return dt.datetime(int(year), _MONTHS.index(month.title()) + 1, int(day), int(hour), int(minute),
                           int(second), tzinfo=dt.timezone(offset))  # fmt: skip
    except ValueError:
        return None


def search_date(at: dt.datetime) -> str:
    """The IMAP date (SEARCH SINCE) of the day before `at`: SINCE compares dates in the server's zone."""
    day = (at - dt.timedelta(days=1)).date()
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


class Position(Protocol):
    """How far a mailbox has been read: its UIDVALIDITY and the last UID handled (None: never read), and when it
    was last known to be read up to there."""

    @property
    def uidvalidity(self) -> int | None: ...

    @property
    def last_uid(self) -> int | None: ...

    @property
    def updated_at(self) -> dt.datetime: ...


def resync_since(position: Position | None, first_sent: dt.datetime | None) -> dt.datetime | None:
    """From when a mailbox must be read again when its position is unknown or its UIDVALIDITY changed: from the
    last time it was read to its end (less RESYNC_MARGIN), or for a first look from when our first message went
    out (None: read nothing, start at the end)."""
    if position is not None and position.uidvalidity is not None:
        return position.updated_at - RESYNC_MARGIN
    return first_sent


def backoff(failures: int, rng: random.Random) -> float:
    """Seconds to wait after `failures` failures in a row: 1 s doubling up to 5 minutes, the second half random."""
    ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** max(0, failures - 1))
    return ceiling / 2 + rng.random() * ceiling / 2


def batches(uids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(uids), size):
        yield list(uids[start : start + size])


def uid_set(uids: Collection[int]) -> str:
    """`3:5,9` for [3, 4, 5, 9]."""
    ranges: list[str] = []
    ordered = sorted(uids)
    start = prev = ordered[0]
    for uid in [*ordered[1:], 0]:
        if uid == prev + 1:
            prev = uid
            continue
        ranges.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = uid
    return ",".join(ranges)


# --- the connection --------------------------------------------------------------------------------------------


class Session:
    """One logged-in IMAP connection (aioimaplib). Every call fails with ImapError as soon as the connection is
    lost, rather than when a timeout fires."""

    def __init__(self, client: aioimaplib.IMAP4, lost: asyncio.Future[None], where: str, timeout: float) -> None:
        self.client = client
        self._lost = lost
        self.where = where
        self.timeout = timeout

    @classmethod
    async def open(
        cls,
        server: model.Server,
        username: str,
        password: str,
        *,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> Session:
        """Connect, upgrade to TLS as `security` says, and LOGIN. Raises ImapError (LoginRefused) or OSError."""
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()

        def on_lost(_exc: Exception | None) -> None:
            if not lost.done():
                lost.set_result(None)

        port = server.port or DEFAULT_PORTS[server.security]
        context = None
        if server.security is not model.Security.NONE:
            context = tls_context or ssl.create_default_context()
        # IMAP4 with an ssl_context is what IMAP4_SSL builds; this way the lost connection is reported to us.
        client = aioimaplib.IMAP4(
            server.host, port, timeout=timeout, conn_lost_cb=on_lost,
            ssl_context=context if server.security is model.Security.TLS else None,
        )  # fmt: skip
        session = cls(client, lost, f"{server.host}:{port}", timeout)
        try:
            await session._call(client.wait_hello_from_server())
            if server.security is model.Security.STARTTLS:
                assert context is not None
                await session._starttls(context, server.host)
            response = await session._call(client.login(username, password))
            if response.result != "OK":
                raise LoginRefused(f"{session.where} refused the login of {username}: {_text(response)}")
        except BaseException:
            session.abort()
            raise
        return session

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        """Await a client call; ImapError when the connection is lost first or the call times out."""
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({task, self._lost}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        if task not in done:
            task.cancel()
            raise ImapError(f"the connection to {self.where} was closed")
        try:
            return task.result()
        except (TimeoutError, aioimaplib.AioImapException) as exc:
            raise ImapError(f"{self.where}: {type(exc).__name__} {exc}".strip()) from None

    async def _starttls(self, context: ssl.SSLContext, host: str) -> None:
        protocol = self.client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError(f"{self.where} does not offer STARTTLS (security: starttls)")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await self._call(asyncio.wait_for(protocol.execute(command), self.timeout))
        if response.result != "OK":
            raise ImapError(f"{self.where} refused STARTTLS: {_text(response)}")
        loop = asyncio.get_running_loop()
        transport = await self._call(
            asyncio.wait_for(loop.start_tls(protocol.transport, protocol, context, server_hostname=host), self.timeout)
        )
        protocol.transport = transport
        await self._call(asyncio.wait_for(protocol.capability(), self.timeout))  # RFC 3501: ask again after TLS

    @property
    def has_idle(self) -> bool:
        return bool(self.client.has_capability("IDLE"))

    def _ok(self, response: Any, what: str) -> Any:
        if response.result != "OK":
            raise ImapError(f"{self.where}: {what} failed: {response.result} {_text(response)}")
        return response

    async def select(self, folder: str) -> Selected:
        response = self._ok(await self._call(self.client.select(_quoted(folder))), f"SELECT {folder}")
        return parse_select(response.lines)

    async def search(self, *criteria: str) -> list[int]:
        """UID SEARCH: the UIDs of the messages that match."""
        response = await self._call(self.client.uid_search(*criteria, charset=None))
        return parse_search(self._ok(response, "UID SEARCH").lines)

    async def fetch(self, uids: Collection[int], items: str) -> list[Fetched]:
        response = await self._call(self.client.uid("fetch", uid_set(uids), items))
        return parse_fetch(self._ok(response, "UID FETCH").lines)

    async def idle(self, seconds: float, idling: asyncio.Event | None = None) -> None:
        """IDLE until the server reports a change or `seconds` pass (then DONE, so it can be issued again).

        A status the server sends to keep the connection alive (Dovecot's "OK Still here") does not end it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def start() -> asyncio.Future[Any]:
            try:
                future: asyncio.Future[Any] = await self.client.idle_start(timeout=seconds)
            except aioimaplib.Abort as exc:
                raise IdleRefused(f"{self.where} refused IDLE: {exc}") from None
            return future

        idle = await self._call(start())
        if idling is not None:
            idling.set()

        async def push() -> list[bytes] | None:
            try:  # the renewal timer ends the wait at `seconds`; the timeout is a backstop
                lines: list[bytes] = await self.client.wait_server_push(timeout=deadline - loop.time() + self.timeout)
            except TimeoutError:
                return None
            return lines

        try:
            while (lines := await self._call(push())) is not None:
                if not all(line.startswith(b"OK ") for line in lines):
                    break  # news (EXISTS, EXPUNGE, BYE...) or the renewal
        except BaseException:
            idle.cancel()
            raise
        finally:
            if idling is not None:
                idling.clear()
        self.client.idle_done()
        self._ok(await self._call(asyncio.wait_for(idle, self.timeout)), "IDLE")

    async def close(self) -> None:
        """LOGOUT (briefly), then close the connection whatever the server does."""
        if not self._lost.done():
            with contextlib.suppress(Exception):
                if self.client.has_pending_idle():
                    self.client.idle_done()
                await asyncio.wait_for(self._call(self.client.logout()), LOGOUT_TIMEOUT)
        self.abort()

    def abort(self) -> None:
        transport = getattr(self.client.protocol, "transport", None)
        if transport is not None:
            transport.close()
        task = getattr(self.client, "_client_task", None)
        if task is not None and not task.done():
            task.cancel()


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(response: Any) -> str:
    last = response.lines[-1] if response.lines else b""
    text = last.decode("utf-8", "replace") if isinstance(last, bytes | bytearray) else str(last)
    return " ".join(text.split())[:300]


# --- checking a mailbox (outreach doctor --connect) ------------------------------------------------------------

CHECK_TIMEOUT = 10.0  # seconds a check may take when the mailbox's own timeout is 0


class CheckFailed(Exception):
    """Why a mailbox cannot be read, in words for the operator (never a password)."""


def where(server: model.Server) -> str:
    """`host:port` of a mailbox (the port `security` implies when none is set)."""
    return f"{server.host}:{server.port or DEFAULT_PORTS[server.security]}"


def login_of(mailbox: Mailbox) -> tuple[str, str]:
    """The user name and password of the mailbox's LOGIN; credentials.MissingSecret when either is missing."""
    server = mailbox.server
    username = credentials.read(
        f"the IMAP user name of mailbox {mailbox.name}",
        env=server.username_env, file=server.username_file, literal=server.username,
    )  # fmt: skip
    password = credentials.read(
        f"the IMAP password of mailbox {mailbox.name}", env=server.password_env, file=server.password_file
    )
    if username is None or password is None:
        raise credentials.MissingSecret(f"mailbox {mailbox.name}: LOGIN needs a user name and a password")
    return username, password


async def check(mailbox: Mailbox, *, tls_context: ssl.SSLContext | None = None, timeout: float | None = None) -> str:
    """Log in as the poller does, SELECT the folder and log out, reading nothing: what was found, e.g. `logged in
    as rep@example.com, INBOX holds 3 message(s)`. CheckFailed says why not: a missing secret, a refused
    connection, no answer within `timeout` seconds (default: the mailbox's own), TLS, a refused login, a missing
    folder."""
    server = mailbox.server
    limit = timeout if timeout is not None else float(server.timeout.seconds or CHECK_TIMEOUT)
    try:
        username, password = login_of(mailbox)
    except credentials.MissingSecret as exc:
        raise CheckFailed(f"not checked: {exc}") from None
    session: Session | None = None
    folder = _quoted(server.folder)
    try:
        async with asyncio.timeout(limit):
            # the session's own timeouts are longer, so that a slow server is reported as the timeout it is
            session = await Session.open(server, username, password, tls_context=tls_context, timeout=limit + 1)
            selected = await session._call(session.client.select(folder))
            # a refused SELECT rarely says why (Dovecot: "NO Mailbox doesn't exist"); LIST tells a missing folder
            listed = None if selected.result == "OK" else await session._call(session.client.list('""', folder))
    except BaseException as exc:
        if session is not None:
            session.abort()
        if not isinstance(exc, Exception):  # cancelled
            raise
        raise CheckFailed(_failure(exc, where(server), limit)) from None
    try:
        if listed is not None:
            missing = listed.result == "OK" and not any(line.strip() for line in listed.lines[:-1])
            raise CheckFailed(f"logged in as {username}, but the folder {server.folder} "
                              f"{'is missing' if missing else 'cannot be selected'}: {_text(selected)}")  # fmt: skip
        exists = parse_select(selected.lines).exists
    except ImapError as exc:  # no UIDVALIDITY: the poller could not trust a UID
        raise CheckFailed(str(exc)) from None
    finally:
        await session.close()
    return f"logged in as {username}, {server.folder} holds {exists} message(s)"


def _failure(exc: Exception, at: str, limit: float) -> str:
    """What went wrong connecting or logging in to `at`, for the operator."""
    if isinstance(exc, TimeoutError):  # before OSError, which it is
        return f"no answer within {limit:g} s (timeout)"
    if isinstance(exc, LoginRefused):
        return "authentication failed: " + str(exc).replace(f"{at} ", "the server ", 1)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, OSError):
        return f"cannot connect: {exc.strerror or exc}"
    if isinstance(exc, ImapError):
        return str(exc).removeprefix(f"{at}: ").replace(at, "the server")
    return f"{type(exc).__name__}: {exc}"


# --- the poller ------------------------------------------------------------------------------------------------


class Applied(Protocol):
    """What one message did, as the poller logs it."""

    @property
    def kind(self) -> str: ...

    @property
    def records(self) -> tuple[str, ...]: ...

    @property
    def stopped(self) -> int: ...

    @property
    def blocked(self) -> int: ...

    @property
    def bounced(self) -> tuple[int, ...]: ...

    @property
    def suppressed(self) -> tuple[str, ...]: ...


class InboxStore(Protocol):
    """What the poller needs of the store: where each mailbox was read up to, and what we sent (the classifier's
    questions). outreach.store.Store has it."""

    async def mailbox_position(self, mailbox: str) -> Position | None: ...

    async def set_mailbox_position(self, mailbox: str, uidvalidity: int, last_uid: int, now: dt.datetime) -> bool: ...

    async def advance_mailbox(self, mailbox: str, uidvalidity: int, uid: int, now: dt.datetime) -> bool: ...

    async def mailbox_checked(self, mailbox: str, uidvalidity: int, now: dt.datetime) -> None: ...

    async def our_message_ids(self, message_ids: Collection[str]) -> set[str]: ...

    async def message_ids_of_step(self, enrollment_id: int, step_id: str, recipients: Collection[str]) -> set[str]: ...

    async def sent_subjects_to(self, address: str, senders: Collection[str]) -> list[str]: ...

    async def first_sent_at(self, senders: Collection[str]) -> dt.datetime | None: ...


class Recorder(Protocol):
    """Where a classified message goes: what it means is recorded, and the mailbox's position moves past it, in one
    transaction (outreach.app.inbox.InboundMail has it)."""

    async def apply_inbound(
        self,
        mailbox: str,
        uidvalidity: int,
        uid: int,
        message: inbound.Inbound,
        *,
        senders: Collection[str],
        now: dt.datetime,
        resync_since: dt.datetime | None = None,
    ) -> Applied | None: ...


@dataclasses.dataclass
class PollReport:
    """What one look at a mailbox found: messages by kind, those skipped as unreadable, and whether it was
    (re)synchronised."""

    read: int = 0
    kinds: dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: int = 0
    resynced: bool = False

    def __str__(self) -> str:
        if not self.read:
            return "no new mail"
        parts = [f"{n} {kind.replace('_', '-')}" for kind, n in sorted(self.kinds.items())]
        if self.skipped:
            parts.append(f"{self.skipped} unreadable")
        return f"{self.read} new: " + ", ".join(parts)


class Poller:
    """Reads one mailbox: `poll_once()` for one look, `run()` until cancelled (IDLE or polling, reconnecting).

    Secrets are read when it is built (credentials.MissingSecret if one is absent). `clock` gives the time of what
    it records; `sleep` waits between polls and before reconnecting (tests give their own).
    """

    def __init__(
        self,
        mailbox: Mailbox,
        store: InboxStore,
        recorder: Recorder,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        tls_context: ssl.SSLContext | None = None,
        idle: bool = True,
        idle_renew: float = IDLE_RENEW,
        batch: int = FETCH_BATCH,
        verp: verp_module.Verp | None = None,
    ) -> None:
        username, password = login_of(mailbox)
        self.verp = verp  # Settings.bounce_address: a report delivered to a VERP address names its message
        self.mailbox = mailbox
        self.log = logging.LoggerAdapter(log, {"mailbox": mailbox.name})  # JSON log lines name the mailbox
        self.username = username
        self._password = password
        self.store = store
        self.recorder = recorder
        self.clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.tls_context = tls_context
        self.use_idle = idle
        self.idle_renew = idle_renew
        self.batch = max(1, batch)
        self.idling = asyncio.Event()  # set while an IDLE is under way (for tests and status)
        self.idles = 0  # IDLE commands issued so far
        self.connections = 0  # connections opened so far
        self.failures = 0  # failures in a row

    @property
    def name(self) -> str:
        return self.mailbox.name

    @property
    def key(self) -> str:
        """Where the store keeps this mailbox's position: `anna/INBOX`. Another folder is another mailbox."""
        return f"{self.mailbox.name}/{self.mailbox.server.folder}"

    @property
    def identity(self) -> tuple[Mailbox, str, str, verp_module.Verp | None]:
        """What a poller is built from: another one is needed when any of it changes (at SIGHUP)."""
        return self.mailbox, self.username, self._password, self.verp

    async def open(self) -> Session:
        server = self.mailbox.server
        session = await Session.open(
            server, self.username, self._password, tls_context=self.tls_context, timeout=server.timeout.seconds or 30.0
        )
        self.connections += 1
        return session

    async def poll_once(self) -> PollReport:
        """Connect, read what is new, log out. Raises on connection and store errors."""
        session = await self.open()
        try:
            return await self.sync(session)
        finally:
            await session.close()

    async def run(self) -> None:
        """Read the mailbox until cancelled: IDLE or poll, and reconnect with backoff after any failure."""
        while True:
            session: Session | None = None
            delay = 0.0
            try:
                session = await self.open()
                self.log.info("mailbox %s: connected to %s as %s", self.name, session.where, self.username)
                while True:
                    report = await self.sync(session)
                    self.failures = 0
                    if report.read:
                        self.log.info("mailbox %s: %s", self.name, report)
                    await self.wait(session)
            except asyncio.CancelledError:
                raise
            except (ImapError, OSError) as exc:
                self.failures += 1
                delay = backoff(self.failures, self._rng)
                self.log.warning("mailbox %s: %s; trying again in %.0f s", self.name, _describe(exc), delay)
            except Exception:  # the store, or a bug: logged, and the mailbox is read again after the backoff
                self.failures += 1
                delay = backoff(self.failures, self._rng)
                self.log.exception("mailbox %s: reading failed; trying again in %.0f s", self.name, delay)
            finally:
                if session is not None:
                    await asyncio.shield(session.close())
            await self._sleep(delay)

    async def wait(self, session: Session) -> None:
        """Until there may be new mail: an IDLE (ended by the server's news or the renewal), or `poll_every`."""
        if self.use_idle and session.has_idle:
            self.idles += 1
            try:
                await session.idle(self.idle_renew, self.idling)
                return
            except IdleRefused as exc:
                self.log.warning(
                    "mailbox %s: %s; polling every %s instead", self.name, exc, self.mailbox.server.poll_every
                )
                self.use_idle = False
        await self._sleep(self.mailbox.server.poll_every.seconds or 60)

    # --- reading -------------------------------------------------------------------------------------------

    async def sync(self, session: Session) -> PollReport:
        """Read every message after the position, in UID order, each applied with the position in one transaction."""
        report = PollReport()
        folder = self.mailbox.server.folder
        selected = await session.select(folder)
        position = await self.store.mailbox_position(self.key)
        if position is None or position.uidvalidity != selected.uidvalidity or position.last_uid is None:
            await self._resync(session, selected, position, report)
            position = await self.store.mailbox_position(self.key)
            assert position is not None and position.last_uid is not None
        after = position.last_uid
        while True:
            uids = [u for u in await session.search("UID", f"{after + 1}:*") if u > after]
            if not uids:
                break
            for chunk in batches(uids, self.batch):
                await self._read(session, selected.uidvalidity, chunk, report)
                await self.store.advance_mailbox(self.key, selected.uidvalidity, chunk[-1], self.clock())
                after = chunk[-1]
        await self.store.mailbox_checked(self.key, selected.uidvalidity, self.clock())
        return report

    async def _resync(
        self,
        session: Session,
        selected: Selected,
        position: Position | None,
        report: PollReport,
    ) -> None:
        since = resync_since(position, await self.store.first_sent_at(self.mailbox.senders))
        if selected.uidnext is not None:
            top = selected.uidnext - 1
        else:
            top = max(await session.search("ALL"), default=0)
        if position is not None and position.uidvalidity is not None:
            self.log.warning(
                "mailbox %s: UIDVALIDITY changed from %s to %s (a moved or rebuilt mailbox): reading again what "
                "arrived since %s, skipping what was handled", self.name, position.uidvalidity,
                selected.uidvalidity, since,
            )  # fmt: skip
        else:
            self.log.info("mailbox %s: read for the first time, from %s", self.name, since or "its end")
        if since is not None and top:
            found = [u for u in await session.search("SINCE", search_date(since)) if u <= top]
            recent: list[int] = []
            for chunk in batches(found, 500):
                for f in await session.fetch(chunk, "(UID INTERNALDATE)"):
                    if f.internaldate is None or f.internaldate >= since:
                        recent.append(f.uid)
            for chunk in batches(sorted(recent), self.batch):
                await self._read(session, selected.uidvalidity, chunk, report, resync_since=since)
        await self.store.set_mailbox_position(self.key, selected.uidvalidity, top, self.clock())
        report.resynced = True

    async def _read(
        self,
        session: Session,
        uidvalidity: int,
        uids: list[int],
        report: PollReport,
        *,
        resync_since: dt.datetime | None = None,
    ) -> None:
        for fetched in await session.fetch(uids, f"(UID INTERNALDATE BODY.PEEK[]<0.{MAX_BYTES}>)"):
            report.read += 1
            message = await self._classify(fetched)
            if message is None:
                report.skipped += 1
                continue
            report.kinds[str(message.kind)] = report.kinds.get(str(message.kind), 0) + 1
            if message.kind is inbound.Kind.OTHER:
                self.log.debug("mailbox %s: UID %d other mail: %s", self.name, fetched.uid, message.reason)
                continue  # passed with the batch's one write
            applied = await self.recorder.apply_inbound(
                self.key, uidvalidity, fetched.uid, message, senders=self.mailbox.senders, now=self.clock(),
                resync_since=resync_since,
            )  # fmt: skip
            self._log(fetched.uid, message, applied)

    async def _classify(self, fetched: Fetched) -> inbound.Inbound | None:
        """The message's kind, asking the store what we sent; None (logged) when it cannot be read.

        The reading runs in a worker thread: it is bounded (1 MiB, 100 parts), but a hostile message must not hold
        the event loop (the other mailboxes, the scheduler, the dispatcher) while it is read."""
        try:
            facts = await asyncio.to_thread(inbound.read, fetched.data)
        except Exception:  # the classifier promises not to raise; a bug there must not stall the mailbox
            self.log.exception("mailbox %s: UID %d skipped: the classifier failed", self.name, fetched.uid)
            return None
        if facts.problem is not None:
            self.log.warning("mailbox %s: UID %d skipped: %s", self.name, fetched.uid, facts.problem)
            return None
        ours = await self.store.our_message_ids(facts.candidate_ids)
        tied: dict[str, str] = {}
        if self.verp is not None:  # delivered to a VERP address whose token we signed: it names its message
            for message_id in await self.store.our_message_ids(self.verp.message_ids(facts.envelope_to)):
                tied.setdefault(message_id, "VERP address")
        if facts.outreach_step is not None and facts.report is not None:
            named = [a for b in facts.bounced for a in (b.address, b.final_recipient)] + list(facts.complainants)
            enrollment, step = facts.outreach_step
            for message_id in await self.store.message_ids_of_step(enrollment, step, named):
                tied.setdefault(message_id, "X-Outreach-Enrollment and -Step")
        subjects: dict[str, list[str]] = {}
        if facts.from_address:
            subjects[facts.from_address] = await self.store.sent_subjects_to(facts.from_address, self.mailbox.senders)
        try:
            return inbound.decide(facts, inbound.Sent(frozenset(ours), subjects), tied)
        except Exception:
            self.log.exception("mailbox %s: UID %d skipped: the classifier failed", self.name, fetched.uid)
            return None

    def _log(self, uid: int, message: inbound.Inbound, applied: Applied | None) -> None:
        if applied is None:
            self.log.info("mailbox %s: UID %d was handled already (%s)", self.name, uid, message.kind)
            return
        who = ", ".join(applied.records) or "no record of ours"
        what = {
            "reply": f"stopped {applied.stopped} sequence(s)",
            "auto_reply": "recorded; sequences go on",
            "bounce": f"{len(applied.bounced)} message(s) bounced, {applied.blocked} enrollment(s) blocked, "
            f"suppressed {', '.join(applied.suppressed) or 'nobody new'}",
            "delayed": "a delay warning",
            "complaint": f"stopped {applied.stopped} sequence(s), suppressed {', '.join(applied.suppressed) or 'nobody new'}",
        }.get(str(message.kind), "")
        if applied.kind == "unverified":
            self.log.warning("mailbox %s: UID %d %s from %s (%s): unverified, nothing changed", self.name, uid,
                             message.kind, message.from_address or "?", message.reason)  # fmt: skip
            return
        if what:
            self.log.info("mailbox %s: UID %d %s from %s (%s): %s: %s", self.name, uid, message.kind,
                     message.from_address or "?", message.reason, who, what)  # fmt: skip


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, ImapError) and text else f"{type(exc).__name__}: {text}".rstrip(": ")


# --- the daemon's pollers --------------------------------------------------------------------------------------


class Inbox:
    """The daemon's pollers: one asyncio task per mailbox of Settings.mailboxes, restarted when a reload changes
    a mailbox (or its secrets). A mailbox that cannot be read is logged and tried again; it never stops the rest."""

    def __init__(
        self,
        store: InboxStore,
        recorder: Recorder,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        tls_context: ssl.SSLContext | None = None,
        **options: Any,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.clock = clock
        self.tls_context = tls_context
        self.options = options  # more Poller keywords (tests)
        self.pollers: dict[str, Poller] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def _pollers(self, settings: model.Settings, only: Collection[str] | None = None) -> dict[str, Poller]:
        built: dict[str, Poller] = {}
        bounces = None
        try:
            bounces = verp_module.for_settings(settings)
        except (links.WeakSecret, OSError) as exc:
            log.error("bounces to Settings.bounce_address cannot be verified: %s", exc)
        for name, mailbox in mailboxes(settings).items():
            if only is not None and name not in only:
                continue
            try:
                built[name] = Poller(mailbox, self.store, self.recorder, clock=self.clock,
                                     tls_context=self.tls_context, **{"verp": bounces, **self.options})  # fmt: skip
            except credentials.MissingSecret as exc:
                log.error("mailbox %s is not read: %s", name, exc)
        return built

    async def update(self, settings: model.Settings, only: Collection[str] | None = None) -> None:
        """Run a poller for each mailbox of `settings` (of those in `only`, the mailboxes whose lease this daemon
        holds): new ones start, changed ones restart, removed ones stop. A mailbox whose secret is missing is
        logged; one already running keeps running."""
        wanted = self._pollers(settings, only)
        for name in [n for n in self.tasks if n not in settings.mailboxes or (only is not None and n not in only)]:
            log.info("mailbox %s is no longer read", name)
            await self._stop(name)
        for name, poller in wanted.items():
            running = self.pollers.get(name)
            if running is not None and running.identity == poller.identity and not self.tasks[name].done():
                continue
            if running is not None:
                log.info("mailbox %s changed: reading it anew", name)
                await self._stop(name)
            self.pollers[name] = poller
            self.tasks[name] = asyncio.create_task(poller.run(), name=f"imap {name}")

    async def poll_once(self, settings: model.Settings) -> dict[str, PollReport | None]:
        """One look at every mailbox, side by side (`outreach run --once`); a mailbox that fails is logged and
        has None."""
        pollers = self._pollers(settings)

        async def one(poller: Poller) -> PollReport | None:
            try:
                report = await poller.poll_once()
            except (ImapError, OSError) as exc:
                log.error("mailbox %s was not read: %s", poller.name, _describe(exc))
                return None
            except Exception:  # the store, or a bug: the other mailboxes and the tick go on
                log.exception("mailbox %s was not read", poller.name)
                return None
            log.info("mailbox %s: %s", poller.name, report)
            return report

        results = await asyncio.gather(*(one(p) for p in pollers.values()))
        return dict(zip(pollers, results, strict=True))

    async def _stop(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        self.pollers.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # unlike `await task`, a cancellation of our own caller is not swallowed

    async def close(self) -> None:
        """Stop every poller (each logs out)."""
        for name in list(self.tasks):
            await self._stop(name)
