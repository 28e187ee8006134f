"""Classifying one message read from a mailbox: a reply, an auto-reply, a bounce, a delay warning, or not ours.

Pure functions: bytes in, an `Inbound` out; no I/O, no clock. It never raises on any input: a message it cannot
read is `ignored` with the reason (the caller logs it).

Two steps, so that a caller with an async store can look things up in between: `read(data)` says what the
message says about itself (`Facts`: its ids, sender, subject, bounce report, automatic-mail marker), and
`decide(facts, known)` asks a `Known` which of those ids we sent and what we sent to the sender.
`classify(data, known)` does both. `Sent` is a `Known` made from what the caller looked up beforehand
(`Facts.candidate_ids` and `Facts.from_address`).

The rules, in order; the first that applies wins:

1. Nothing readable (no header fields, or the parser gave up) → `ignored`.
2. A copy of our own mail (its own Message-ID is one we sent: a Bcc to the rep) → `ignored`; a nudge sent as
   a reply would otherwise look like a reply to our intro.
3. A bounce: an RFC 3464 delivery status notification (a `message/delivery-status` part, as in
   `multipart/report; report-type=delivery-status`), read per recipient: `Action`, `Status`, `Diagnostic-Code`,
   `Original-Recipient` / `Final-Recipient`. Or a non-standard bounce: from a mail system (MAILER-DAEMON,
   postmaster, Exchange's system sender, an empty Return-Path or X-Failed-Recipients) with a bounce subject or
   the wording of Exim, qmail, Exchange, Gmail, Postfix or Sendmail; the failed addresses and the status are
   then taken from its text. A permanent failure (5.x.x) of any recipient → `bounce`; only `Action: delayed`
   or 4.x.x → `delayed`, a warning. A DSN that reports only deliveries → `ignored`. Checked before the
   auto-reply rules: bounces come with an empty Return-Path and often `Auto-Submitted`.
4. Automatic mail: a read receipt (RFC 8098), `Auto-Submitted` other than `no` (RFC 3834), `X-Autoreply`,
   `X-Autorespond`, `Precedence: auto_reply|bulk|junk`, `X-Auto-Response-Suppress`, an empty Return-Path, or
   a subject that starts like an out-of-office in English, German, French, Spanish, Italian or Japanese. It is
   an `auto_reply` when it is about our mail (it references one of our Message-IDs, or comes from an address
   we write to), else `ignored`: a newsletter with `Precedence: bulk` is no auto-reply to anything of ours.
   Checked before replies: an out-of-office that quotes our message is still an auto-reply.
5. A reply: `In-Reply-To` or `References` names one of our Message-IDs → `reply`.
6. A reply by subject (for clients that drop the threading headers): from an address we write to, and the
   subject is reply prefixes (`Re:`, `AW:`, `SV:`, `Antw:`, `Réf. :`, `R:`, `返信:`...) before the subject of
   mail we sent to that address → `reply`.
7. Anything else → `ignored`.

"An address we write to" is one for which `Known.sent_subjects_to` is not empty: an active enrollment of the
mailbox's user.

Choices: only Message-IDs (random, so unguessable) tie a message to ours; our `X-Outreach-*` headers in a
quoted original are not trusted, as anyone could write them. A bounce is a bounce whether or not we can tell
which message it was about, since many carry no copy of it: `original_message_id` is the Message-ID of the
message that bounced when the report carries it, and `our_message_ids` says whether it is ours. `Action: failed`
with a 4.x.x status (an MTA that gave up after days of retrying) is `delayed`: the message did not arrive, but
the address is not shown to be bad. A non-standard bounce gives every failed address it names the one status
found in its text. Header values are hostile: every string in the result is one line without control
characters, and at most 100 ids of a message are looked up.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email
import email.message
import email.utils
import enum
import html
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from typing import Protocol

_MAX_TEXT = 64 * 1024  # of each text part searched for bounce wording
_MAX_PARTS = 200
_MAX_IDS = 100  # ids asked about per message: a hostile References may list thousands
_MAX_REASON = 200
_MAX_SUBJECT = 998
_MAX_DIAGNOSTIC = 300

# Line breaks, other control characters, zero-width and bidirectional marks, and lone surrogates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]+")
_FOLD = re.compile(r"\r?\n|\r")
_RAW_8BIT = re.compile("[\udc80-\udcff]")  # bytes over 127 in a header, which the parser keeps as surrogates
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
# No @ in the part before the @, and a bare one starts after a separator: linear time on hostile values.
_ANGLE_ADDR_SPEC = re.compile(r"<\s*([^<>\s@]+@[^<>\s]+?)\s*>")
_BARE_ADDR_SPEC = re.compile(r"(?<![^\s<>()\[\]\",;:])[^\s<>()\[\]\",;:@]+@[^\s<>()\[\]\",;:]+")
# The header fields the classifier reads.
_READ = frozenset(
    {"from", "to", "subject", "message-id", "in-reply-to", "references", "return-path", "x-failed-recipients",
     "auto-submitted", "x-autoreply", "x-autorespond", "precedence", "x-auto-response-suppress"}
)  # fmt: skip
_ID = re.compile(r"<([^<>]*)>")
_BARE_ID = re.compile(r"(?<![^\s<>,;\"()\[\]])[^\s<>,;\"()\[\]@]+@[^\s<>,;\"()\[\]]+")
_ID_CHARS = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")  # printable ASCII but space, < and >
_ADDRESS = r"[^\s<>@()\[\]\"',;:]+@[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?"
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_SMTP_AND_STATUS = re.compile(r"(?<!\d)([245]\d\d)[ \-]#?([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
_SMTP_CODE = re.compile(r"(?:^|[:#(]|said:)[ \t]*([45][0-5]\d)(?=[ \t\-]|$)", re.M)
_COMMENT = re.compile(r"\([^()]*\)")

_DAEMONS = frozenset(
    {"mailer-daemon", "mailerdaemon", "mailer_daemon", "mail-daemon", "postmaster", "double-bounce", "mdaemon"}
)
_SYSTEM_NAME = re.compile(r"mail delivery (?:system|subsystem)|mailer[- ]daemon|microsoft outlook", re.I)

# Wording that only a mail system writes, with the software that writes it.
_SIGNATURES = {
    "this message was created automatically by mail delivery software": "Exim",
    "this is the qmail-send program": "qmail",
    "delivery has failed to these recipients or groups": "Exchange",
    "your message couldn't be delivered": "Exchange",
    "your message wasn't delivered": "Exchange",
    "the following recipient(s) could not be reached": "Exchange",
    "fehler bei der zustellung an diese empfänger oder gruppen": "Exchange",
    "la remise a échoué pour ces destinataires ou groupes": "Exchange",
    "delivery to the following recipient failed permanently": "Gmail",
    "delivery to the following recipient has been delayed": "Gmail",
    "delivery to the following recipients failed permanently": "Gmail",
    "this is the mail system at host": "Postfix",
    "the following addresses had permanent fatal errors": "Sendmail",
    "the following addresses had transient non-fatal errors": "Sendmail",
}
_SIGNATURE = re.compile("|".join(re.escape(s) for s in _SIGNATURES), re.I)
_BOUNCE_SUBJECTS = {
    "mail delivery failed": "Exim",
    "warning: message": "Exim",
    "undelivered mail returned to sender": "Postfix",
    "delayed mail (still being retried)": "Postfix",
    "undeliverable": "Exchange",
    "delivery delayed": "Exchange",
    "unzustellbar": "Exchange",
    "non remis": "Exchange",
    "no se puede entregar": "Exchange",
    "non recapitabile": "Exchange",
    "配信不能": "Exchange",
    "delivery status notification": "Gmail",
    "failure notice": "qmail",
    "returned mail": "Sendmail",
    "warning: could not send message": "Sendmail",
    "mail delivery failure": "MTA",
    "delivery failure": "MTA",
    "nondeliverable": "MTA",
    "non-delivery": "MTA",
    "mail system error": "MTA",
}
_BOUNCE_SUBJECT = re.compile(r"^\W*(" + "|".join(re.escape(s) for s in _BOUNCE_SUBJECTS) + ")", re.I)
_DELAY = re.compile(
    r"has not yet been delivered|has been delayed|delivery (?:is )?delayed|(?:will|to) be retried|still being "
    r"retried|will (?:continue to )?(?:re)?try|\(delay\)|^[^\w\n]{0,9}warning: message|^[^\w\n]{0,9}delayed "
    r"mail|warning: could not send|no action is required on your part|transient non-fatal",
    re.I | re.M,
)
# Where a bounce starts quoting the original message: its text after this is not the mail system's.
_ORIGINAL_MARKER = re.compile(
    r"^[ \t]*(?:[-=_]{2,12}[^\n]{0,60}?(?:copy of (?:the|your) message|original message|message headers|below this "
    r"line|undelivered message|returned message)|original message headers:)",
    re.I | re.M,
)
_LONE_ADDRESS = re.compile(rf"^[ \t]*<?({_ADDRESS})>?:?(?:[ \t]+(?:\([^()\n]*\)|on[ \t][^\n]*))?[ \t]*$", re.M)
_NAMED_ADDRESS = re.compile(rf"^[^\n()<>@:]{{1,80}}\(({_ADDRESS})\)[ \t]*$", re.M)
_ANGLE_ADDRESS = re.compile(rf"^[ \t]*<({_ADDRESS})>:", re.M)
_MESSAGE_TO = re.compile(rf"(?:message to|delivery to|deliver(?: your message)? to)[ \t]+<?({_ADDRESS})>?", re.I)
_QUOTED_MESSAGE_ID = re.compile(r"^[ \t>]*Message-ID:[ \t]*(?:\r?\n[ \t]+)?(<[^<>\s]+>)", re.I | re.M)
_TAG = re.compile(r"<[^<>]*>")
# The parts in which a bounce carries a copy of the original message or of its header.
_ORIGINALS = frozenset({"message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"})
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")

_AUTO_SUBJECT = re.compile(
    r"^\W*(automatic reply|auto[- ]?reply|auto[- ]response|out of (?:the )?office|abwesenheitsnotiz|automatische "
    r"antwort|abwesend|réponse automatique|reponse automatique|absence du bureau|absent du bureau|respuesta "
    r"automática|respuesta automatica|fuera de la oficina|risposta automatica|fuori sede|fuori ufficio|自動応答|"
    r"自動返信|不在)",
    re.I,
)
_AUTO_PRECEDENCE = frozenset({"auto_reply", "auto-reply", "bulk", "junk"})
_NO = frozenset({"no", "false", "0", "none", ""})
_REPLY_PREFIX = re.compile(
    r"^(?:\[[^\[\]]{0,40}\]\s*)*(?:re|aw|sv|vs|antw|antwort|réf|ref|rif|r|res|odp|ynt|atb|回复|回覆|答复|返信)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*\.?\s*:\s*",
    re.I,
)
_TAGS = re.compile(r"^(?:\[[^\[\]]{0,40}\]\s*)+")


class Kind(enum.StrEnum):
    """What an inbound message is to us."""

    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"  # a permanent failure: the address does not take mail
    DELAYED = "delayed"  # a transient failure: a warning only
    IGNORED = "ignored"


class Known(Protocol):
    """What the caller's store knows about the mail this mailbox's user sent."""

    def is_sent_message_id(self, message_id: str) -> bool:
        """Whether `message_id` (`<token@domain>`) is the Message-ID of a message we sent."""
        ...

    def sent_subjects_to(self, address: str) -> Collection[str]:
        """The subjects of our mail to `address` (lower case) in its active enrollments with this mailbox's user;
        empty when it has none."""
        ...


@dataclasses.dataclass(frozen=True)
class Sent:
    """A `Known` from lookups done beforehand: which of `Facts.candidate_ids` we sent, and the subjects of our mail
    to `Facts.from_address` (keys in lower case)."""

    message_ids: frozenset[str] = frozenset()
    subjects: Mapping[str, Collection[str]] = dataclasses.field(default_factory=dict)

    def is_sent_message_id(self, message_id: str) -> bool:
        return message_id in self.message_ids

    def sent_subjects_to(self, address: str) -> Collection[str]:
        return self.subjects.get(address.lower(), ())


@dataclasses.dataclass(frozen=True)
class BouncedRecipient:
    """One address a bounce or delay warning reports on.

    address: the address the message was sent to (Original-Recipient when the report gives it, else
    Final-Recipient), lower case. final_recipient: the Final-Recipient, which differs after an alias or forward.
    action: failed or delayed. status: like 5.1.1, or "" when the report has none. permanent: a 5.x.x failure
    (a failed action without a 4.x.x status).
    """

    address: str
    final_recipient: str
    action: str
    status: str
    diagnostic: str
    permanent: bool


@dataclasses.dataclass(frozen=True)
class Facts:
    """What a message says about itself, before we know which of its ids are ours.

    references: the message ids of In-Reply-To, then References, each once, at most 100. bounce: `BOUNCE`,
    `DELAYED`, or `IGNORED` for a report of deliveries only; None when it is no bounce. automatic: why it is
    automatic mail (e.g. "Auto-Submitted: auto-replied"), None for a person's mail. problem: why it could not
    be read, None when it could.
    """

    message_id: str | None = None
    from_address: str | None = None
    subject: str = ""
    references: tuple[str, ...] = ()
    bounce: Kind | None = None
    bounce_reason: str = ""
    bounced: tuple[BouncedRecipient, ...] = ()
    original_message_id: str | None = None
    automatic: str | None = None
    problem: str | None = None

    @property
    def candidate_ids(self) -> tuple[str, ...]:
        """The ids to ask the store about: the message's own, the bounced message's, then the references."""
        ids = (self.message_id, self.original_message_id, *self.references)
        return tuple(dict.fromkeys(i for i in ids if i is not None))


@dataclasses.dataclass(frozen=True)
class Inbound:
    """One classified message.

    reason: why it got its kind, one short line. from_address: the From addr-spec in lower case. references:
    the ids of its In-Reply-To and References. our_message_ids: those of them, and of `original_message_id`,
    that we sent. bounced: for a bounce or delay warning, the addresses that failed or were delayed.
    original_message_id: for a bounce, the Message-ID of the message that bounced when the report carries it.
    """

    kind: Kind
    reason: str
    message_id: str | None = None
    from_address: str | None = None
    subject: str = ""
    references: tuple[str, ...] = ()
    our_message_ids: tuple[str, ...] = ()
    bounced: tuple[BouncedRecipient, ...] = ()
    original_message_id: str | None = None


def classify(data: bytes, known: Known) -> Inbound:
    """The kind of one message, given as the raw bytes read from the mailbox. Never raises on any `data`."""
    return decide(read(data), known)


def read(data: bytes) -> Facts:
    """What a message says about itself. Never raises: an unreadable message has a `problem`."""
    try:
        return _read(data)
    except Exception as exc:  # hostile input can trip any corner of the email package; the caller logs it
        return Facts(problem=f"unreadable message ({type(exc).__name__})")


def decide(facts: Facts, known: Known) -> Inbound:
    """The kind of a message from its `Facts` and what `known` says about our mail."""
    if facts.problem is not None:
        return Inbound(Kind.IGNORED, _clean(facts.problem, _MAX_REASON))
    own = facts.message_id is not None and known.is_sent_message_id(facts.message_id)
    ours = tuple(i for i in facts.candidate_ids if i != facts.message_id and known.is_sent_message_id(i))

    def found(kind: Kind, reason: str, bounced: tuple[BouncedRecipient, ...] = ()) -> Inbound:
        return Inbound(
            kind,
            reason,
            message_id=facts.message_id,
            from_address=facts.from_address,
            subject=facts.subject,
            references=facts.references,
            our_message_ids=ours,
            bounced=bounced,
            original_message_id=facts.original_message_id,
        )

    if own:  # a Bcc or a self-addressed copy: our nudge's In-Reply-To would make it look like a reply
        return found(Kind.IGNORED, "a copy of our own message")
    if facts.bounce is not None:
        return found(facts.bounce, facts.bounce_reason, bounced=facts.bounced)
    subjects = known.sent_subjects_to(facts.from_address) if facts.from_address else ()
    if facts.automatic is not None:
        if ours:
            return found(Kind.AUTO_REPLY, _clean(f"{facts.automatic}, about our message {ours[0]}", _MAX_REASON))
        if subjects:
            return found(Kind.AUTO_REPLY, _clean(f"{facts.automatic}, from an address we write to", _MAX_REASON))
        return found(Kind.IGNORED, _clean(f"{facts.automatic}, not about our mail", _MAX_REASON))
    if ours:
        return found(Kind.REPLY, _clean(f"references our message {ours[0]}", _MAX_REASON))
    if subjects and _answers(facts.subject, subjects):
        return found(Kind.REPLY, "subject answers our mail to this address (no reference to our message)")
    return found(Kind.IGNORED, "not about our mail")


# --- reading --------------------------------------------------------------------------------------------------


def _read(data: bytes) -> Facts:
    msg = email.message_from_bytes(data)
    if not msg.keys():
        return Facts(problem="no header fields: not a mail message")
    headers = _headers(msg)
    subject = _clean(_decoded(headers.get("subject", "")), _MAX_SUBJECT)
    from_address = _address(headers.get("from", ""))
    in_reply_to = _ids(headers.get("in-reply-to", ""))[-10:]  # one, in practice
    threads = _ids(headers.get("references", ""))[len(in_reply_to) - _MAX_IDS :]  # the newest: the parent is last
    references = tuple(dict.fromkeys((*in_reply_to, *threads)))
    message_id = next(iter(_ids(headers.get("message-id", ""))), None)
    facts = Facts(message_id=message_id, from_address=from_address, subject=subject, references=references)

    parts = _parts(msg)
    bounce = _bounce(msg, headers, parts, subject, from_address)
    if bounce is not None:
        kind, reason, bounced = bounce
        original = _original_message_id(parts, references)
        return dataclasses.replace(
            facts, bounce=kind, bounce_reason=_clean(reason, _MAX_REASON), bounced=bounced, original_message_id=original
        )
    receipt = _read_receipt(msg, parts)
    if receipt is not None:
        refs = receipt + tuple(i for i in references if i not in receipt)
        return dataclasses.replace(facts, references=refs[:_MAX_IDS], automatic="read receipt (RFC 8098)")
    return dataclasses.replace(facts, automatic=_automatic(headers, subject))


def _headers(msg: email.message.Message) -> dict[str, str]:
    """The first value of each field we read, unfolded, 8-bit bytes decoded, by lower-case name; encoded-words
    stay encoded."""
    out: dict[str, str] = {}
    for name, value in msg.raw_items():
        key = str(name).strip().lower()
        if key in _READ and key not in out:
            out[key] = _unfold(str(value))
    return out


def _unfold(value: str) -> str:
    if _RAW_8BIT.search(value):  # raw 8-bit bytes, which the parser kept as surrogates
        raw = value.encode("ascii", "surrogateescape")
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw.decode("cp1252", "replace")
    return _FOLD.sub("", value).strip()


def _decoded(value: str) -> str:
    """A header value with its RFC 2047 encoded-words decoded; a word that does not decode stays as written."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pos = 0
    after_word = False
    for word in _ENCODED_WORD.finditer(value):
        between = value[pos : word.start()]
        text = _decoded_word(word)
        if not (after_word and text is not None and not between.strip()):  # space between two encoded-words
            out.append(between)  # is not part of the text
        out.append(word.group(0) if text is None else text)
        after_word = text is not None
        pos = word.end()
    out.append(value[pos:])
    return "".join(out)


def _decoded_word(word: re.Match[str]) -> str | None:
    charset, encoding, text = word.group(1).split("*", 1)[0], word.group(2).upper(), word.group(3)
    try:
        if encoding == "B":
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        else:
            data = binascii.a2b_qp(text.encode("ascii"), header=True)
    except (ValueError, binascii.Error):  # UnicodeEncodeError is a ValueError
        return None
    try:
        return data.decode(charset, "replace")
    except (LookupError, ValueError, TypeError):  # an unknown charset: most likely UTF-8
        return data.decode("utf-8", "replace")


def _address(value: str) -> str | None:
    """The first addr-spec of an address header, lower case."""
    found = _addresses(value)
    return found[0] if found else None


def _addresses(value: str) -> list[str]:
    """The addr-specs of an address header, lower case: the ones in angle brackets, else the bare ones."""
    value = _COMMENT.sub(" ", _QUOTED.sub(" ", value))  # display names and comments may hold anything
    found = _ANGLE_ADDR_SPEC.findall(value) or _BARE_ADDR_SPEC.findall(value)
    return [a.lower() for a in found if not _CONTROL.search(a)]


def _ids(value: str) -> tuple[str, ...]:
    """The message ids in a header value, each once, in order; at most the last `_MAX_IDS`."""
    bracketed = [re.sub(r"\s+", "", inner) for inner in _ID.findall(value)]
    if not bracketed:  # clients that leave out the angle brackets
        bracketed = _BARE_ID.findall(value)
    ids = tuple(dict.fromkeys(f"<{inner}>" for inner in bracketed if "@" in inner and _ID_CHARS.fullmatch(inner)))
    return ids[-_MAX_IDS:]


_Part = tuple[str, email.message.Message]


def _parts(msg: email.message.Message) -> list[_Part]:
    """The message and its parts with their content types, depth first, not descending into attached messages."""
    out: list[_Part] = []
    stack = [msg]
    while stack and len(out) < _MAX_PARTS:
        part = stack.pop()
        content_type = part.get_content_type()
        out.append((content_type, part))
        if content_type.startswith("multipart/") and part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend(c for c in reversed(children) if isinstance(c, email.message.Message))
    return out


def _text(part: email.message.Message) -> str:
    """A text part's content, decoded, at most `_MAX_TEXT` bytes of it."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    payload = payload[:_MAX_TEXT]
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, "replace")
    except (LookupError, ValueError, TypeError):  # an unknown or non-text codec name
        text = payload.decode("utf-8", "replace")
    if part.get_content_type() == "text/html":
        text = html.unescape(_TAG.sub(" ", re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>", "\n", text)))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _human_text(parts: Iterable[_Part]) -> str:
    """What a mail system wrote: its text parts (or else HTML ones) up to where it quotes the original message."""
    texts = [_text(p) for t, p in parts if t == "text/plain"]
    if not texts:
        texts = [_text(p) for t, p in parts if t == "text/html"]
    whole = "\n".join(texts[:4])
    marker = _ORIGINAL_MARKER.search(whole)
    return whole[: marker.start()] if marker else whole


def _param(part: email.message.Message, name: str) -> str:
    value = part.get_param(name)
    if value is None:
        return ""
    return str(email.utils.collapse_rfc2231_value(value)).strip().lower()


# --- bounces ----------------------------------------------------------------------------------------------------

_Bounce = tuple[Kind, str, tuple[BouncedRecipient, ...]]


def _bounce(
    msg: email.message.Message,
    headers: Mapping[str, str],
    parts: list[_Part],
    subject: str,
    from_address: str | None,
) -> _Bounce | None:
    report = next((p for t, p in parts if t in ("message/delivery-status", "message/global-delivery-status")), None)
    if report is not None:
        dsn = _dsn(report)
        if dsn is not None:
            return dsn
    is_report = report is not None or (
        parts[0][0] == "multipart/report" and _param(msg, "report-type") == "delivery-status"
    )
    if not (is_report or _from_mail_system(headers, from_address)):
        return None
    human = _human_text(parts)
    signature = _SIGNATURE.search(human)
    subject_match = _BOUNCE_SUBJECT.match(subject)
    failed_header = headers.get("x-failed-recipients", "")
    if not (is_report or signature or subject_match or failed_header):
        return None
    shape = "MTA"  # also when re.I matched a case the keys do not hold (U+017F, the long s, matches "s")
    if signature:
        shape = _SIGNATURES.get(signature.group(0).lower(), shape)
    elif subject_match:
        shape = _BOUNCE_SUBJECTS.get(subject_match.group(1).lower(), shape)
    status, diagnostic = _status_in(human)
    delayed = status.startswith("4") or bool(_DELAY.search(subject) or _DELAY.search(human))
    exclude = {from_address, *_addresses(headers.get("to", ""))}
    addresses = [a for a in _addresses(failed_header) if a not in exclude]
    addresses += _failed_addresses(human, exclude)
    recipients = tuple(
        BouncedRecipient(
            a, a, "delayed" if delayed else "failed", status, diagnostic or _line_after(human, a), not delayed
        )
        for a in dict.fromkeys(addresses)
    )
    what = "delay warning" if delayed else "non-delivery report"
    found = f"Status: {status}" if status else "no status code"
    if not recipients:
        found += ", no failed address found"
    return (Kind.DELAYED if delayed else Kind.BOUNCE), f"{shape} {what}, {found}", recipients


def _from_mail_system(headers: Mapping[str, str], from_address: str | None) -> bool:
    if "x-failed-recipients" in headers or "".join(headers.get("return-path", "x").split()) == "<>":
        return True
    local = (from_address or "").rpartition("@")[0]
    if local in _DAEMONS or local.startswith("microsoftexchange"):
        return True
    return bool(_SYSTEM_NAME.search(_decoded(headers.get("from", ""))))


def _dsn(report: email.message.Message) -> _Bounce | None:
    """The bounce an RFC 3464 delivery-status part reports; None when it has no per-recipient fields."""
    recipients: list[BouncedRecipient] = []
    delivered: list[str] = []
    for fields in _field_blocks(report):
        final = _recipient(fields.get("final-recipient", ""))
        original = _recipient(fields.get("original-recipient", ""))
        if not (final or original):
            continue
        action = (fields.get("action", "").split() or ["failed"])[0].lower()
        diagnostic = fields.get("diagnostic-code", "")
        if ";" in diagnostic[:20]:
            diagnostic = diagnostic.split(";", 1)[1]
        diagnostic = _clean(diagnostic, _MAX_DIAGNOSTIC)
        code = _STATUS.search(fields.get("status", "")) or _STATUS.search(diagnostic)
        status = code.group(0) if code else ""
        if action in ("delivered", "relayed", "expanded") and not status.startswith(("4", "5")):
            delivered.append(action)
            continue
        permanent = not (action == "delayed" or status.startswith("4"))
        action = action if action in ("failed", "delayed") else ("failed" if permanent else "delayed")
        address = original or final
        recipients.append(BouncedRecipient(address, final or original, action, status, diagnostic, permanent))
    if not recipients:
        if delivered:
            return Kind.IGNORED, f"DSN Action: {delivered[0]} (no failure reported)", ()
        return None
    first = next((r for r in recipients if r.permanent), recipients[0])
    reason = f"DSN Action: {first.action}, " + (f"Status: {first.status}" if first.status else "no Status")
    if len(recipients) > 1:
        reason += f" ({len(recipients)} recipients)"
    kind = Kind.BOUNCE if first.permanent else Kind.DELAYED
    return kind, reason, tuple(recipients)


def _field_blocks(report: email.message.Message) -> list[dict[str, str]]:
    """The blocks of fields of a delivery-status part (per message, then per recipient), names in lower case."""
    payload = report.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        for block in payload:
            if not isinstance(block, email.message.Message):
                continue
            fields: dict[str, str] = {}
            for name, value in block.raw_items():
                fields.setdefault(str(name).strip().lower(), _unfold(str(value)))
            blocks.append(fields)
            rest = block.get_payload(decode=True)  # message/global-delivery-status: the parser reads one block only
            if isinstance(rest, bytes) and rest.strip():
                blocks += _parse_blocks(rest.decode("utf-8", "replace"))
    else:
        blocks = _parse_blocks(_text(report))
    return blocks


def _parse_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
        fields: dict[str, str] = {}
        name = ""
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and name:
                fields[name] += " " + line.strip()
            elif ":" in line:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name in fields:
                    name = ""  # the first value counts; drop continuations of a repeat
                    continue
                fields[name] = _unfold(value)
        if fields:
            blocks.append(fields)
    return blocks


def _recipient(value: str) -> str:
    """The address of a Final-Recipient or Original-Recipient field ("rfc822; jo@example.org"), lower case."""
    if ";" in value:
        value = value.split(";", 1)[1]
    return _clean(value.strip().strip("<>").strip(), 320).lower()


def _status_in(text: str) -> tuple[str, str]:
    """(status like 5.1.1, the line it is on) from a bounce's text; ("", "") when there is none."""
    found = _SMTP_AND_STATUS.search(text)
    status = found.group(2) if found else ""
    if found is None:
        found = _STATUS.search(text)
        status = found.group(0) if found else ""
    if found is None:
        found = _SMTP_CODE.search(text)
        status = f"{found.group(1)[0]}.0.0" if found else ""
    if found is None:
        return "", ""
    start = text.rfind("\n", 0, found.start()) + 1
    end = text.find("\n", found.end())
    line = text[start : end if end >= 0 else len(text)]
    return status, _clean(line.strip(" \t#"), _MAX_DIAGNOSTIC)


def _line_after(text: str, address: str) -> str:
    """The line after the first line that names `address`: what a bounce without a status code says about it."""
    named = re.search(re.escape(address), text, re.I)
    if named is None:
        return ""
    for line in text[named.start() :].split("\n")[1:4]:
        if line.strip():
            return _clean(line, _MAX_DIAGNOSTIC)
    return ""


def _failed_addresses(text: str, exclude: Collection[str | None]) -> list[str]:
    found: list[str] = []
    for pattern in (_ANGLE_ADDRESS, _LONE_ADDRESS, _NAMED_ADDRESS, _MESSAGE_TO):
        found += [a.lower() for a in pattern.findall(text)]
    return [
        a
        for a in dict.fromkeys(found)
        if a not in exclude and a.partition("@")[0] not in _DAEMONS and not _CONTROL.search(a)
    ]


def _original_message_id(parts: list[_Part], references: tuple[str, ...]) -> str | None:
    """The Message-ID of the message a bounce is about: from its attached copy or headers, its quote in the
    text, or else the last id the bounce references (Exchange writes In-Reply-To)."""
    for content_type, part in parts:
        if content_type not in _ORIGINALS:
            continue
        inner = part.get_payload()
        if isinstance(inner, list):  # the parser read the copy as a message
            if inner and isinstance(inner[0], email.message.Message):
                ids = _ids(_headers(inner[0]).get("message-id", ""))
                if ids:
                    return ids[0]
        else:
            quoted = _QUOTED_MESSAGE_ID.search(_text(part))
            if quoted:
                return next(iter(_ids(quoted.group(1))), None)
    for content_type, part in parts:
        if content_type.startswith("text/"):
            quoted = _QUOTED_MESSAGE_ID.search(_text(part))
            if quoted:
                return next(iter(_ids(quoted.group(1))), None)
    return references[-1] if references else None


# --- automatic mail and replies ---------------------------------------------------------------------------------


def _read_receipt(msg: email.message.Message, parts: list[_Part]) -> tuple[str, ...] | None:
    """The Original-Message-ID of a disposition notification (a read receipt); None when it is none."""
    for content_type, part in parts:
        if content_type == "message/disposition-notification":
            fields = {k: v for block in _field_blocks(part) for k, v in block.items()}
            return _ids(fields.get("original-message-id", ""))
    if parts[0][0] == "multipart/report" and _param(msg, "report-type") == "disposition-notification":
        return ()
    return None


def _automatic(headers: Mapping[str, str], subject: str) -> str | None:
    """Why a message is automatic mail, or None."""
    auto_submitted = _COMMENT.sub("", headers.get("auto-submitted", "")).split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {_clean(auto_submitted, 40)}"
    for name, label in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond")):
        if name in headers and headers[name].strip().lower() not in ("no", "false", "0"):
            return f"{label}: {_clean(headers[name], 40)}".rstrip(": ")
    precedence = _COMMENT.sub("", headers.get("precedence", "")).strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    suppress = headers.get("x-auto-response-suppress", "").strip()
    if suppress.lower() not in _NO:
        return f"X-Auto-Response-Suppress: {_clean(suppress, 40)}"
    if "".join(headers.get("return-path", "x").split()) == "<>":
        return "empty Return-Path"
    match = _AUTO_SUBJECT.match(unicodedata.normalize("NFKC", subject))
    if match:
        return f"out-of-office subject ({match.group(1)})"
    return None


def _answers(subject: str, sent: Collection[str]) -> bool:
    """Whether `subject` is a reply prefix before one of the `sent` subjects."""
    rest = unicodedata.normalize("NFKC", subject).strip()
    prefixes = 0
    while match := _REPLY_PREFIX.match(rest):
        rest = rest[match.end() :]
        prefixes += 1
    if not prefixes:
        return False
    wanted = _normal(rest)
    return bool(wanted) and any(_normal(s) == wanted for s in sent)


def _normal(subject: str) -> str:
    """A subject without reply prefixes and [tags], case and spacing, for comparing."""
    text = unicodedata.normalize("NFKC", subject).strip()
    while match := (_REPLY_PREFIX.match(text) or _TAGS.match(text)):
        text = text[match.end() :]
    return " ".join(text.casefold().split())


def _clean(text: str, limit: int) -> str:
    """One line: control characters, line breaks and invisible marks become spaces; at most `limit` characters."""
    line = " ".join(_CONTROL.sub(" ", text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
