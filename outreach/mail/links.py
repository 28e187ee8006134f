"""Signed links: opaque tokens with an HMAC-SHA256, so nobody can unsubscribe or track someone else (decision 9).

A token names one message (by a random key kept with it in the outbox), what the link does (unsubscribe, open,
click) and, for a click, which link of the message; nothing else. The recipient's address is not in it: the web
side finds the message by its key and reads the address there. Layout, before URL-safe base64 without padding:

    version (1 byte, 1) | kind (1 byte: u, o, c) | message key (16 bytes) | link (2 bytes) | MAC (16 bytes)

The MAC is the first 16 bytes of HMAC-SHA256 over everything before it. Keys rotate: the first secret signs,
every secret verifies, so an old mail's links keep working while the new secret takes over.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import os
import re
import secrets as secrets_module
from pathlib import Path

from outreach import files
from outreach.mail import credentials
from outreach.rules import model

log = logging.getLogger("outreach")

VERSION = 1
UNSUBSCRIBE, OPEN, CLICK = "u", "o", "c"
KINDS = (UNSUBSCRIBE, OPEN, CLICK)
_PREFIX = {kind: bytes([VERSION]) + kind.encode() for kind in KINDS}
KEY_BYTES = 16
_MAC_BYTES = 16
_PAYLOAD_BYTES = 2 + KEY_BYTES + 2
TOKEN_LENGTH = 48  # 36 bytes in base64 without padding
_TOKEN = re.compile(r"[A-Za-z0-9_-]{48}")
MIN_SECRET_BYTES = 32
STATE_SECRET_FILE = "tracking-secret"


class BadToken(ValueError):
    """A token that was not made with our secret, or is damaged."""


class WeakSecret(ValueError):
    """A signing secret too short to be safe."""


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str  # u | o | c
    key: bytes  # the message's key (outbox.link_key is its hex)
    link: int = 0  # which link of the message, for a click


@dataclasses.dataclass(frozen=True)
class Keys:
    """The signing secrets: the first signs, all verify."""

    secrets: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.secrets:
            raise WeakSecret("no signing secret")
        for s in self.secrets:
            if len(s) < MIN_SECRET_BYTES:
                raise WeakSecret(
                    f"a tracking secret of {len(s)} bytes is too short: use at least {MIN_SECRET_BYTES} "
                    "(e.g. `openssl rand -base64 32`)"
                )

    @classmethod
    def parse(cls, value: str) -> Keys:
        """Secrets from one value: one or more, separated by white space or newlines (the newest first)."""
        return cls(tuple(part.encode() for part in value.split()))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.digest(secret, payload, hashlib.sha256)[:_MAC_BYTES]  # the one-shot C path: a step signs 1-3 links


def sign(keys: Keys, token: Token) -> str:
    if token.kind not in KINDS or len(token.key) != KEY_BYTES or not 0 <= token.link < 65536:
        raise ValueError(f"not a token: {token}")
    return _signed(keys.secrets[0], _PREFIX[token.kind], token.key, token.link)


def _signed(secret: bytes, prefix: bytes, key: bytes, link: int) -> str:
    payload = prefix + key + link.to_bytes(2, "big")
    return base64.urlsafe_b64encode(payload + _mac(secret, payload)).decode("ascii")  # 36 bytes: no padding


def verify(keys: Keys, text: str) -> Token:
    """The token `text` stands for; BadToken for anything we did not make, however little it differs."""
    if not _TOKEN.fullmatch(text):
        raise BadToken("a damaged token")
    raw = base64.urlsafe_b64decode(text)  # 48 characters are 36 bytes exactly: no padding, no spare bits
    payload, mac = raw[:_PAYLOAD_BYTES], raw[_PAYLOAD_BYTES:]
    good = False
    for secret in keys.secrets:  # every secret is tried, so the time does not say which one matched
        good |= hmac.compare_digest(mac, _mac(secret, payload))
    if not good:
        raise BadToken("a token not signed by this installation")
    kind = chr(payload[1])
    if payload[0] != VERSION or kind not in KINDS:
        raise BadToken("a token of an unknown version")
    return Token(kind, payload[2 : 2 + KEY_BYTES], int.from_bytes(payload[-2:], "big"))


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


@dataclasses.dataclass(frozen=True)
class Links:
    """The signed URLs one message carries, under Settings.tracking.base_url."""

    base_url: str
    keys: Keys
    opens: bool = True
    clicks: bool = True

    def _url(self, kind: str, key: bytes, link: int = 0) -> str:
        if len(key) != KEY_BYTES or not 0 <= link < 65536:
            raise ValueError(f"not a link of a message: {key!r} {link}")
        return f"{self.base_url.rstrip('/')}/{kind}/{_signed(self.keys.secrets[0], _PREFIX[kind], key, link)}"

    def unsubscribe(self, key: bytes) -> str:
        return self._url(UNSUBSCRIBE, key)

    def pixel(self, key: bytes) -> str:
        return self._url(OPEN, key)

    def click(self, key: bytes, link: int) -> str:
        return self._url(CLICK, key, link)


def configured_keys(tracking: model.Tracking) -> Keys | None:
    """The secrets Settings.tracking names (secret_env or secret_file), or None when it names none or the one it
    names is not set. WeakSecret when one is too short."""
    if tracking.secret_env is None and tracking.secret_file is None:
        return None
    try:
        value = credentials.read("the tracking secret", env=tracking.secret_env, file=tracking.secret_file)
    except credentials.MissingSecret:
        return None
    return Keys.parse(value) if value and value.strip() else None


def state_keys(state_dir: str | Path) -> tuple[Keys, bool]:
    """The secret the daemon keeps in its state directory when Settings names none: (keys, whether it was created
    now). Created once, readable by its owner only (0600)."""
    path = Path(state_dir) / STATE_SECRET_FILE
    created = False
    if not path.exists():
        files.private_directory(path.parent)  # var/ too, when it is made here
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets_module.token_urlsafe(48) + "\n")
            created = True
    return Keys.parse(path.read_text()), created


def state_directory(environ: dict[str, str] | None = None) -> Path:
    """Where the daemon keeps its own files: systemd's $STATE_DIRECTORY (StateDirectory=), else var/."""
    env = os.environ if environ is None else environ
    given = env.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(given) if given else Path("var")
