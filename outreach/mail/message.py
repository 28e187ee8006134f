"""Building the bytes of one message: MIME parts, addresses, threading and List-Unsubscribe, safe from merge data.

A message is built once, when it is queued, and kept as bytes; the dispatcher only sends them (building costs
about 0.5 ms a message, sending pre-built bytes is several times faster than building on the way out).
"""

from __future__ import annotations

import datetime as dt
import email.errors
import email.policy
import email.utils
import hashlib
import re
import types
from collections.abc import Mapping, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING, Protocol

import idna

# Line breaks and every other control character but TAB, including the ones str.splitlines() breaks on:
# merge data that reaches a header may not start a header of its own. Lone surrogates cannot be encoded.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")
# printable ASCII but space, <, > and @, on each side of the @ of a message id
_MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f\x41-\x7e]+@[\x21-\x3b\x3d\x3f\x41-\x7e]+>")
_ID_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")  # RFC 5322 atext and dots
_URI = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")  # printable ASCII but space, < and >
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 ftext
_MAX_LINE = 998  # RFC 5322 2.1.1, CRLF not counted

# Headers that build() writes itself, or that would change who receives the message or how it is parsed.
_RESERVED = frozenset(
    {"from", "to", "cc", "bcc", "sender", "reply-to", "return-path", "subject", "date", "message-id", "in-reply-to",
     "references", "list-unsubscribe", "list-unsubscribe-post", "mime-version"}
)  # fmt: skip

# Message ids and URLs must reach the reader exactly as written. The email package turns a long one into
# RFC 2047 encoded-words, which threading and List-Unsubscribe parsers do not decode, so these fold at spaces only.
_VERBATIM = frozenset({"message-id", "in-reply-to", "references", "list-unsubscribe"})

_NO_HEADERS: Mapping[str, str] = types.MappingProxyType({})


class HeaderError(ValueError):
    """A value that cannot go into a header: a line break, NUL or control character, or an invalid address."""

    def __init__(self, header: str, reason: str) -> None:
        super().__init__(f"{header} header: {reason}")
        self.header = header
        self.reason = reason


class Person(Protocol):
    """A display name and an address, such as a `model.User`."""

    @property
    def name(self) -> str | None: ...

    @property
    def email(self) -> str: ...


if TYPE_CHECKING:
    _EmailPolicy = email.policy.EmailPolicy[EmailMessage]
else:
    _EmailPolicy = email.policy.EmailPolicy


class _Policy(_EmailPolicy):
    """email.policy.SMTP (CRLF line ends) with 7-bit bodies and message ids and URLs folded only at spaces.

    7-bit bodies (quoted-printable or base64 when not plain ASCII with short lines) need no 8BITMIME on any
    relay, and no relay downgrades them on the way, which would break a DKIM signature.
    """

    def fold(self, name: str, value: str) -> str:
        if name.lower() in _VERBATIM:
            return _fold_at_spaces(name, str(value), self.max_line_length, self.linesep)
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in _VERBATIM:
            return self.fold(name, value).encode("ascii")
        return super().fold_binary(name, value)


_POLICY = _Policy(linesep="\r\n", cte_type="7bit")


def _fold_at_spaces(name: str, value: str, width: int | None, linesep: str) -> str:
    out = f"{name}:"
    length = len(out)
    for word in value.split():
        if width and length > len(name) + 1 and length + 1 + len(word) > width:
            out += linesep
            length = 0
        out += " " + word
        length += 1 + len(word)
    return out + linesep


def new_message_id(domain: str, token: str) -> str:
    """`<token@domain>`; the caller passes a unique token (a uuid's hex) and the sender's or a configured domain."""
    if not _ID_PART.fullmatch(token):
        raise HeaderError("Message-ID", f"{token!r} cannot be the left part of a message id")
    domain = _ascii_domain("Message-ID", domain)
    if not _ID_PART.fullmatch(domain):
        raise HeaderError("Message-ID", f"{domain!r} cannot be the domain of a message id")
    return f"<{token}@{domain}>"


def build(
    *,
    sender: Person | tuple[str, str],
    to: str,
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    date: dt.datetime,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    reply_to: str | None = None,
    extra_headers: Mapping[str, str] = _NO_HEADERS,
    unsubscribe: tuple[str, str | None] | None = None,
) -> bytes:
    """The bytes of one message, CRLF line ends, ready for SMTP or a Maildir.

    text/plain, or multipart/alternative with text/plain and text/html when `html` is given, both UTF-8.
    `to` and `reply_to` are bare addresses; `sender` is (display name, address). A reply gives the message id it
    answers as `in_reply_to` and that message's own References as `references`. `unsubscribe` is
    (https URL, mailto URL or address or None): List-Unsubscribe and the RFC 8058 one-click List-Unsubscribe-Post.
    Raises HeaderError, naming the header, for a line break, NUL or control character in any header value and for
    an address that does not parse; ValueError for a date without a time zone (and UnicodeEncodeError, a
    ValueError, for a body with a lone surrogate).
    """
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError(f"the Date of a message needs a time zone, got {date.isoformat()}")
    sender_name: str | None
    if isinstance(sender, tuple):
        sender_name, sender_address = sender
    else:
        sender_name, sender_address = sender.name, sender.email

    msg = EmailMessage(policy=_POLICY)
    msg["From"] = _address("From", sender_address, sender_name)
    msg["To"] = _address("To", to)
    if reply_to is not None:
        msg["Reply-To"] = _address("Reply-To", reply_to)
    msg["Subject"] = _plain("Subject", subject)
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = _message_id("Message-ID", message_id)
    if in_reply_to is not None:
        msg["In-Reply-To"] = _message_id("In-Reply-To", in_reply_to)
    thread = [_message_id("References", ref) for ref in dict.fromkeys(references) if ref != in_reply_to]
    if in_reply_to is not None:
        thread.append(in_reply_to)  # the parent comes last (RFC 5322 3.6.4)
    if thread:
        msg["References"] = _words("References", thread)
    if unsubscribe is not None:
        url, mailto = unsubscribe
        targets = [_uri("List-Unsubscribe", url, ("https://", "http://"))]
        if mailto:
            if not mailto.lower().startswith("mailto:"):
                mailto = f"mailto:{mailto}"
            targets.append(_uri("List-Unsubscribe", mailto, ("mailto:",)))
        msg["List-Unsubscribe"] = _words("List-Unsubscribe", [f"<{t}>" for t in targets], sep=", ")
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in extra_headers.items():
        if not _FIELD_NAME.fullmatch(name):
            raise HeaderError(repr(name), "is not a header name")
        if name.lower() in _RESERVED or name.lower().startswith(("content-", "resent-")):
            raise HeaderError(name, "is written by build() itself and cannot be an extra header")
        if not (value.isascii() and value.isprintable()):
            # our own headers carry ids and names; RFC 2047 words lose spaces around them in some readers
            raise HeaderError(name, "an extra header takes printable ASCII only")
        msg[name] = _plain(name, value)

    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
        for part in msg.iter_parts():
            del part["MIME-Version"]  # belongs to the message, not to its parts
        # The generator would pick a random boundary; one made from the content keeps build() pure. "=_" never
        # occurs in quoted-printable or base64, and a 7-bit part could only contain it by inverting sha256.
        digest = hashlib.sha256("\0".join((message_id, text, html)).encode()).hexdigest()
        msg.set_boundary(f"=_{digest[:40]}")
    return msg.as_bytes()


def _plain(header: str, value: str) -> str:
    if _CONTROL.search(value):
        raise HeaderError(header, "has a line break, NUL or control character; merge data may not add headers")
    return value


def _address(header: str, addr_spec: str, display_name: str | None = None) -> Address:
    _plain(header, addr_spec)
    _plain(header, display_name or "")
    try:
        parsed = Address(addr_spec=addr_spec)
    except (ValueError, IndexError, email.errors.MessageError) as exc:  # IndexError: the parser on "jo@"
        raise HeaderError(header, f"{addr_spec!r} is not a valid address ({exc or 'incomplete'})") from None
    return Address(display_name or "", parsed.username, _ascii_domain(header, parsed.domain))


def _ascii_domain(header: str, domain: str) -> str:
    """An internationalized domain as its IDNA 2008 A-label form (the email package would encode-word it)."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise HeaderError(header, f"{domain!r} is not a valid domain ({exc})") from None


def _message_id(header: str, value: str) -> str:
    if not _MSG_ID.fullmatch(value):
        _plain(header, value)
        raise HeaderError(header, f"{value!r} is not a message id like <token@domain>")
    return value


def _uri(header: str, value: str, schemes: tuple[str, ...]) -> str:
    _plain(header, value)
    if not value.lower().startswith(schemes) or not _URI.fullmatch(value):
        raise HeaderError(header, f"{value!r} is not an ASCII {' or '.join(s.rstrip(':/') for s in schemes)} URL without spaces")  # fmt: skip
    return value


def _words(header: str, words: Sequence[str], sep: str = " ") -> str:
    """Words the header folds between; each must fit on a line of its own."""
    for word in words:
        if len(header) + 2 + len(word) + len(sep) > _MAX_LINE:
            raise HeaderError(header, f"{word[:40]}... is longer than a header line may be ({_MAX_LINE} characters)")
    return sep.join(words)
