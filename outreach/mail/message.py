"""Building the bytes of one message: MIME parts, addresses, threading and List-Unsubscribe, safe from merge data.

A message is built once, when it is queued, and kept as bytes; the dispatcher only sends them.

The bytes are written here for the one shape outreach sends (text/plain, or multipart/alternative with text and
HTML, UTF-8, 7-bit clean), with the standard `email` package doing the encoding work: `email.header.Header` for
RFC 2047 encoded-words, `email.utils.formataddr` for display names, `email.utils.format_datetime` for the Date,
`email.headerregistry.Address` for addresses that are not plain dot-atoms, binascii for quoted-printable and
base64. Assembling them with `email.message.EmailMessage` gave the same message but cost about 1.5 ms each, most
of the time of a scheduler tick that queues 10,000 steps (bench/scheduler.py); this costs about 0.05 ms.
tests/test_mail_message.py parses every message back with the standard parser and compares it, on generated
input, with what `EmailMessage` builds from the same arguments.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.errors
import email.header
import email.utils
import functools
import hashlib
import re
import types
from collections.abc import Mapping, Sequence
from email.headerregistry import Address
from typing import Protocol

import idna

# Line breaks and every other control character but TAB, including the ones str.splitlines() breaks on:
# merge data that reaches a header may not start a header of its own. Lone surrogates cannot be encoded.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")
# printable ASCII but space, <, > and @, on each side of the @ of a message id
_MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f\x41-\x7e]+@[\x21-\x3b\x3d\x3f\x41-\x7e]+>")
_ID_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")  # RFC 5322 atext and dots
_URI = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")  # printable ASCII but space, < and >
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 ftext
# A dot-atom local part at an ASCII host name: the common address, valid as it is (the parser takes the rest).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
_FOLD_POINT = re.compile(r"(?= \S)")  # fold before a space that a non-space follows: no line is only white space
_MAX_LINE = 998  # RFC 5322 2.1.1, CRLF not counted
_WIDTH = 78  # where lines are folded when they can be (RFC 5322 2.1.1's "SHOULD")
_CRLF = "\r\n"

# Headers that build() writes itself, or that would change who receives the message or how it is parsed.
_RESERVED = frozenset(
    {"from", "to", "cc", "bcc", "sender", "reply-to", "return-path", "subject", "date", "message-id", "in-reply-to",
     "references", "list-unsubscribe", "list-unsubscribe-post", "mime-version"}
)  # fmt: skip

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


def new_message_id(domain: str, token: str) -> str:
    """`<token@domain>`; the caller passes a unique token (random hex) and the sender's or a configured domain."""
    if not _ID_PART.fullmatch(token):
        raise HeaderError("Message-ID", f"{token!r} cannot be the left part of a message id")
    return f"<{token}@{_id_domain(domain)}>"


@functools.lru_cache(maxsize=256)
def _id_domain(domain: str) -> str:
    domain = _ascii_domain("Message-ID", domain)
    if not _ID_PART.fullmatch(domain):
        raise HeaderError("Message-ID", f"{domain!r} cannot be the domain of a message id")
    return domain


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
    """The bytes of one message, CRLF line ends, 7-bit, ready for SMTP or a Maildir.

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

    head = [
        _mailbox("From", sender_address, sender_name),
        _text("To", _address("To", to)),
    ]
    if reply_to is not None:
        head.append(_text("Reply-To", _address("Reply-To", reply_to)))
    head.append(_text("Subject", _plain("Subject", subject)))
    head.append(f"Date: {_date(date, date.utcoffset())}{_CRLF}")
    head.append(_verbatim("Message-ID", _message_id("Message-ID", message_id)))
    if in_reply_to is not None:
        head.append(_verbatim("In-Reply-To", _message_id("In-Reply-To", in_reply_to)))
    thread = [_message_id("References", ref) for ref in dict.fromkeys(references) if ref != in_reply_to]
    if in_reply_to is not None:
        thread.append(in_reply_to)  # the parent comes last (RFC 5322 3.6.4)
    if thread:
        head.append(_verbatim("References", _words("References", thread)))
    if unsubscribe is not None:
        url, mailto = unsubscribe
        targets = [_uri("List-Unsubscribe", url, ("https://", "http://"))]
        if mailto:
            if not mailto.lower().startswith("mailto:"):
                mailto = f"mailto:{mailto}"
            targets.append(_uri("List-Unsubscribe", mailto, ("mailto:",)))
        head.append(_verbatim("List-Unsubscribe", _words("List-Unsubscribe", [f"<{t}>" for t in targets], sep=", ")))
        head.append(f"List-Unsubscribe-Post: List-Unsubscribe=One-Click{_CRLF}")
    for name, value in extra_headers.items():
        _extra_header_name(name)
        if not (value.isascii() and value.isprintable()):
            # our own headers carry ids and names; RFC 2047 words lose spaces around them in some readers
            raise HeaderError(name, "an extra header takes printable ASCII only")
        head.append(_text(name, value))
    head.append(f"MIME-Version: 1.0{_CRLF}")

    if html is None:
        return ("".join(head) + _part("plain", text)).encode("ascii")
    # One boundary made from the content keeps build() pure. "=_" never occurs in quoted-printable or base64,
    # and a 7-bit part could only contain the boundary line by inverting sha256.
    boundary = "=_" + hashlib.sha256("\0".join((message_id, text, html)).encode()).hexdigest()[:40]
    head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"{_CRLF}{_CRLF}')
    return "".join((
        *head, f"--{boundary}{_CRLF}", _part("plain", text), f"{_CRLF}--{boundary}{_CRLF}", _part("html", html),
        f"{_CRLF}--{boundary}--{_CRLF}",
    )).encode("ascii")  # fmt: skip


def header_problem(sender: Person, to: str, subject: str) -> str | None:
    """Why `build` would refuse a message from `sender` to `to` with this subject (its HeaderError, as text), or
    None. The engine's decision about a step asks this before anything is queued (outreach.engine.sequences.Facts),
    so a preview, a RuleTest and the daemon all block such a step the same way."""
    try:
        _mailbox("From", sender.email, sender.name)
        _address("To", to)
        _plain("Subject", subject)
    except HeaderError as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=256)  # every message names the same few
def _extra_header_name(name: str) -> None:
    """An extra header's name must be a header name that build() does not write itself."""
    if not _FIELD_NAME.fullmatch(name):
        raise HeaderError(repr(name), "is not a header name")
    if name.lower() in _RESERVED or name.lower().startswith(("content-", "resent-")):
        raise HeaderError(name, "is written by build() itself and cannot be an extra header")


@functools.lru_cache(maxsize=256)  # the messages of a tick share their Date
def _date(date: dt.datetime, offset: dt.timedelta | None) -> str:
    """RFC 5322 date-time; the offset is part of the key, as equal instants in other zones compare equal."""
    return email.utils.format_datetime(date)


def _part(subtype: str, body: str) -> str:
    """The Content-Type and -Transfer-Encoding headers, a blank line and the body of one text part.

    7bit when the body is ASCII in short lines, else the shorter of quoted-printable and base64 (as the
    standard `email` package chooses). Every line ends in CRLF, the last one too.
    """
    lines = body.encode("utf-8").splitlines()  # \n, \r and \r\n, as the email package splits
    data = b"\n".join(lines) + b"\n"
    if data.isascii() and max(map(len, lines), default=0) <= _WIDTH:
        cte, encoded = "7bit", data
    else:
        qp = binascii.b2a_qp(data, istext=True)
        if len(qp) <= _base64_length(len(data)):
            cte, encoded = "quoted-printable", qp
        else:
            cte, encoded = "base64", base64.encodebytes(data)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"{_CRLF}Content-Transfer-Encoding: {cte}{_CRLF}{_CRLF}'
        + encoded.decode("ascii").replace("\n", _CRLF)
    )


def _base64_length(size: int) -> int:
    """len(base64.encodebytes(data)) for `size` bytes of data, without encoding them: 4 characters for each 3
    bytes begun, in lines of 76 and a newline after each."""
    chars = (size + 2) // 3 * 4
    return chars + (chars + 75) // 76


def _fold(line: str) -> str | None:
    """`Name: value` folded before spaces to lines of 78 where it can be, or None if a line would pass 998.

    Unfolding (taking out the CRLFs) gives back exactly the line.
    """
    if len(line) <= _WIDTH:
        return line + _CRLF
    out: list[str] = []
    pieces = _FOLD_POINT.split(line)
    current = "".join(pieces[:2])  # the name and the first word stay on the first line
    for piece in pieces[2:]:
        if len(current) + len(piece) > _WIDTH:
            out.append(current)
            current = piece
        else:
            current += piece
    out.append(current)
    if max(map(len, out)) > _MAX_LINE:
        return None
    return _CRLF.join(out) + _CRLF


def _text(name: str, value: str) -> str:
    """A header of free text: as it is when printable ASCII, else (or when it looks encoded) RFC 2047 words."""
    if value.isascii() and "=?" not in value:
        folded = _fold(f"{name}: {value}")
        if folded is not None:
            return folded
    return f"{name}: {email.header.Header(value, 'utf-8', header_name=name).encode(linesep=_CRLF)}{_CRLF}"


def _verbatim(name: str, value: str) -> str:
    """Message ids and URLs reach the reader exactly as written: folded between them, never encoded.

    Threading and List-Unsubscribe parsers do not decode RFC 2047 words. `_words` made sure each one fits a line.
    """
    folded = _fold(f"{name}: {value}")
    assert folded is not None, "_words checked the length of each word"
    return folded


@functools.lru_cache(maxsize=1024)  # the senders of a batch are few
def _mailbox(header: str, addr_spec: str, display_name: str | None) -> str:
    """`Name <address>`, the name quoted or RFC 2047 encoded as it needs, or the bare address."""
    address = _address(header, addr_spec)
    name = _plain(header, display_name or "")
    if not name:
        return _text(header, address)
    if name.isascii() and "=?" not in name:
        folded = _fold(f"{header}: {email.utils.formataddr((name, address))}")
        if folded is not None:
            return folded
    words = email.header.Header(name, "utf-8", header_name=header).encode(linesep=_CRLF)
    return f"{header}: {words} <{address}>{_CRLF}"


def _plain(header: str, value: str) -> str:
    if _CONTROL.search(value):
        raise HeaderError(header, "has a line break, NUL or control character; merge data may not add headers")
    return value


@functools.lru_cache(maxsize=4096)  # the senders of a batch are few
def _address(header: str, addr_spec: str) -> str:
    """A bare address as it goes into a header, its domain in ASCII; HeaderError if it is not one address."""
    _plain(header, addr_spec)
    if len(addr_spec) > 254:  # RFC 5321 4.5.3.1.3: a path is at most 256 octets with its angle brackets
        raise HeaderError(header, f"{addr_spec[:40]!r}... is longer than an address may be (254 characters)")
    if _PLAIN_ADDRESS.fullmatch(addr_spec):
        return addr_spec
    try:
        parsed = Address(addr_spec=addr_spec)
    except (ValueError, IndexError, email.errors.MessageError) as exc:  # IndexError: the parser on "jo@"
        raise HeaderError(header, f"{addr_spec!r} is not a valid address ({exc or 'incomplete'})") from None
    if not parsed.username.isascii():
        raise HeaderError(header, f"{addr_spec!r} has a non-ASCII local part, which needs SMTPUTF8 (not sent)")
    return Address("", parsed.username, _ascii_domain(header, parsed.domain)).addr_spec


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
