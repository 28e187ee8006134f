"""The SMTP transport as the settings build it, before it connects anywhere: the daemon sends over the relay the
settings name, and the relay's secrets are read (or found missing) when the transport is built."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from outreach.mail import credentials, smtp
from outreach.rules import model, timing
from tests.worlds import RULES

pytestmark = pytest.mark.unit


def relay(port: int, **changes: object) -> model.Server:
    values: dict[str, object] = {"name": "relay", "host": "127.0.0.1", "port": port,
                                 "security": model.Security.NONE, "timeout": timing.Duration(seconds=10)}  # fmt: skip
    values.update(changes)
    return model.Server(**values)  # type: ignore[arg-type]


def test_the_daemon_builds_the_smtp_transport_settings_name(tmp_path: Path) -> None:
    from outreach.app import sending as app_sending

    relay = model.Server(name="smtp", host="smtp.example.com", port=2525, security=model.Security.STARTTLS)
    settings = dataclasses.replace(RULES.settings, transport=model.Transport(type="smtp", smtp=relay))
    built = app_sending.transport_for(dataclasses.replace(RULES, settings=settings))
    assert isinstance(built, smtp.SmtpTransport) and built.where == "smtp.example.com:2525"


def test_a_secret_that_is_not_there_is_refused_when_the_transport_is_built(tmp_path: Path) -> None:
    with pytest.raises(credentials.MissingSecret, match="the SMTP password: the environment variable NO_SUCH_VAR"):
        smtp.SmtpTransport(relay(25, username="anna", password_env="NO_SUCH_VAR"))
    with pytest.raises(credentials.MissingSecret, match="cannot read"):
        smtp.SmtpTransport(relay(25, username="anna", password_file=str(tmp_path / "absent")))
    with pytest.raises(credentials.MissingSecret, match="AUTH needs a password"):
        smtp.SmtpTransport(relay(25, username="anna"))


def test_a_secret_file_under_the_systemd_credentials_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "smtp").write_text("pw-1\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))

    transport = smtp.SmtpTransport(relay(25, username="anna", password_file="$CREDENTIALS_DIRECTORY/smtp"))

    assert transport.password == "pw-1"
