"""`outreach doctor`: secrets, transport, mailboxes, schema, and the mail and enrollments that need an operator."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from dkim import crypto as dkim_crypto

from outreach import cli
from outreach.app import doctor
from outreach.rules import validate
from outreach.store import Store, tables
from tests import dkim_keys
from tests.conftest import ROOT
from tests.mailservers import HOST, Dovecot, SmtpServers


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    monkeypatch.chdir(tmp_path)
    for name in (
        "ANNA_IMAP_USER",
        "BEN_IMAP_USER",
        "BEN_IMAP_PASSWORD",
        "OUTREACH_SECRET",
        "DOCTOR_SMTP_PASSWORD",
        "OUTREACH_API_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def settings(here: Path, **changes: object) -> None:
    path = here / "rules" / "settings.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@pytest.mark.acceptance
def test_missing_secrets_are_problems_named_without_their_values(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANNA_IMAP_USER", "anna")
    monkeypatch.setenv("BEN_IMAP_USER", "ben")
    monkeypatch.setenv("BEN_IMAP_PASSWORD", "hunter2")

    code, out = run("doctor")

    assert code == 1
    assert "problem  secret       IMAP password of mailbox anna: cannot read /run/credentials/" in out
    assert "ok       secret       IMAP password of mailbox ben: set" in out
    assert "warning  secret       tracking secret (signs unsubscribe, open and click links): the environment " \
           "variable OUTREACH_SECRET is not set: links are signed with the secret the daemon keeps in its state " \
           "directory" in out  # fmt: skip
    assert "warning  secret       ingest API token: the environment variable OUTREACH_API_TOKEN is not set" in out
    assert "hunter2" not in out
    assert "ok       transport    maildir var/outbox is writable" in out
    assert "ok       store        schema at revision" in out


@pytest.mark.acceptance
def test_doctor_prints_the_dkim_txt_record_to_publish_and_a_missing_key_is_a_problem(here: Path) -> None:
    (here / "dkim.pem").write_text(dkim_keys.rsa_pem(2048), encoding="utf-8")
    settings(here, dkim=[
        {"domain": "example.com", "selector": "s2026", "private_key_file": str(here / "dkim.pem")},
        {"domain": "example.net", "selector": "s1", "private_key_file": "/run/credentials/outreach.service/dkim-net"},
    ])  # fmt: skip
    n, e, *_ = dkim_keys.rsa_numbers(2048)

    code, out = run("doctor")

    assert code == 1
    (line,) = [x for x in out.splitlines() if x.startswith("ok       dkim")]
    prefix = 'ok       dkim         example.com: selector s2026, publish TXT s2026._domainkey.example.com "v=DKIM1; k=rsa; p='
    assert line.startswith(prefix), out
    value = "".join(re.findall(r'"([^"]*)"', line.split("publish TXT s2026._domainkey.example.com ", 1)[1]))
    public = base64.b64decode(value.split("; p=", 1)[1])
    assert dkim_crypto.parse_public_key(public) == {"modulus": n, "publicExponent": e}  # the key's public half
    assert "problem  dkim         the DKIM key of example.net: cannot read /run/credentials/outreach.service/dkim-net" \
        in out  # fmt: skip
    assert "BEGIN PRIVATE KEY" not in out and "mail from" not in out  # every sender's domain (example.com) signs


@pytest.mark.acceptance
def test_a_short_tracking_secret_is_a_problem_and_a_set_api_token_is_ok(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    monkeypatch.setenv("OUTREACH_SECRET", "change-me")
    monkeypatch.setenv("OUTREACH_API_TOKEN", "an-api-token-an-api-token-an-api-token")
    code, out = run("doctor")
    assert code == 1
    assert "problem  secret       tracking secret (signs unsubscribe, open and click links): a tracking secret of 9 " \
           "bytes is too short" in out  # fmt: skip
    assert "ok       secret       ingest API token: set" in out and "change-me" not in out


async def _unknown_message(url: str) -> None:
    store = await Store.open(url)
    try:
        async with store.engine.begin() as conn:
            now = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
            await conn.execute(tables.outbox.insert().values(
                sender="anna@example.com", recipient="jo@example.org", subject="Quick question, Jo",
                message_id="<u1@example.com>", message=b"x", state="unknown", attempts=1, created_at=now))  # fmt: skip
    finally:
        await store.close()


def on_dovecot(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, **changes: dict[str, object]
) -> dict[str, dict[str, object]]:  # fmt: skip
    """anna's and ben's mailboxes on the test's Dovecot, their passwords set (DOCTOR_ANNA_IMAP_PASSWORD, ...);
    `anna={"folder": "Replies"}` changes one."""
    dovecot.add_user("ben@example.com", "ben-secret")
    monkeypatch.setenv("DOCTOR_ANNA_IMAP_PASSWORD", dovecot.users["anna@example.com"])
    monkeypatch.setenv("DOCTOR_BEN_IMAP_PASSWORD", "ben-secret")
    boxes: dict[str, dict[str, object]] = {
        user: {"host": dovecot.host, "port": dovecot.port, "security": "none", "username": f"{user}@example.com",
               "password_env": f"DOCTOR_{user.upper()}_IMAP_PASSWORD"}
        for user in ("anna", "ben")
    }  # fmt: skip
    for user, change in changes.items():
        boxes[user].update(change)
    return boxes


def over_smtp(
    here: Path, port: int, monkeypatch: pytest.MonkeyPatch, dovecot: Dovecot, *, password: str
) -> None:  # fmt: skip
    """The example rules sending over the relay at `port` as anna and reading the mailboxes on `dovecot`, every
    secret they name set."""
    monkeypatch.setenv("OUTREACH_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")
    monkeypatch.setenv("DOCTOR_SMTP_PASSWORD", password)
    settings(here, mailboxes=on_dovecot(dovecot, monkeypatch), transport={"type": "smtp", "smtp": {
        "host": "127.0.0.1", "port": port, "security": "none", "username": "anna",
        "password_env": "DOCTOR_SMTP_PASSWORD"}})  # fmt: skip


@pytest.mark.integration
def test_the_relay_is_reached_and_mail_in_doubt_is_a_problem_with_what_to_do(
    here: Path, smtp_server: SmtpServers, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server(auth=("anna", "pw-1"))
    over_smtp(here, server.port, monkeypatch, dovecot, password="pw-1")
    assert run("apply", "rules")[0] == 0

    code, out = run("doctor", "--connect")
    assert code == 0, out
    assert f"ok       transport    SMTP relay 127.0.0.1:{server.port} answers, logged in as anna" in out
    assert "0 problem(s)" in out and server.messages == []

    asyncio.run(_unknown_message(f"sqlite:///{here / 'var' / 'outreach.db'}"))
    code, out = run("doctor", "--json")
    findings = json.loads(out)
    assert code == 1
    [doubt] = [f for f in findings if f["level"] == "problem"]
    assert doubt["what"] == "outbox" and "outreach outbox requeue 1" in doubt["detail"]
    assert "jo@example.org" in doubt["detail"]


@pytest.mark.integration
def test_a_wrong_relay_password_is_a_problem(
    here: Path, smtp_server: SmtpServers, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server(auth=("anna", "pw-1"))
    over_smtp(here, server.port, monkeypatch, dovecot, password="wrong")

    code, out = run("doctor", "--connect")

    assert code == 1
    assert f"problem  transport    SMTP relay 127.0.0.1:{server.port}: SMTPAuthenticationError" in out
    assert "1 problem(s)" in out  # the mailboxes are fine


# --- the mailboxes (--connect) ------------------------------------------------------------------------------------


@pytest.mark.integration
def test_connect_logs_in_to_every_mailbox_and_selects_its_folder_reading_nothing(
    here: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings(here, mailboxes=on_dovecot(dovecot, monkeypatch))
    dovecot.append("anna@example.com", "secret", b"Subject: hello\r\n\r\nhi\r\n")

    code, out = run("doctor")
    assert code == 0, out
    assert "  mailbox  " not in out  # without --connect no mailbox is reached (only its secrets are looked at)

    code, out = run("doctor", "--connect")
    assert code == 0, out
    at = f"{HOST}:{dovecot.port}"
    assert f"ok       mailbox      anna at {at}: logged in as anna@example.com, INBOX holds 1 message(s)" in out
    assert f"ok       mailbox      ben at {at}: logged in as ben@example.com, INBOX holds 0 message(s)" in out
    assert "0 problem(s)" in out
    assert dovecot.flags_of("anna@example.com", "secret") == {1: frozenset()}  # not even marked \\Seen


@pytest.mark.integration
def test_a_stopped_imap_server_is_a_problem_naming_each_mailbox(
    here: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings(here, mailboxes=on_dovecot(dovecot, monkeypatch))
    dovecot.stop()  # its port is closed now

    code, out = run("doctor", "--connect")

    assert code == 1
    at = f"{HOST}:{dovecot.port}"
    assert f"problem  mailbox      anna at {at}: connection refused" in out
    assert f"problem  mailbox      ben at {at}: connection refused" in out
    assert "2 problem(s)" in out


@pytest.mark.integration
def test_a_wrong_imap_password_is_an_authentication_failure_and_is_never_printed(
    here: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings(here, mailboxes=on_dovecot(dovecot, monkeypatch))
    monkeypatch.setenv("DOCTOR_ANNA_IMAP_PASSWORD", "hunter2")

    code, out = run("doctor", "--connect")

    assert code == 1
    assert f"problem  mailbox      anna at {HOST}:{dovecot.port}: authentication failed: the server refused the " \
           "login of anna@example.com: [AUTHENTICATIONFAILED] Authentication failed." in out  # fmt: skip
    assert "ok       mailbox      ben at" in out and "1 problem(s)" in out
    assert "hunter2" not in out and "ben-secret" not in out


@pytest.mark.integration
def test_a_missing_folder_is_its_own_problem(here: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    settings(here, mailboxes=on_dovecot(dovecot, monkeypatch, anna={"folder": "Replies"}))

    code, out = run("doctor", "--connect")

    assert code == 1
    assert f"problem  mailbox      anna at {HOST}:{dovecot.port}: logged in as anna@example.com, but the folder " \
           "Replies is missing: Mailbox doesn't exist: Replies" in out  # fmt: skip
    assert "1 problem(s)" in out

    dovecot.append("anna@example.com", "secret", b"Subject: x\r\n\r\n", mailbox="Replies")  # creates it
    code, out = run("doctor", "--connect")
    assert code == 0, out
    assert "anna at" in out and "Replies holds 1 message(s)" in out


@pytest.mark.integration
def test_a_missing_imap_secret_and_a_tls_mismatch_are_problems_of_their_mailbox(
    here: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings(here, mailboxes=on_dovecot(dovecot, monkeypatch, ben={"security": "tls"}))
    monkeypatch.delenv("DOCTOR_ANNA_IMAP_PASSWORD")

    code, out = run("doctor", "--connect")

    assert code == 1
    assert f"problem  mailbox      anna at {HOST}:{dovecot.port}: not checked: the IMAP password of mailbox anna: " \
           "the environment variable DOCTOR_ANNA_IMAP_PASSWORD is not set" in out  # fmt: skip
    # Dovecot answers in plain text where implicit TLS expects a handshake
    assert f"problem  mailbox      ben at {HOST}:{dovecot.port}: TLS error: [SSL: WRONG_VERSION_NUMBER]" in out
    assert "3 problem(s)" in out  # the missing secret is one of the secrets too


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections (the kernel accepts them) and never says a word: a hung server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


@pytest.mark.integration
def test_a_server_that_never_greets_times_out_within_the_mailbox_timeout_and_mailboxes_are_checked_side_by_side(
    here: Path, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCTOR_IMAP_PASSWORD", "pw")
    settings(here, mailboxes={user: {"host": HOST, "port": silent_port, "security": "none", "username": user,
                                     "password_env": "DOCTOR_IMAP_PASSWORD", "timeout": "1s"}
                              for user in ("anna", "ben")})  # fmt: skip
    result = validate.validate([str(here / "rules")])
    assert result.ruleset is not None, result.errors

    found = asyncio.run(doctor.check_mailboxes(result.ruleset.settings))

    assert [(f.level, f.detail) for f in found] == [
        ("problem", f"{user} at {HOST}:{silent_port}: no answer within 1 s (timeout)") for user in ("anna", "ben")
    ]


@pytest.mark.integration
def test_mailboxes_are_checked_side_by_side(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that hangs up only once both mailboxes are connected: checked one after the other, the second
    would connect only after the first timed out (30 s), and the wait below would give up first."""
    monkeypatch.setenv("DOCTOR_IMAP_PASSWORD", "pw")

    async def scenario() -> tuple[int, list[doctor.Finding]]:
        both = asyncio.Event()
        connected = 0

        async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connected
            connected += 1
            if connected == 2:
                both.set()
            await both.wait()
            writer.close()

        server = await asyncio.start_server(hold, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        settings(here, mailboxes={user: {"host": HOST, "port": port, "security": "none", "username": user,
                                         "password_env": "DOCTOR_IMAP_PASSWORD", "timeout": "30s"}
                                  for user in ("anna", "ben")})  # fmt: skip
        result = validate.validate([str(here / "rules")])
        assert result.ruleset is not None, result.errors
        async with server:
            found = await asyncio.wait_for(doctor.check_mailboxes(result.ruleset.settings), 20)
        return connected, found

    connected, found = asyncio.run(scenario())
    assert connected == 2
    assert [f.level for f in found] == ["problem", "problem"]  # the server hung up without a greeting
