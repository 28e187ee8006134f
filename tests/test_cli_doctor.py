"""`outreach doctor`: secrets, transport, schema, and the mail and enrollments that need an operator."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from dkim import crypto as dkim_crypto

from outreach import cli
from outreach.store import Store, tables
from tests import dkim_keys
from tests.conftest import ROOT
from tests.mailservers import SmtpServers

# Both users' mailboxes, with their secrets in one variable the tests set.
MAILBOXES = {user: {"host": "imap.example.com", "username": user, "password_env": "DOCTOR_IMAP_PASSWORD"}
             for user in ("anna", "ben")}  # fmt: skip


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    monkeypatch.chdir(tmp_path)
    for name in ("ANNA_IMAP_USER", "BEN_IMAP_USER", "BEN_IMAP_PASSWORD", "OUTREACH_SECRET", "DOCTOR_SMTP_PASSWORD",
                 "OUTREACH_API_TOKEN"):
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
    monkeypatch.setenv("OUTREACH_API_TOKEN", "an-api-token-an-api-token")
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


def over_smtp(here: Path, port: int, monkeypatch: pytest.MonkeyPatch, *, password: str) -> None:
    """The example rules sending over the relay at `port` as anna, every secret they name set."""
    monkeypatch.setenv("OUTREACH_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")
    monkeypatch.setenv("DOCTOR_IMAP_PASSWORD", "imap-pw")
    monkeypatch.setenv("DOCTOR_SMTP_PASSWORD", password)
    settings(here, mailboxes=MAILBOXES, transport={"type": "smtp", "smtp": {
        "host": "127.0.0.1", "port": port, "security": "none", "username": "anna",
        "password_env": "DOCTOR_SMTP_PASSWORD"}})  # fmt: skip


@pytest.mark.integration
def test_the_relay_is_reached_and_mail_in_doubt_is_a_problem_with_what_to_do(
    here: Path, smtp_server: SmtpServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server(auth=("anna", "pw-1"))
    over_smtp(here, server.port, monkeypatch, password="pw-1")
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
    here: Path, smtp_server: SmtpServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server(auth=("anna", "pw-1"))
    over_smtp(here, server.port, monkeypatch, password="wrong")

    code, out = run("doctor", "--connect")

    assert code == 1
    assert f"problem  transport    SMTP relay 127.0.0.1:{server.port}: SMTPAuthenticationError" in out
