"""Signed links: opaque tokens that name a message, not an address; ours verify under every secret of the
rotation, and a forged, altered or truncated one never does."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest

from outreach.app import sending
from outreach.mail import links
from outreach.rules import model, validate
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

SECRET = b"s3cret-for-tests-s3cret-for-tests"
KEYS = links.Keys((SECRET,))
KEY = bytes(range(16))


def test_a_token_we_made_verifies_to_what_it_names() -> None:
    for token in (links.Token("u", KEY), links.Token("o", KEY), links.Token("c", KEY, 7)):
        text = links.sign(KEYS, token)
        assert len(text) == links.TOKEN_LENGTH and links.verify(KEYS, text) == token


def _flip(text: str, i: int) -> str:
    return text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]


@pytest.mark.parametrize("mangle", [
    lambda t: _flip(t, len(t) - 1),  # another MAC
    lambda t: _flip(t, 5),  # another key
    lambda t: _flip(t, 0),  # another version
    lambda t: t[:-1],  # truncated
    lambda t: t[:-4],
    lambda t: t + "A",  # longer
    lambda t: t[:-3] + "+/=",  # junk inside the MAC part
    lambda t: t[:-2] + ".." ,
    lambda t: t[:20] + "%41" + t[23:],
    lambda t: links.sign(links.Keys((b"another-secret-another-secret-00",)), links.Token("u", KEY)),
    lambda t: "not a token",
    lambda t: "",
])  # fmt: skip
def test_a_forged_altered_or_truncated_token_is_refused(mangle: object) -> None:
    text = links.sign(KEYS, links.Token("u", KEY))
    with pytest.raises(links.BadToken):
        links.verify(KEYS, mangle(text))  # type: ignore[operator]


def test_any_character_outside_the_url_safe_alphabet_anywhere_in_a_token_is_refused() -> None:
    # issue 18, item 3: exactly A-Z a-z 0-9 - _, 48 of them; base64 decoders skip or map much else
    text = links.sign(KEYS, links.Token("c", KEY, 3))
    junk = "+/=.~ \t\n\r\x00%!*\u0660\uff10\u00e9\u212a"  # ... an Arabic-Indic and a full-width digit, a Kelvin sign
    for i in range(len(text)):
        for char in junk:
            with pytest.raises(links.BadToken, match="damaged"):
                links.verify(KEYS, text[:i] + char + text[i + 1 :])
            with pytest.raises(links.BadToken):
                links.verify(KEYS, text[:i] + char + text[i:])
    for edge in (f" {text}", f"{text}\n", f"{text}=", f"{text}==", text.upper(), text.lower()):
        with pytest.raises(links.BadToken):
            links.verify(KEYS, edge)


def test_every_bit_of_a_token_counts() -> None:
    raw = bytearray(base64.urlsafe_b64decode(links.sign(KEYS, links.Token("c", KEY, 3))))
    for i in range(len(raw)):
        for bit in range(8):
            changed = bytearray(raw)
            changed[i] ^= 1 << bit
            with pytest.raises(links.BadToken):
                links.verify(KEYS, base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("="))


def test_keys_rotate_the_first_signs_and_every_one_verifies() -> None:
    old = links.Keys((SECRET,))
    rotated = links.Keys.parse(f"new-secret-new-secret-new-secret-0\n{SECRET.decode()}\n")
    old_mail = links.sign(old, links.Token("u", KEY))
    assert links.verify(rotated, old_mail) == links.Token("u", KEY)  # mail sent before the rotation still works
    new_mail = links.sign(rotated, links.Token("u", KEY))
    assert new_mail != old_mail
    with pytest.raises(links.BadToken):
        links.verify(old, new_mail)  # signed with the new secret
    retired = links.Keys.parse("new-secret-new-secret-new-secret-0")
    with pytest.raises(links.BadToken):
        links.verify(retired, old_mail)  # once the old secret is dropped, its links stop working


@pytest.mark.parametrize("value", ["x", "short-secret", "a" * 31, f"{'a' * 40} tiny"])
def test_a_short_secret_is_refused(value: str) -> None:
    with pytest.raises(links.WeakSecret, match="too short"):
        links.Keys.parse(value)
    with pytest.raises(links.WeakSecret):
        links.Keys.parse("   \n")


def test_links_carry_the_base_url_and_signed_tokens() -> None:
    signed = links.Links("https://t.example.com/", KEYS)
    assert signed.unsubscribe(KEY).startswith("https://t.example.com/u/")
    assert links.verify(KEYS, signed.pixel(KEY).rsplit("/", 1)[1]) == links.Token("o", KEY)
    assert links.verify(KEYS, signed.click(KEY, 2).rsplit("/", 1)[1]) == links.Token("c", KEY, 2)


def _example() -> model.RuleSet:
    ruleset = validate.validate([str(ROOT / "rules")]).ruleset
    assert ruleset is not None and ruleset.settings.tracking is not None
    return ruleset


def test_the_secret_settings_name_signs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OUTREACH_SECRET", SECRET.decode())
    signed = sending.links_for(_example(), state_dir=tmp_path)
    assert signed is not None and signed.keys == KEYS
    assert not (tmp_path / links.STATE_SECRET_FILE).exists()
    monkeypatch.setenv("OUTREACH_SECRET", "tiny")
    with pytest.raises(links.WeakSecret):
        sending.links_for(_example(), state_dir=tmp_path)


def test_without_a_secret_the_daemon_creates_one_in_its_state_directory_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # fmt: skip
    monkeypatch.delenv("OUTREACH_SECRET", raising=False)
    state = tmp_path / "state"
    assert sending.links_for(_example()) is None  # no state directory given: no links (a RuleTest, a preview)
    with caplog.at_level(logging.INFO, logger="outreach"):
        first = sending.links_for(_example(), state_dir=state)
        second = sending.links_for(_example(), state_dir=state)
    assert first is not None and second is not None and first.keys == second.keys
    path = state / links.STATE_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(state.stat().st_mode) == 0o700
    assert len(first.keys.secrets[0]) >= links.MIN_SECRET_BYTES
    created = [r for r in caplog.records if "created in" in r.getMessage()]
    assert len(created) == 1 and r"OUTREACH_SECRET is not set" in created[0].getMessage()  # said once


def test_a_state_directory_made_for_the_secret_and_its_missing_parents_are_their_owner_s_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:  # fmt: skip
    monkeypatch.delenv("OUTREACH_SECRET", raising=False)
    old = os.umask(0o022)
    try:
        assert sending.links_for(_example(), state_dir=tmp_path / "var" / "lib" / "outreach") is not None
    finally:
        os.umask(old)
    for made in (tmp_path / "var", tmp_path / "var" / "lib", tmp_path / "var" / "lib" / "outreach"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made


def test_a_one_character_secret_in_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x\n", encoding="utf-8")
    tracking = model.Tracking(base_url="https://t.example.com", secret_file=str(tmp_path / "secret"))
    with pytest.raises(links.WeakSecret, match="1 bytes is too short"):
        links.configured_keys(tracking)


def test_the_state_directory_is_systemds_when_it_gives_one() -> None:
    assert links.state_directory({"STATE_DIRECTORY": "/var/lib/outreach:/var/lib/other"}) == Path("/var/lib/outreach")
    assert links.state_directory({}) == Path("var")


def test_a_secret_file_is_read_with_several_secrets(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(f"{'n' * 32}\n{'o' * 32}\n")
    tracking = model.Tracking("https://t.example.com", secret_file=str(tmp_path / "key"))
    assert links.configured_keys(tracking) == links.Keys((b"n" * 32, b"o" * 32))
    assert links.configured_keys(model.Tracking("https://t.example.com", secret_file=str(tmp_path / "no"))) is None
    assert links.configured_keys(model.Tracking("https://t.example.com")) is None
