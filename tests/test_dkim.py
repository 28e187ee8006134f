"""DKIM: Settings.dkim validated, keys read and checked, messages signed relaxed/relaxed and verified by dkimpy
against the TXT record `dns_record` computes, and left alone when no key signs for their domain."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re
from pathlib import Path

import dkim
import pytest
from dkim import crypto as dkim_crypto
from dkim.util import parse_tag_value

from outreach.app import doctor
from outreach.mail import credentials, message
from outreach.mail import dkim as mail_dkim
from outreach.rules import model, validate
from outreach.rules.diagnostics import Code
from tests import dkim_keys

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


def rsa_key(domain: str = "example.com", selector: str = "s1", *, bits: int = 2048) -> mail_dkim.Key:
    return mail_dkim.parse_key(domain, selector, dkim_keys.rsa_pem(bits))


def ed25519_key(domain: str = "example.com", selector: str = "ed1") -> mail_dkim.Key:
    return mail_dkim.parse_key(domain, selector, dkim_keys.ed25519_pem())


def verifies(signed: bytes, *keys: mail_dkim.Key) -> bool:
    return bool(dkim.verify(signed, dnsfunc=dkim_keys.dns(dict(mail_dkim.dns_record(k) for k in keys))))


def build(**changes: object) -> bytes:
    args: dict[str, object] = {
        "sender": ("Anna Berger", "anna@example.com"), "to": "jo@example.org", "subject": "Quick question, Jo",
        "text": "Hi Jo,\n\ndo you have a minute?\n\nAnna", "html": "<p>Hi Jo,</p><p>do you have a minute?</p>",
        "message_id": "<0123456789abcdef@example.com>", "date": NOW,
        "in_reply_to": "<parent@example.com>", "references": ["<root@example.com>"],
        "extra_headers": {"X-Outreach-Enrollment": "7", "X-Outreach-Step": "nudge"},
        "unsubscribe": ("https://t.example.com/u/AbC", None),
    }  # fmt: skip
    args.update(changes)
    return message.build(**args)  # type: ignore[arg-type]


def signature(signed: bytes) -> dict[bytes, bytes]:
    head = signed.split(b"\r\n\r\n", 1)[0]
    (value,) = re.findall(rb"^DKIM-Signature:(.*?)\r\n(?=\S)", head, re.S | re.M)
    tags: dict[bytes, bytes] = parse_tag_value(value)
    return tags


# --- signing and verifying ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [rsa_key, ed25519_key], ids=["rsa", "ed25519"])
def test_a_signed_message_verifies_with_dkimpy_against_the_published_record(make: object) -> None:
    key = make()  # type: ignore[operator]
    original = build()
    signed = mail_dkim.Signer([key]).sign(original, "example.com", now=NOW)
    assert signed.endswith(original) and signed.startswith(b"DKIM-Signature: ")  # prepended, nothing else changed
    assert verifies(signed, key)
    tags = signature(signed)
    assert tags[b"a"] == key.algorithm.encode() and tags[b"c"] == b"relaxed/relaxed"
    assert (tags[b"d"], tags[b"s"], tags[b"t"]) == (
        b"example.com",
        key.selector.encode(),
        str(int(NOW.timestamp())).encode(),
    )
    other = mail_dkim.parse_key("example.com", key.selector, dkim_keys.rsa_pem(1024, seed=2))
    assert not verifies(signed, other)  # the signature is the key's: another key's record fails it


def test_the_signed_headers_are_the_readers_and_from_is_signed_once_more_than_it_occurs() -> None:
    signed = mail_dkim.Signer([rsa_key()]).sign(build(reply_to="sales@example.com"), "example.com", now=NOW)
    names = [n.strip() for n in signature(signed)[b"h"].decode().split(":")]
    assert names == ["from", "reply-to", "to", "subject", "date", "message-id", "in-reply-to", "references",
                     "list-unsubscribe", "list-unsubscribe-post", "mime-version", "content-type", "from"]  # fmt: skip
    plain = mail_dkim.Signer([rsa_key()]).sign(build(html=None, unsubscribe=None, in_reply_to=None, references=(),
                                                     extra_headers={"Auto-Submitted": "auto-generated"}),
                                               "example.com")  # fmt: skip
    tags = signature(plain)
    names = [n.strip() for n in tags[b"h"].decode().split(":")]
    assert names == ["from", "to", "subject", "date", "message-id", "auto-submitted", "mime-version", "content-type",
                     "content-transfer-encoding", "from"]  # fmt: skip
    assert b"t" not in tags  # no time given: no t=, and nothing read the clock


def test_relaxed_canonicalization_survives_refolding_and_white_space_but_not_a_changed_word() -> None:
    key = rsa_key()
    signed = mail_dkim.Signer([key]).sign(build(subject="A subject that a relay may fold somewhere"), "example.com")
    refolded = signed.replace(b"Subject: A subject that a relay may fold somewhere",
                              b"Subject:   A subject that a relay\r\n\t  may fold   somewhere  ")  # fmt: skip
    assert refolded != signed and verifies(refolded, key)
    spaced = signed.replace(b"do you have a minute?\r\n", b"do  you\thave a minute?   \r\n")  # body white space
    assert spaced != signed and verifies(spaced, key)
    assert not verifies(signed.replace(b"somewhere", b"elsewhere"), key)
    assert not verifies(signed.replace(b"\r\nTo: jo@example.org", b"\r\nTo: eve@example.net"), key)
    second_from = signed.replace(b"\r\nFrom: ", b"\r\nFrom: Eve <eve@example.com>\r\nFrom: ", 1)
    assert not verifies(second_from, key)  # From is oversigned: an added From breaks the signature


def test_mail_from_a_domain_without_a_key_is_unchanged_and_a_subdomain_signs_with_its_parent() -> None:
    key = rsa_key()
    signer = mail_dkim.Signer([key])
    original = build(sender=("Ben", "ben@example.net"))
    assert signer.sign(original, "example.net", now=NOW) is original
    assert signer.key_for("example.net") is None and signer.key_for("com") is None
    assert signer.key_for("notexample.com") is None  # a parent domain is a whole label away, not a suffix
    sub = build(sender=("Eu", "eu@eu.Example.COM"))
    signed = signer.sign(sub, "eu.Example.COM.", now=NOW)
    assert signature(signed)[b"d"] == b"example.com" and verifies(signed, key)
    own = rsa_key("eu.example.com", "s2", bits=1024)
    both = mail_dkim.Signer([key, own])
    assert both.key_for("eu.example.com") is own and both.key_for("mail.eu.example.com") is own
    assert both.key_for("example.com") is key


def test_an_internationalized_sender_domain_finds_the_key_of_its_a_label_form() -> None:
    key = rsa_key("xn--bcher-kva.example", "s1", bits=1024)
    signer = mail_dkim.Signer([key])
    assert signer.key_for("bücher.example") is key
    signed = signer.sign(build(sender=("Büro", "info@bücher.example")), "bücher.example", now=NOW)
    assert verifies(signed, key)


@pytest.mark.parametrize(
    ("subject", "name"),
    [
        ("Grüße aus Köln — ünïcödé ✓ " * 6, 'Zoë "the boss" Müller'),
        ("; b=AAAA; h=to; d=evil.example; DKIM-Signature: v=1", "=?utf-8?q?looks_encoded?="),
        ("tab\there and a very long word " + "x" * 300, "O'Brien, Anna (Sales) <not@this>"),
        ("   leading and trailing spaces   ", ""),
    ],
)
def test_hostile_merge_data_in_headers_signs_and_verifies(subject: str, name: str) -> None:
    key = rsa_key()
    signed = mail_dkim.Signer([key]).sign(build(subject=subject, sender=(name, "anna@example.com")), "example.com",
                                          now=NOW)  # fmt: skip
    assert verifies(signed, key)
    tags = signature(signed)
    assert tags[b"d"] == b"example.com" and b"subject" in tags[b"h"]


# --- keys and their DNS record ---------------------------------------------------------------------------------


def test_the_dns_record_is_computed_from_the_private_key() -> None:
    key = rsa_key()
    name, value = mail_dkim.dns_record(key)
    assert name == "s1._domainkey.example.com"
    assert value.startswith("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")  # SPKI of RSA-2048
    public = dkim_crypto.parse_public_key(base64.b64decode(value.split("p=")[1]))
    n, e, *_ = dkim_keys.rsa_numbers(2048)
    assert (public["modulus"], public["publicExponent"]) == (n, e)
    zone = mail_dkim.zone_text(value)
    parts = re.findall(r'"([^"]*)"', zone)
    assert len(parts) == 2 and all(len(p) <= 255 for p in parts) and "".join(parts) == value
    ed_name, ed_value = mail_dkim.dns_record(ed25519_key())
    assert ed_name == "ed1._domainkey.example.com" and ed_value.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(ed_value.split("p=")[1])) == 32


def test_pkcs1_pkcs8_and_dknewkey_forms_are_the_same_key() -> None:
    pkcs8, pkcs1 = (mail_dkim.parse_key("example.com", "s1", dkim_keys.rsa_pem(2048, pkcs8=f)) for f in (True, False))
    assert pkcs8.public == pkcs1.public and pkcs8.bits == 2048
    crlf = mail_dkim.parse_key("example.com", "s1", dkim_keys.rsa_pem(2048).replace("\n", "\r\n"))
    assert crlf.public == pkcs8.public
    seed = base64.b64encode(b"outreach test: an Ed25519 key!!!").decode()  # dknewkey's Ed25519 form
    assert mail_dkim.parse_key("example.com", "ed1", seed).public == ed25519_key().public


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not a key at all", "is not a PEM private key"),
        ("-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----", "is a public key, not a private key"),
        ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBO\n-----END ENCRYPTED PRIVATE KEY-----", "is encrypted"),
        ("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nMIIB\n-----END RSA PRIVATE KEY-----", "is encrypted"),
        ("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----", "not valid base64"),
        ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----", "is a ec private key, not"),
        ("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----",
         "is neither an RSA nor an Ed25519 private key"),
    ],
)  # fmt: skip
def test_what_is_not_a_usable_key_is_refused_naming_the_domain(text: str, says: str) -> None:
    with pytest.raises(mail_dkim.KeyInvalid) as caught:
        mail_dkim.parse_key("example.com", "s1", text)
    assert str(caught.value).startswith("the DKIM key of example.com")
    assert says in str(caught.value)
    assert isinstance(caught.value, credentials.MissingSecret)  # refused wherever a missing secret is


def test_a_short_or_damaged_rsa_key_is_refused() -> None:
    with pytest.raises(mail_dkim.KeyInvalid, match="has 512 bits: receivers ignore RSA keys under 1024 bits"):
        mail_dkim.parse_key("example.com", "s1", dkim_keys.rsa_pem(512))
    n, e, d, p, q = dkim_keys.rsa_numbers(1024)
    damaged = dkim_keys.rsa_der(n, e, d + 2, p, q)
    pem = "-----BEGIN RSA PRIVATE KEY-----\n" + base64.b64encode(damaged).decode() + "\n-----END RSA PRIVATE KEY-----"
    with pytest.raises(mail_dkim.KeyInvalid, match="the RSA key is damaged"):
        mail_dkim.parse_key("example.com", "s1", pem)


def test_keys_are_read_once_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dkim.pem"
    path.write_text(dkim_keys.rsa_pem(1024), encoding="utf-8")
    monkeypatch.setenv("TEST_DKIM_KEY", dkim_keys.ed25519_pem())
    settings = model.Settings(model.Source("", 0, ""), dkim=(
        model.DkimKey("example.com", "s1", private_key_file=str(path)),
        model.DkimKey("example.org", "ed1", private_key_env="TEST_DKIM_KEY"),
    ))  # fmt: skip
    signer = mail_dkim.signer_for(settings)
    assert signer is not None
    path.unlink()
    monkeypatch.delenv("TEST_DKIM_KEY")
    signed = signer.sign(build(), "example.com")  # the key was read when the signer was built
    assert verifies(signed, signer.keys["example.com"])
    assert signer.keys["example.org"].algorithm == "ed25519-sha256"
    assert mail_dkim.signer_for(model.Settings(model.Source("", 0, ""))) is None
    with pytest.raises(credentials.MissingSecret, match=f"the DKIM key of example.com: cannot read {path}"):
        mail_dkim.signer_for(settings)
    with pytest.raises(credentials.MissingSecret, match="the environment variable TEST_DKIM_KEY is not set"):
        mail_dkim.load_key(settings.dkim[1])


# --- Settings.dkim -----------------------------------------------------------------------------------------------


def settings_with(dkim_yaml: str) -> validate.Result:
    text = "kind: Settings\norganization: {name: Example, email: sales@example.com}\ndkim:\n" + dkim_yaml
    return validate.validate_texts({"rules/settings.yaml": text})


def test_settings_dkim_becomes_the_model_with_domains_in_lower_case() -> None:
    result = settings_with("  - {domain: Example.COM, selector: S2026, private_key_file: /run/credentials/x/dkim}\n"
                           "  - {domain: eu.example.com, selector: s1.eu, private_key_env: DKIM_EU}\n")  # fmt: skip
    assert result.errors == []
    assert result.ruleset is not None
    assert result.ruleset.settings.dkim == (
        model.DkimKey("example.com", "s2026", private_key_file="/run/credentials/x/dkim"),
        model.DkimKey("eu.example.com", "s1.eu", private_key_env="DKIM_EU"),
    )
    assert result.ruleset.settings.dkim[1].record_name == "s1.eu._domainkey.eu.example.com"


@pytest.mark.parametrize(
    ("entries", "code", "where", "says"),
    [
        ("  - {domain: example.com, selector: s1, private_key: MIIEv}\n", Code.SECRET_INLINE, (4, 41),
         "secrets never go in rule files: use private_key_env (an environment variable) or private_key_file"),
        ("  - {domain: example.com, selector: s1, private_key_file: /a}\n"
         "  - {domain: EXAMPLE.com, selector: s2, private_key_file: /b}\n", Code.DKIM_DOMAIN_DUPLICATE, (5, 14),
         "domain 'example.com' has a DKIM key already (dkim[0])"),
        ("  - {domain: example.com, selector: s1}\n", Code.SCHEMA_REQUIRED, (4, 5),
         "a DKIM key needs private_key_file or private_key_env"),
        ("  - {domain: example.com, selector: s1, private_key_file: /a, private_key_env: K}\n", Code.SCHEMA_ONE_OF,
         (4, 5), "give the private key one way"),
        ("  - {domain: example, selector: s1, private_key_file: /a}\n", Code.SCHEMA_FORMAT, (4, 14),
         "a domain name such as example.com"),
        ("  - {domain: exa_mple.com, selector: s1, private_key_file: /a}\n", Code.SCHEMA_FORMAT, (4, 14),
         "a domain name such as example.com"),
        ("  - {domain: example.com, selector: 's 1', private_key_file: /a}\n", Code.SCHEMA_FORMAT, (4, 37),
         "DNS labels of letters, digits and -"),
        ("  - {domain: example.com, private_key_file: /a}\n", Code.SCHEMA_REQUIRED, (4, 5),
         "missing required key 'selector'"),
    ],
)  # fmt: skip
def test_settings_dkim_errors_are_reported_where_they_are_written(
    entries: str, code: Code, where: tuple[int, int], says: str
) -> None:  # fmt: skip
    result = settings_with(entries)
    assert result.ruleset is None
    found = [(d.code, d.line, d.column) for d in result.errors]
    assert (code, *where) in found, [str(d) for d in result.errors]
    assert any(says in d.message for d in result.errors if d.code is code), [d.message for d in result.errors]


# --- outreach doctor's findings ------------------------------------------------------------------------------------


def test_doctor_warns_of_a_short_key_and_of_senders_no_key_signs_for(tmp_path: Path) -> None:
    path = tmp_path / "dkim.pem"
    path.write_text(dkim_keys.rsa_pem(1024), encoding="utf-8")
    users = {u: model.User(u, u.title(), f"{u}@{domain}") for u, domain in
             (("anna", "example.com"), ("eu", "EU.example.com"), ("cara", "other.example"))}  # fmt: skip
    settings = model.Settings(model.Source("", 0, ""), users=users,
                              organization=model.Organization("Example", "sales@example.org"),
                              dkim=(model.DkimKey("example.com", "s1", private_key_file=str(path)),))  # fmt: skip
    found = [(f.level, f.detail) for f in doctor.check_dkim(settings) if f.what == "dkim"]
    assert found[0][0] == "ok" and found[0][1].startswith('example.com: selector s1, publish TXT '
                                                          's1._domainkey.example.com "v=DKIM1; k=rsa; p=MIGfMA0G')  # fmt: skip
    assert found[1:] == [
        ("warning", "example.com: the RSA key has 1024 bits; receivers may stop trusting keys under 2048 bits"),
        ("warning", "mail from other.example is not signed: Settings.dkim has no key for it or a parent domain"),
        ("warning", "mail from example.org is not signed: Settings.dkim has no key for it or a parent domain"),
    ]  # eu.example.com is signed by example.com's key
    assert doctor.check_dkim(dataclasses.replace(settings, dkim=())) == []  # no DKIM: nothing to say
