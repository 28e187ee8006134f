"""Per-message envelope senders (VERP): a bounce to `bounces+{token}@example.com` names the message that bounced.

With Settings `bounce_address: bounces+{token}@example.com`, each message goes out over SMTP with an envelope sender
(MAIL FROM, later the Return-Path) of its own: `{token}` becomes a token that names the message and is signed with
the same secrets as the tracking links (outreach/mail/links.py: the first signs, every one verifies). Mail systems
send bounces to the envelope sender, so a bounce that arrives at such an address says which message of ours it is
about even when its text names nothing we can read; a token we did not sign names nothing.

The token is 42 characters of lower-case base32 (RFC 4648, without padding; case-insensitive, as some mail systems
change the case of an address): the 16 random bytes of the message's Message-ID (`<32 hex digits@domain>`, as
outreach.mail.message writes them) and the first 10 bytes of HMAC-SHA256 over them. With a prefix such as
`bounces+`, the local part stays within the 64 characters RFC 5321 allows. A message whose Message-ID is not of
that form goes out with the plain sender.

The reverse: the 16 bytes are the Message-ID's left part; its right part is the domain of the address it was sent
from, so the caller asks the store about `<hex@domain>` for each sending domain of Settings (`message_ids`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import re
from collections.abc import Iterable
from pathlib import Path

from outreach.mail import links
from outreach.mail import message as mail_message
from outreach.rules import model

PLACEHOLDER = "{token}"
TOKEN_LENGTH = 42
_LABEL = b"outreach-verp-1"
_MAC_BYTES = 10
_KEY_BYTES = 16
_TOKEN = re.compile(r"[a-z2-7]{42}")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*<([0-9a-f]{32})@[^>\s]+>", re.I | re.M)


def sign(keys: links.Keys, key: bytes) -> str:
    """The token of a message's 16 random bytes."""
    if len(key) != _KEY_BYTES:
        raise ValueError(f"a message key has {_KEY_BYTES} bytes, not {len(key)}")
    raw = key + _mac(keys.secrets[0], key)
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def verify(keys: links.Keys, token: str) -> bytes | None:
    """The message's 16 bytes a token names; None for a token we did not sign (or a damaged one)."""
    token = token.lower()
    if not _TOKEN.fullmatch(token):
        return None
    try:
        raw = base64.b32decode(token.upper() + "=" * 6)
    except (binascii.Error, ValueError):
        return None
    key, mac = raw[:_KEY_BYTES], raw[_KEY_BYTES:]
    good = False
    for secret in keys.secrets:  # every secret is tried, so the time does not say which one matched
        good |= hmac.compare_digest(mac, _mac(secret, key))
    return key if good else None


def _mac(secret: bytes, key: bytes) -> bytes:
    return hmac.digest(secret, _LABEL + key, hashlib.sha256)[:_MAC_BYTES]


@dataclasses.dataclass(frozen=True)
class Verp:
    """Settings.bounce_address (`bounces+{token}@example.com`), the signing secrets, and the domains our Message-IDs
    end in (those of the users' and the organization's addresses)."""

    template: str
    keys: links.Keys
    domains: tuple[str, ...] = ()

    def sender_for(self, message: bytes) -> str | None:
        """The envelope sender of a message, from the Message-ID in its header; None when it has none of ours."""
        head = message[: message.find(b"\r\n\r\n") if b"\r\n\r\n" in message else 65536]
        found = _MESSAGE_ID.search(head)
        if found is None:
            return None
        return self.template.replace(PLACEHOLDER, sign(self.keys, bytes.fromhex(found.group(1).decode("ascii"))))

    def message_key(self, address: str) -> bytes | None:
        """The 16 bytes of the message an address of the form of `template` names, when its token is ours."""
        prefix, _, suffix = self.template.lower().partition(PLACEHOLDER)
        address = address.strip().strip("<>").lower()
        if not (address.startswith(prefix) and address.endswith(suffix)):
            return None
        return verify(self.keys, address[len(prefix) : len(address) - len(suffix)])

    def message_ids(self, addresses: Iterable[str]) -> tuple[str, ...]:
        """The Message-IDs the messages named by these addresses (where a bounce was delivered) can have."""
        out: list[str] = []
        for address in addresses:
            key = self.message_key(address)
            if key is None:
                continue
            for domain in self.domains:
                try:
                    out.append(mail_message.new_message_id(domain, key.hex()))
                except mail_message.HeaderError:
                    continue
        return tuple(dict.fromkeys(out))


def domains_of(settings: model.Settings) -> tuple[str, ...]:
    """The domains our Message-IDs end in: those of the users' addresses and of the organization's."""
    emails = [u.email for u in settings.users.values()]
    if settings.organization is not None:
        emails.append(settings.organization.email)
    return tuple(dict.fromkeys(e.rpartition("@")[2].lower() for e in emails if "@" in e))


def for_settings(settings: model.Settings, *, state_dir: str | Path | None = None) -> Verp | None:
    """The Verp of Settings.bounce_address, signed with the tracking links' secret (the one Settings.tracking names,
    else the one kept in the state directory, created there once); None without bounce_address. WeakSecret: a secret
    under 32 bytes."""
    if settings.bounce_address is None:
        return None
    keys = links.configured_keys(settings.tracking) if settings.tracking is not None else None
    if keys is None:
        keys, _created = links.state_keys(state_dir if state_dir is not None else links.state_directory())
    return Verp(settings.bounce_address, keys, domains_of(settings))
