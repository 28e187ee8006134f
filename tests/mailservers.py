"""Real mail servers for tests, started by fixtures on loopback ports picked at random.

- `smtp_server`: in-process aiosmtpd servers that accept and record, or answer scripted replies
  (451 then 250, 550 for a recipient, 552/554, a hang), with STARTTLS, AUTH and implicit TLS.
- `smtp_sink`: Postfix's smtp-sink, the speed reference, optionally refusing commands.
- `dovecot`: a private Dovecot IMAP server, with helpers that deliver by IMAP APPEND, read flags and
  UIDs, change UIDVALIDITY and drop client connections.

Registered from tests/conftest.py; a fixture whose server is missing skips outside CI and fails in CI.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import email
import email.message
import email.parser
import grp
import hashlib
import imaplib
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiosmtpd import controller as aiosmtpd_controller
from aiosmtpd import smtp as aiosmtpd_smtp

from tests.conftest import need

HOST = "127.0.0.1"
READY_TIMEOUT = 15.0  # seconds a server gets to answer on its port
HANG = "hang"  # a scripted reply that never comes: the client's timeout has to fire
SLOW = "slow "  # "slow 2.0": the reply (250) comes after that many seconds (mail in flight when a daemon stops)
DROP = "drop"  # at DATA: take the message (it counts as received), then cut the connection without answering
_ACCEPT = "250 OK"  # what the hooks answer when no script says otherwise


def pytest_configure(config: pytest.Config) -> None:
    # Our implicit-TLS port lets AUTH through without STARTTLS because the whole connection is TLS; aiosmtpd
    # cannot tell and warns on every connection.
    config.addinivalue_line("filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning")


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_greeting(
    port: int, prefix: bytes, timeout: float = READY_TIMEOUT, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll the port until a server greets with `prefix`; raise TimeoutError after `timeout` seconds, RuntimeError
    as soon as `process` has exited."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited before it answered")
        try:
            with socket.create_connection((HOST, port), timeout=1.0) as s:
                greeting = s.recv(256)
            if greeting.startswith(prefix):
                return
            last = RuntimeError(f"unexpected greeting {greeting!r}")
        except OSError as error:
            last = error
        time.sleep(0.02)
    raise TimeoutError(f"nothing greeted with {prefix!r} on {HOST}:{port} within {timeout} s ({last})")


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate a process we started; kill it when it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# -- TLS ---------------------------------------------------------------------------------------------------------------


class Certificate(NamedTuple):
    """A self-signed certificate for localhost and 127.0.0.1, and its key (PEM files)."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate (and verifies host names as usual)."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_certificate(where: Path) -> Certificate:
    """Write a fresh self-signed certificate: with the `cryptography` package when installed, else `openssl req`."""
    cert, key = where / "cert.pem", where / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        need(openssl is not None, "neither the cryptography package nor openssl is installed (no TLS certificate)")
        assert openssl is not None
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return Certificate(cert, key)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    return Certificate(cert, key)


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """One self-signed certificate for localhost per test run."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


# -- aiosmtpd ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reply:
    """A scripted answer: `first` for the first attempts, one each, then `then` on every later one (None accepts)."""

    first: tuple[str, ...] = ()
    then: str | None = None

    def for_attempt(self, attempt: int) -> str | None:
        return self.first[attempt] if attempt < len(self.first) else self.then


def temporary(reply: str = "451 4.3.0 Try again later", times: int = 1) -> Reply:
    """`reply` for the first `times` attempts, then accept: "451 then 250", "421 then 250", HANG then 250."""
    return Reply(first=(reply,) * times)


def permanent(reply: str = "550 5.1.1 No such user") -> Reply:
    """`reply` on every attempt."""
    return Reply(then=reply)


ReplySpec = Reply | str  # a plain string answers every attempt


def _reply(spec: ReplySpec | None) -> Reply | None:
    return permanent(spec) if isinstance(spec, str) else spec


@dataclasses.dataclass(frozen=True)
class Received:
    """A message the server accepted (answered 250 after DATA)."""

    connection: int  # 1 for the server's first connection, 2 for the next, ...
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool
    login: str | None  # the AUTH user name, when the client authenticated

    @property
    def message(self) -> email.message.Message:
        return email.message_from_bytes(self.data)


class Answer(NamedTuple):
    """One decision of a scripted hook: the command, what it was about (recipient or message key), the reply."""

    command: str
    about: str
    reply: str


class _SMTP(aiosmtpd_smtp.SMTP):
    """aiosmtpd's SMTP session that tells the server when a connection opens and closes."""

    connection_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # a new connection, not the STARTTLS upgrade of an open one
            self.connection_id = self.event_handler.connected(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.event_handler.disconnected(self)
        super().connection_lost(error)


class _Controller(aiosmtpd_controller.Controller):
    def factory(self) -> aiosmtpd_smtp.SMTP:
        return _SMTP(self.handler, **self.SMTP_kwargs)


def _message_key(data: bytes) -> str:
    message_id = email.parser.BytesHeaderParser().parsebytes(data).get("Message-ID")
    return str(message_id).strip() if message_id else "sha256:" + hashlib.sha256(data).hexdigest()


class SmtpServer:
    """An aiosmtpd server in a thread of its own: records what it accepts and answers what it was scripted to.

    Attempts are counted per recipient at RCPT and per message (its Message-ID, else its bytes) at DATA.
    A reply starting with 421 closes the connection after it is sent, as real servers do.
    """

    def __init__(
        self,
        *,
        rcpt: Mapping[str, ReplySpec] | None = None,
        data: ReplySpec | None = None,
        data_to: Mapping[str, ReplySpec] | None = None,
        certificate: Certificate | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.host = HOST
        self.port = 0
        self.tls_port: int | None = None  # the implicit-TLS port, when asked for
        self.certificate = certificate
        self.auth = auth
        self.messages: list[Received] = []
        self.answers: list[Answer] = []
        self.connections = 0  # connections opened by clients so far (pooling tests count them)
        self._rcpt = {address.lower(): r for address, spec in (rcpt or {}).items() if (r := _reply(spec))}
        self._data = _reply(data)
        self._data_to = {address.lower(): r for address, spec in (data_to or {}).items() if (r := _reply(spec))}
        self._attempts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._open: set[_SMTP] = set()
        self._lock = threading.Lock()
        self._counting = False
        self._controllers: list[_Controller] = []
        try:
            kwargs: dict[str, Any] = {}
            if starttls:
                assert certificate is not None
                kwargs["tls_context"] = certificate.server_context()
            if auth is not None:
                kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=starttls)
            self.port = self._start(kwargs)
            if implicit_tls:
                assert certificate is not None
                tls_kwargs = {k: v for k, v in kwargs.items() if k != "tls_context"}
                if auth is not None:
                    tls_kwargs["auth_require_tls"] = False  # the whole connection is TLS already
                self.tls_port = self._start(tls_kwargs, ssl_context=certificate.server_context())
        except BaseException:
            self.stop()
            raise
        self._counting = True

    def _start(self, kwargs: dict[str, Any], ssl_context: ssl.SSLContext | None = None) -> int:
        for _ in range(5):  # another process may take the free port between picking and binding
            port = free_port()
            controller = _Controller(
                self,
                hostname=HOST,
                port=port,
                server_hostname="localhost",
                ready_timeout=READY_TIMEOUT,
                ssl_context=ssl_context,
                **kwargs,
            )
            try:
                controller.start()
            except OSError:
                continue
            self._controllers.append(controller)
            return port
        raise RuntimeError("no free port for aiosmtpd after 5 tries")

    # What the test sees

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def client_tls_context(self) -> ssl.SSLContext:
        assert self.certificate is not None, "start the server with starttls=True or implicit_tls=True"
        return self.certificate.client_context()

    def drop_connections(self) -> None:
        """Cut every open client connection (no QUIT, no 421), as a crashing server would."""
        with self._lock:
            sessions = list(self._open)
        for session in sessions:
            transport = session.transport
            if transport is not None:
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    session.loop.call_soon_threadsafe(_abort, transport)

    def stop(self) -> None:
        self.drop_connections()  # a hanging hook must not keep the server thread alive
        while self._controllers:
            self._controllers.pop().stop()

    # aiosmtpd hooks (they run in the server's thread)

    def connected(self, session: _SMTP) -> int:
        with self._lock:
            if not self._counting:
                return 0  # the controller's own readiness probe
            self.connections += 1
            self._open.add(session)
            return self.connections

    def disconnected(self, session: _SMTP) -> None:
        with self._lock:
            self._open.discard(session)

    def _authenticate(
        self,
        server: aiosmtpd_smtp.SMTP,
        session: aiosmtpd_smtp.Session,
        envelope: aiosmtpd_smtp.Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> aiosmtpd_smtp.AuthResult:
        assert self.auth is not None
        ok = (
            isinstance(auth_data, aiosmtpd_smtp.LoginPassword)
            and (
                auth_data.login.decode(errors="replace"),
                auth_data.password.decode(errors="replace"),
            )
            == self.auth
        )
        return aiosmtpd_smtp.AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def handle_RCPT(
        self,
        server: _SMTP,
        session: aiosmtpd_smtp.Session,
        envelope: aiosmtpd_smtp.Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        rule = self._rcpt.get(address.lower())
        reply = await self._decide(server, "RCPT", address.lower(), rule)
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_DATA(self, server: _SMTP, session: aiosmtpd_smtp.Session, envelope: aiosmtpd_smtp.Envelope) -> str:
        data = envelope.original_content or b""
        to = [address.lower() for address in envelope.rcpt_tos]
        rule = next((self._data_to[a] for a in to if a in self._data_to), self._data)
        reply = await self._decide(server, "DATA", _message_key(data), rule)
        if reply.startswith("2") or reply == DROP:
            login = getattr(session.auth_data, "login", None)
            self.messages.append(
                Received(
                    connection=server.connection_id,
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=data,
                    tls=server.transport is not None and server.transport.get_extra_info("ssl_object") is not None,
                    login=login.decode(errors="replace") if isinstance(login, bytes) else login,
                )
            )
        if reply == DROP and server.transport is not None:  # taken, and the answer is lost on the way
            _abort(server.transport)
            await asyncio.Event().wait()
        return reply

    async def _decide(self, server: _SMTP, command: str, about: str, rule: Reply | None) -> str:
        with self._lock:
            attempt = self._attempts[command, about]
            self._attempts[command, about] += 1
        reply = (rule.for_attempt(attempt) if rule else None) or _ACCEPT
        self.answers.append(Answer(command, about, reply))
        if reply == HANG:
            await asyncio.Event().wait()  # until the client gives up or the server stops
        if reply.startswith(SLOW):
            await asyncio.sleep(float(reply.removeprefix(SLOW)))
            reply = _ACCEPT
        if reply.startswith("421") and server.transport is not None:
            server.loop.call_soon(server.transport.close)  # after the reply is written
        return reply


def _abort(transport: asyncio.BaseTransport) -> None:
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


class SmtpServers:
    """The `smtp_server` fixture: call it to start an aiosmtpd server; all stop when the test ends."""

    def __init__(self, certificate: Callable[[], Certificate]) -> None:
        self._certificate = certificate
        self._servers: list[SmtpServer] = []

    def __call__(
        self,
        *,
        rcpt: Mapping[str, ReplySpec] | None = None,
        data: ReplySpec | None = None,
        data_to: Mapping[str, ReplySpec] | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
    ) -> SmtpServer:
        """Start a server that accepts everything except what `rcpt` (per recipient), `data` (every message) and
        `data_to` (messages to a recipient) script; STARTTLS, a second implicit-TLS port, AUTH PLAIN/LOGIN."""
        certificate = self._certificate() if starttls or implicit_tls else None
        server = SmtpServer(
            rcpt=rcpt,
            data=data,
            data_to=data_to,
            certificate=certificate,
            starttls=starttls,
            implicit_tls=implicit_tls,
            auth=auth,
        )
        self._servers.append(server)
        return server

    def stop_all(self) -> None:
        while self._servers:
            self._servers.pop().stop()


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[SmtpServers]:
    """Start in-process aiosmtpd servers: `server = smtp_server(rcpt={"kim@example.org": "550 5.1.1 No such user"})`."""
    servers = SmtpServers(lambda: request.getfixturevalue("tls_certificate"))
    try:
        yield servers
    finally:
        servers.stop_all()


# -- Postfix's smtp-sink -----------------------------------------------------------------------------------------------


def _sbin(name: str) -> str | None:
    """The path of a program, looked up in PATH and in the sbin directories a non-root PATH may lack."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def postfix_tool(name: str) -> str | None:
    """The path of a Postfix test program (smtp-sink, smtp-source), or None when Postfix is not installed."""
    return _sbin(name) or shutil.which(name, path="/usr/lib/postfix/sbin:/usr/libexec/postfix")


@dataclasses.dataclass
class SmtpSink:
    host: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        _stop_process(self.process)


class SmtpSinks:
    """The `smtp_sink` fixture: call it to start Postfix's smtp-sink; all stop when the test ends."""

    def __init__(self, path: str, workdir: Path) -> None:
        self._path = path
        self._workdir = workdir
        self._sinks: list[SmtpSink] = []

    def __call__(
        self,
        *,
        soft: Iterable[str] = (),
        hard: Iterable[str] = (),
        soft_reply: str | None = None,
        hard_reply: str | None = None,
        args: Sequence[str] = (),
    ) -> SmtpSink:
        """Start smtp-sink; `soft`/`hard` name SMTP commands (RCPT, DATA, "." ...) it refuses with 4xx/5xx
        (`-r`/`-f`), answered with `soft_reply`/`hard_reply` (`-b`/`-B`); `args` go to smtp-sink as they are."""
        command = [self._path]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # smtp-sink refuses to run as root
        if soft := ",".join(soft):
            command += ["-r", soft]
        if hard := ",".join(hard):
            command += ["-f", hard]
        if soft_reply:
            command += ["-b", soft_reply]
        if hard_reply:
            command += ["-B", hard_reply]
        command += list(args)
        for _ in range(5):
            port = free_port()
            errors = self._workdir / f"smtp-sink-{port}.err"
            with errors.open("wb") as stderr:
                process = subprocess.Popen(
                    [*command, f"{HOST}:{port}", "1000"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=True,
                )
            sink = SmtpSink(HOST, port, process)
            self._sinks.append(sink)
            try:
                wait_for_greeting(port, b"220", process=process)
            except (RuntimeError, TimeoutError) as error:
                sink.stop()
                if b"Address already in use" in errors.read_bytes():
                    continue
                raise RuntimeError(f"smtp-sink did not start: {error}: {errors.read_text(errors='replace')}") from None
            return sink
        raise RuntimeError("no free port for smtp-sink after 5 tries")

    def stop_all(self) -> None:
        while self._sinks:
            self._sinks.pop().stop()


@pytest.fixture
def smtp_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpSinks]:
    """Start Postfix's smtp-sink on a free port: `sink = smtp_sink()`, or `smtp_sink(soft=["RCPT"])` for 450s."""
    path = postfix_tool("smtp-sink")
    need(path is not None, "Postfix's smtp-sink is not installed (apt-get install postfix)")
    assert path is not None
    sinks = SmtpSinks(path, tmp_path_factory.mktemp("smtp-sink"))
    try:
        yield sinks
    finally:
        sinks.stop_all()


# -- Dovecot -----------------------------------------------------------------------------------------------------------

DOVECOT_USERS = {"rep@example.com": "secret", "anna@example.com": "secret"}

_DOVECOT_CONF = """\
protocols = imap
listen = {host}
base_dir = {tmp}/run
state_dir = {tmp}/run
log_path = {tmp}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{tmp}/mail/%u
first_valid_uid = {first_valid_uid}
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {login_user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {tmp}/users
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={tmp}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""

_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_INTERNALDATE = re.compile(rb'INTERNALDATE ("[^"]*")')
_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Dovecot:
    """A Dovecot IMAP server of its own (config from TEST-SERVERS.md) in a short temp dir, on a free port."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.host = HOST
        self.port = 0
        self.users = dict(users)
        self.dir = Path(tempfile.mkdtemp(prefix="dovecot-", dir="/tmp"))  # short: unix socket paths are limited
        self.conf = self.dir / "dovecot.conf"
        self.process: subprocess.Popen[bytes] | None = None
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        dovecot = _sbin("dovecot")
        assert dovecot is not None
        if os.geteuid() == 0:
            user, group, login_user, uid = "dovecot", "dovecot", "dovenull", 100
        else:  # unprivileged: every Dovecot process runs as us
            me = pwd.getpwuid(os.geteuid())
            user = login_user = me.pw_name
            group, uid = grp.getgrgid(os.getegid()).gr_name, min(me.pw_uid, 100)
        (self.dir / "run").mkdir()
        (self.dir / "mail").mkdir()
        self.dir.chmod(0o755)
        (self.dir / "run").chmod(0o755)
        shutil.chown(self.dir / "mail", user, group)
        self._write_users()
        for _ in range(5):
            self.port = free_port()
            self.conf.write_text(
                _DOVECOT_CONF.format(
                    host=HOST,
                    tmp=self.dir,
                    port=self.port,
                    user=user,
                    group=group,
                    login_user=login_user,
                    first_valid_uid=uid,
                )
            )
            errors = self.dir / "dovecot.err"
            with errors.open("wb") as stderr:
                self.process = subprocess.Popen(
                    [dovecot, "-F", "-c", str(self.conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    start_new_session=True,
                )
            try:
                wait_for_greeting(self.port, b"* OK", process=self.process)
                return
            except (RuntimeError, TimeoutError) as error:
                self._stop_process()
                log = errors.read_text(errors="replace") + self.log()
                if "Address already in use" in log:
                    continue
                raise RuntimeError(f"Dovecot did not start: {error}\n{log}") from None
        raise RuntimeError("no free port for Dovecot after 5 tries")

    def _write_users(self) -> None:
        lines = "".join(f"{user}:{{PLAIN}}{password}\n" for user, password in self.users.items())
        (self.dir / "users").write_text(lines)

    def add_user(self, user: str, password: str) -> None:
        """Add a login (Dovecot re-reads the passwd file when it changes)."""
        self.users[user] = password
        self._write_users()

    def log(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def doveadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_sbin("doveadm") or "doveadm", "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=check,
        )

    def stop(self) -> None:
        try:
            self._stop_process()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_process(self) -> None:
        # SIGTERM to Dovecot's own process group (it runs in a session of its own): the master and every child
        # stop within about 0.1 s. `doveadm stop` sends the master the same signal but polls for 3 s, and the
        # master alone waits 1 s for its log process.
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(wait)
                return

    # Test-side IMAP (stdlib imaplib: the code under test uses aioimaplib)

    @contextlib.contextmanager
    def imap(self, user: str, password: str) -> Iterator[imaplib.IMAP4]:
        """A logged-in stdlib IMAP connection, logged out afterwards."""
        client = imaplib.IMAP4(self.host, self.port, timeout=30)
        try:
            client.login(user, password)
            yield client
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()

    def append(
        self,
        user: str,
        password: str,
        raw: bytes,
        mailbox: str = "INBOX",
        flags: Iterable[str] = (),
        internaldate: str | None = None,
    ) -> int:
        """Deliver a message by IMAP APPEND, as a mail server would; return its UID (the mailbox is created if new)."""
        with self.imap(user, password) as client:
            if mailbox.upper() != "INBOX":
                client.create(_quote(mailbox))  # NO when it exists: fine
            flag_list = "(" + " ".join(flags) + ")" if flags else None
            typ, data = client.append(_quote(mailbox), flag_list, internaldate, raw)
            assert typ == "OK", data
            match = _APPENDUID.search(data[0] or b"")
            assert match, data
            return int(match.group(2))

    def uids(self, user: str, password: str, mailbox: str = "INBOX") -> list[int]:
        """The UIDs in the mailbox, ascending (read-only: nothing is marked)."""
        return sorted(self.flags_of(user, password, mailbox))

    def flags_of(self, user: str, password: str, mailbox: str = "INBOX") -> dict[int, frozenset[str]]:
        """UID -> flags of every message (\\Recent left out), read with EXAMINE so that nothing changes."""
        with self.imap(user, password) as client:
            typ, data = client.select(_quote(mailbox), readonly=True)
            assert typ == "OK", data
            if int(data[0] or 0) == 0:
                return {}
            typ, data = client.uid("FETCH", "1:*", "(UID FLAGS)")
            assert typ == "OK", data
        result: dict[int, frozenset[str]] = {}
        for line in data:
            text = line[0] if isinstance(line, tuple) else line
            if not isinstance(text, bytes):
                continue
            uid, flags = _UID.search(text), _FLAGS.search(text)
            if uid and flags:
                result[int(uid.group(1))] = frozenset(flags.group(1).decode().split()) - {"\\Recent"}
        return result

    def uidvalidity(self, user: str, password: str, mailbox: str = "INBOX") -> int:
        with self.imap(user, password) as client:
            typ, data = client.status(_quote(mailbox), "(UIDVALIDITY)")
            assert typ == "OK", data
        match = re.search(rb"UIDVALIDITY (\d+)", data[0] or b"")
        assert match, data
        return int(match.group(1))

    def change_uidvalidity(self, user: str, password: str, mailbox: str = "INBOX") -> int:
        """Renumber the mailbox as a migrated or rebuilt server would: every message is expunged and appended
        again (same bytes, flags and dates, new UIDs above the old ones) under a new UIDVALIDITY, which is returned."""
        with self.imap(user, password) as client:
            typ, data = client.select(_quote(mailbox))
            assert typ == "OK", data
            saved: list[tuple[bytes, list[str], str | None]] = []
            if int(data[0] or 0):
                typ, data = client.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE)")
                assert typ == "OK", data
                for line in data:
                    if not isinstance(line, bytes) or not (uid := _UID.search(line)):
                        continue
                    flag_match, date_match = _FLAGS.search(line), _INTERNALDATE.search(line)
                    typ, body = client.uid("FETCH", uid.group(1).decode(), "(BODY.PEEK[])")
                    assert typ == "OK" and isinstance(body[0], tuple), body
                    flags = flag_match.group(1).decode().split() if flag_match else []
                    kept = [f for f in flags if f not in ("\\Recent", "\\Deleted")]
                    saved.append((body[0][1], kept, date_match.group(1).decode() if date_match else None))
                client.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Deleted)")
                client.expunge()
            client.close()
        new = self.uidvalidity(user, password, mailbox) % 0xFFFFFFFF + 1
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), mailbox)
        for raw, kept_flags, internaldate in saved:
            self.append(user, password, raw, mailbox, kept_flags, internaldate=internaldate)
        return new

    def kick(self, user: str = "*") -> None:
        """Drop every IMAP connection of `user` (all users by default); the server keeps running."""
        result = self.doveadm("kick", user, check=False)
        if result.returncode not in (0, 68):  # 68: nobody was connected
            raise RuntimeError(f"doveadm kick failed ({result.returncode}): {result.stderr}")

    def connected_users(self) -> list[str]:
        lines = self.doveadm("who", "-1").stdout.splitlines()
        return [line.split()[0] for line in lines if line.strip() and not line.startswith("username")]


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A fresh Dovecot with DOVECOT_USERS (password "secret"): `dovecot.append("rep@example.com", "secret", raw)`."""
    need(
        _sbin("dovecot") is not None and _sbin("doveadm") is not None,
        "Dovecot is not installed (apt-get install dovecot-imapd)",
    )
    server = Dovecot(DOVECOT_USERS)
    try:
        yield server
    finally:
        server.stop()
