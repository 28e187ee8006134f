"""Signed links: an opaque token with an HMAC-SHA256, so nobody can unsubscribe someone else (decision 9).

The token names the address and the enrollment (or campaign) it was sent for;
the web part verifies it before it shows the confirmation page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from outreach.mail import credentials
from outreach.rules import model


class BadToken(ValueError):
    """A token that was not made with our secret, or is damaged."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, email: str, source: str) -> str:
    """A token for `email`, sent by `source` (e.g. "e17" for enrollment 17)."""
    payload = f"{email.lower()}\n{source}".encode()
    mac = hmac.new(secret, payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(mac)}"


def verify(secret: bytes, token: str) -> tuple[str, str]:
    """(email, source) of a token we made; raises BadToken for anything else."""
    try:
        payload_text, mac_text = token.split(".", 1)
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (ValueError, TypeError) as exc:
        raise BadToken("a damaged token") from exc
    expected = hmac.new(secret, payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(mac, expected):
        raise BadToken("a token not signed by this installation")
    email, _, source = payload.decode("utf-8", "replace").partition("\n")
    return email, source


def secret(tracking: model.Tracking | None) -> bytes | None:
    """The signing secret named in Settings.tracking (secret_env or secret_file), or None when it is not set."""
    if tracking is None:
        return None
    try:
        value = credentials.read("the tracking secret", env=tracking.secret_env, file=tracking.secret_file)
    except credentials.MissingSecret:
        return None
    return value.strip().encode() if value and value.strip() else None


def unsubscribe_url(tracking: model.Tracking, key: bytes, email: str, source: str) -> str:
    return f"{tracking.base_url.rstrip('/')}/u/{sign(key, email, source)}"
