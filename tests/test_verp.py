"""Per-message envelope senders (VERP): Settings.bounce_address, the signed token, and the SMTP transport's MAIL FROM.

A bounce delivered to `bounces+{token}@example.com` names its message; a token we did not sign names nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from outreach.mail import links, smtp, verp
from outreach.mail import message as mail_message
from outreach.rules import model, timing
from outreach.rules import validate as rules_validate
from tests.mailservers import SmtpServers
from tests.worlds import RULES

SECRET = "a-secret-of-at-least-32-bytes-0123456789"
KEYS = links.Keys.parse(SECRET)
TEMPLATE = "bounces+{token}@example.com"
KEY = bytes.fromhex("0f3c5e7a9b1d4c2e8f6a0b3d5c7e9f1a")
MESSAGE_ID = "<0f3c5e7a9b1d4c2e8f6a0b3d5c7e9f1a@example.com>"
DATE = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


def built(message_id: str = MESSAGE_ID) -> bytes:
    return mail_message.build(sender=("Anna Berger", "anna@example.com"), to="jo@example.org", subject="Hi",
                              text="Hello.\n", html=None, message_id=message_id, date=DATE)  # fmt: skip


@pytest.mark.unit
def test_a_token_names_the_message_and_fits_a_local_part_of_64() -> None:
    token = verp.sign(KEYS, KEY)
    assert len(token) == verp.TOKEN_LENGTH == 42 and token == token.lower()
    assert verp.verify(KEYS, token) == KEY
    assert verp.verify(KEYS, token.upper()) == KEY  # a mail system that changes the case changes nothing
    assert len(TEMPLATE.replace("{token}", token).partition("@")[0]) <= 64


@pytest.mark.unit
def test_a_forged_or_damaged_token_names_nothing() -> None:
    token = verp.sign(KEYS, KEY)
    other = links.Keys.parse("another-secret-of-at-least-32-bytes-xyz")
    assert verp.verify(other, token) is None  # signed by another installation
    flipped = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert verp.verify(KEYS, flipped) is None  # one character changed
    forged_key = verp.sign(other, bytes(16))  # a token for a message key of the forger's choice
    assert verp.verify(KEYS, forged_key) is None
    for bad in ("", "x" * 42, token[:-1], token + "a", "0" * 42):
        assert verp.verify(KEYS, bad) is None


@pytest.mark.unit
def test_keys_rotate_the_first_signs_and_every_one_verifies() -> None:
    old = verp.sign(KEYS, KEY)
    rotated = links.Keys.parse(f"a-new-secret-of-at-least-32-bytes-abcdef {SECRET}")
    assert verp.verify(rotated, old) == KEY
    assert verp.sign(rotated, KEY) != old


@pytest.mark.unit
def test_the_envelope_sender_of_a_message_comes_from_its_message_id() -> None:
    bounces = verp.Verp(TEMPLATE, KEYS, ("example.com",))
    sender = bounces.sender_for(built())
    assert sender == f"bounces+{verp.sign(KEYS, KEY)}@example.com"
    assert bounces.sender_for(built("<not-ours@example.com>")) is None  # not 32 hex digits: the plain sender
    assert bounces.message_key(sender.upper()) == KEY
    assert bounces.message_ids([sender, "anna@example.com", "bounces+xyz@example.com"]) == (MESSAGE_ID,)


@pytest.mark.unit
def test_the_message_ids_of_a_verp_address_are_tried_at_each_sending_domain() -> None:
    bounces = verp.Verp(TEMPLATE, KEYS, ("example.com", "example.de", "bücher.example"))
    sender = bounces.sender_for(built())
    assert sender is not None
    hex_ = KEY.hex()
    assert bounces.message_ids([sender]) == (f"<{hex_}@example.com>", f"<{hex_}@example.de>",
                                             f"<{hex_}@xn--bcher-kva.example>")  # fmt: skip
    assert verp.domains_of(RULES.settings) == ("example.com",)


@pytest.mark.unit
def test_settings_bounce_address_is_validated_and_read(tmp_path: Path) -> None:
    base = "kind: Settings\ntimezone: UTC\n"
    good = rules_validate.validate_texts({"s.yaml": base + "bounce_address: bounces+{token}@example.com\n"})
    assert not good.errors and good.ruleset is not None
    assert good.ruleset.settings.bounce_address == "bounces+{token}@example.com"
    for bad in ("bounces@example.com", "bounces+{token}{token}@example.com", "bounces+{token}@localhost",
                "a-very-long-prefix-of-many+{token}@example.com", "{token}"):  # fmt: skip
        result = rules_validate.validate_texts({"s.yaml": base + f"bounce_address: '{bad}'\n"})
        assert [d.path for d in result.errors] == ["bounce_address"], bad
        assert "bounces+{token}@example.com" in result.errors[0].message


@pytest.mark.unit
def test_the_daemons_smtp_transport_sends_with_the_verp_envelope_sender(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from outreach.app import sending

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))  # no tracking secret is set: the state directory's
    relay = model.Server(name="smtp", host="smtp.example.com", port=2525, security=model.Security.NONE)
    settings = dataclasses.replace(RULES.settings, transport=model.Transport(type="smtp", smtp=relay),
                                   bounce_address=TEMPLATE)  # fmt: skip
    transport = sending.transport_for(dataclasses.replace(RULES, settings=settings))
    assert isinstance(transport, smtp.SmtpTransport) and transport.envelope is not None
    keys, created = links.state_keys(tmp_path)
    assert not created  # the same secret the links are signed with
    assert transport.envelope(built()) == TEMPLATE.replace("{token}", verp.sign(keys, KEY))
    plain = sending.transport_for(dataclasses.replace(RULES, settings=dataclasses.replace(settings,
                                                                                          bounce_address=None)))  # fmt: skip
    assert isinstance(plain, smtp.SmtpTransport) and plain.envelope is None


@pytest.mark.integration
async def test_a_message_goes_out_over_smtp_with_its_own_envelope_sender(smtp_server: SmtpServers) -> None:
    server = smtp_server()
    bounces = verp.Verp(TEMPLATE, KEYS, ("example.com",))
    relay = model.Server(name="relay", host="127.0.0.1", port=server.port, security=model.Security.NONE,
                         timeout=timing.Duration(seconds=10))  # fmt: skip
    transport = smtp.SmtpTransport(relay, envelope=bounces.sender_for)
    data = built()
    result = await transport.send("anna@example.com", ["jo@example.org"], data)
    other = await transport.send("anna@example.com", ["kim@example.org"], built("<no-token@example.com>"))
    await transport.close()
    assert result.ok and other.ok
    first, second = server.messages
    assert first.mail_from == f"bounces+{verp.sign(KEYS, KEY)}@example.com" and first.data == data
    assert second.mail_from == "anna@example.com"  # no Message-ID of ours: the plain sender
