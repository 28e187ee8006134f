"""The oracle of tests/test_mail_message.py: a message built with the standard `email` package's EmailMessage.

outreach.mail.message writes the bytes itself for speed; this is how it built them before (the same headers, parts
and checks), kept so that generated input can be built both ways and compared after parsing.
"""

# The oracle shares outreach's checks on header values (its private helpers), so that both refuse the same input.

from __future__ import annotations

import datetime as dt
import email.errors
import email.policy
import email.utils
import hashlib
from collections.abc import Mapping, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING

from outreach.mail import message

_VERBATIM = frozenset({"message-id", "in-reply-to", "references", "list-unsubscribe"})


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


def build_with_email_message(
    *,
    sender: message.Person | tuple[str, str],
    to: str,
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    date: dt.datetime,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    reply_to: str | None = None,
    extra_headers: Mapping[str, str] = message._NO_HEADERS,
    unsubscribe: tuple[str, str | None] | None = None,
) -> bytes:
    """What outreach.mail.message.build() wrote with `EmailMessage` before it wrote the bytes itself.

    text/plain, or multipart/alternative with text/plain and text/html when `html` is given, both UTF-8.
    `to` and `reply_to` are bare addresses; `sender` is (display name, address). A reply gives the message id it
    answers as `in_reply_to` and that message's own References as `references`. `unsubscribe` is
    (https URL, mailto URL or address or None): List-Unsubscribe and the RFC 8058 one-click List-Unsubscribe-Post.
    Raises message.HeaderError, naming the header, for a line break, NUL or control character in any header value and for
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
    msg["From"] = _oracle_address("From", sender_address, sender_name)
    msg["To"] = _oracle_address("To", to)
    if reply_to is not None:
        msg["Reply-To"] = _oracle_address("Reply-To", reply_to)
    msg["Subject"] = message._plain("Subject", subject)
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = message._message_id("Message-ID", message_id)
    if in_reply_to is not None:
        msg["In-Reply-To"] = message._message_id("In-Reply-To", in_reply_to)
    thread = [message._message_id("References", ref) for ref in dict.fromkeys(references) if ref != in_reply_to]
    if in_reply_to is not None:
        thread.append(in_reply_to)  # the parent comes last (RFC 5322 3.6.4)
    if thread:
        msg["References"] = message._words("References", thread)
    if unsubscribe is not None:
        url, mailto = unsubscribe
        targets = [message._uri("List-Unsubscribe", url, ("https://", "http://"))]
        if mailto:
            if not mailto.lower().startswith("mailto:"):
                mailto = f"mailto:{mailto}"
            targets.append(message._uri("List-Unsubscribe", mailto, ("mailto:",)))
        msg["List-Unsubscribe"] = message._words("List-Unsubscribe", [f"<{t}>" for t in targets], sep=", ")
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in extra_headers.items():
        if not message._FIELD_NAME.fullmatch(name):
            raise message.HeaderError(repr(name), "is not a header name")
        if name.lower() in message._RESERVED or name.lower().startswith(("content-", "resent-")):
            raise message.HeaderError(name, "is written by build() itself and cannot be an extra header")
        if not (value.isascii() and value.isprintable()):
            # our own headers carry ids and names; RFC 2047 words lose spaces around them in some readers
            raise message.HeaderError(name, "an extra header takes printable ASCII only")
        msg[name] = message._plain(name, value)

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


def _oracle_address(header: str, addr_spec: str, display_name: str | None = None) -> Address:
    message._plain(header, display_name or "")
    return Address(display_name or "", addr_spec=message._address(header, addr_spec))
