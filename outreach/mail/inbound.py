"""Classifying one message read from a mailbox: a reply, an auto-reply, a bounce, a delay warning, a complaint, or
other mail.

Pure functions: bytes in, an `Inbound` out; no I/O, no clock. It never raises on any input: a message it cannot
read is `other` with the reason (the caller logs it). Its work is bounded: it reads at most 1 MiB and 100 MIME parts
of a message (outreach/mail/mime.py) and at most 100 recipients of a report (outreach/mail/bounces.py).

Two steps, so that a caller with an async store can look things up in between: `read(data)` says what the
message says about itself (`Facts`: its ids, sender, subject, bounce or complaint report, automatic-mail marker),
and `decide(facts, known, tied)` asks a `Known` which of those ids we sent and what we sent to the sender; `tied`
are messages of ours the caller found by other means (a signed VERP address the report was delivered to, the
`X-Outreach-*` header fields of the returned original). `classify(data, known)` does both. `Sent` is a `Known`
made from what the caller looked up beforehand (`Facts.candidate_ids` and `Facts.from_address`).

The rules, in order; the first that applies wins:

1. Nothing readable (no header fields) → `other`.
2. A copy of our own mail (its own Message-ID is one we sent: a Bcc to the rep) → `other`; a nudge sent as a reply
   would otherwise look like a reply to our intro.
3. A complaint (outreach/mail/complaints.py): an ARF report (RFC 5965), Amazon SES's complaint notification, a
   provider's complaint notice → `complaint`.
4. A bounce (outreach/mail/bounces.py): an RFC 3464 delivery status notification, Amazon SES's bounce
   notification, or a report written for people that a mail system sent (a mail-system sender, an empty
   Return-Path or `Auto-Submitted`) with a bounce subject, the wording of a mail system or `X-Failed-Recipients`.
   A recipient that failed for good → `bounce`; only delays → `delayed`; a DSN that reports only deliveries
   (`delivered`, `relayed`, `expanded`, `deliverable`, 2.x.x) → `other`.
5. Automatic mail: a read receipt (RFC 8098), RFC 3834 `Auto-Submitted` other than `no`, `X-Autoreply`,
   `X-Autorespond`, `Precedence: auto_reply|bulk|junk`, `X-Auto-Response-Suppress`, an empty Return-Path, a
   mail-system sender (MAILER-DAEMON, postmaster, post_master, Mail Delivery System...), a mailing-list manager's
   notice, a report content type, a bounce subject, or a subject that starts like an out-of-office in English,
   German, French, Spanish, Italian or Japanese. It is an `auto_reply` when it is about our mail (it references
   one of our Message-IDs, or comes from an address we write to), else `other`. Checked before replies: a bounce
   this classifier cannot read, an out-of-office that quotes our message, a list manager's "you are not a member"
   with our subject and In-Reply-To: none of them is a person's answer.
6. A reply: `In-Reply-To` or `References` names one of our Message-IDs → `reply`.
7. A reply by subject (for clients that drop the threading headers): from an address we write to, and the
   subject is reply prefixes (`Re:`, `AW:`, `SV:`, `Antw:`, `Réf. :`, `R:`, `返信:`...) before the subject of
   mail we sent to that address → `reply`.
8. Anything else → `other`.

Trust: a bounce, delay warning or complaint is `verified` when it refers to a message we sent: the Message-ID of
its returned original (attached, or quoted in its text), its own `In-Reply-To`/`References`, or a message the
caller tied to it (`tied`). Otherwise its reason ends "unverified: no reference to a message of ours", and the
application layer records it and acts on nothing (outreach/app/inbox.py): anyone can write a multipart/report
naming anyone.

"An address we write to" is one for which `Known.sent_subjects_to` is not empty: an active enrollment of the
mailbox's user. Header values are hostile: every string in the result is one line without control characters, and
at most 100 ids of a message are looked up.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import re
import unicodedata
from collections.abc import Collection, Mapping
from typing import Any, Protocol

from outreach.mail import bounces, complaints, mime

_MAX_IDS = 100  # ids asked about per message: a hostile References may list thousands
_MAX_REASON = 200
_MAX_SUBJECT = 998
_MAX_HUMAN_TEXT = 256 * 1024  # characters of a report's text for people searched

BouncedRecipient = bounces.BouncedRecipient
Reason = bounces.Reason
_clean = bounces.clean
_CONTROL = bounces.CONTROL

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
# No @ in the part before the @, and a bare one starts after a separator: linear time on hostile values.
_ANGLE_ADDR_SPEC = re.compile(r"<\s*([^<>\s@]+@[^<>\s]+?)\s*>")
_BARE_ADDR_SPEC = re.compile(r"(?<![^\s<>()\[\]\",;:])[^\s<>()\[\]\",;:@]+@[^\s<>()\[\]\",;:]+")
_ANGLE_LOCAL = re.compile(r"<\s*([^<>\s@]*)\s*>")
_ID = re.compile(r"<([^<>]*)>")
_BARE_ID = re.compile(r"(?<![^\s<>,;\"()\[\]])[^\s<>,;\"()\[\]@]+@[^\s<>,;\"()\[\]]+")
_ID_CHARS = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")  # printable ASCII but space, < and >
_COMMENT = re.compile(r"\([^()]*\)")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_QUOTED_MESSAGE_ID = re.compile(r"^[ \t>*-]*Message-ID:[ \t]*(?:\r?\n[ \t]+)?(<[^<>\s]+>)", re.I | re.M)
_QUOTED_TO = re.compile(r"^[ \t>*-]*To:[ \t]*([^\n]{1,300})", re.I | re.M)
_QUOTED_ENROLLMENT = re.compile(r"^[ \t>]*X-Outreach-Enrollment:[ \t]*(\d{1,18})[ \t]*$", re.I | re.M)
_QUOTED_STEP = re.compile(r"^[ \t>]*X-Outreach-Step:[ \t]*([^\s]{1,200})[ \t]*$", re.I | re.M)
_ORIGINALS = frozenset({"message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"})

# Senders that are mail systems, not people: by local part, or by display name.
_SYSTEM_LOCAL = re.compile(
    r"mailer-?_?daemon|mail-?daemon|^daemon$|postmaster|post_master|post-master|^mdaemon$|double-bounce|"
    r"mail\.?delivery|mailadm|^ndr$|^mailer$|^smtp|smtp_|_smtp|^mta$|imss|interscan|antivirus|^bounces?$|"
    r"^microsoftexchange|^admin$|^administrator$|^system$|^mailserver$|^mail-?server$|^nobody$",
    re.I,
)
_SYSTEM_NAME = re.compile(
    r"mail delivery|delivery (?:sub)?system|delivery service|mailer[- ]?daemon|postmaster|mail administrator|"
    r"system administrator|mail (?:system|server|service|gateway)|mailserver|microsoft outlook|interscan|"
    r"antivirus|courier mail server|mail admin|メール配信",
    re.I,
)
_LIST_MANAGER_LOCAL = re.compile(
    r"-(?:owner|bounces?|request|admin)$|^owner-|^(?:listserv|majordomo|sympa|mailman|ecartis|lyris|listproc|"
    r"smartlist|fml)$",
    re.I,
)
_LIST_HEADERS = ("x-mailman-version", "x-ml-server", "x-ml-name", "x-listserver", "x-sympa-version")

# Wording that only a mail system writes, with the software that usually writes it.
_SIGNATURES = {
    "this message was created automatically by mail delivery software": "Exim",
    "this is the qmail-send program": "qmail",
    "delivery has failed to these recipients or groups": "Exchange",
    "your message couldn't be delivered": "Exchange",
    "your message wasn't delivered": "Exchange",
    "the following recipient(s) could not be reached": "Exchange",
    "did not reach the following recipient": "Exchange",
    "fehler bei der zustellung an diese empfänger oder gruppen": "Exchange",
    "la remise a échoué pour ces destinataires ou groupes": "Exchange",
    "delivery to the following recipient failed permanently": "Gmail",
    "delivery to the following recipient has been delayed": "Gmail",
    "delivery to the following recipients failed permanently": "Gmail",
    "this is the mail system at host": "Postfix",
    "the following addresses had permanent fatal errors": "Sendmail",
    "the following addresses had transient non-fatal errors": "Sendmail",
    "transcript of session follows": "Sendmail",
    "sorry, we were unable to deliver your message": "Yahoo",
    "this is the mailer-daemon, please do not reply": "OpenSMTPD",
    "undeliverable mail": "Courier",
    "delays in delivering your message": "Courier",
    "this report relates to a message you sent": "Messaging Server",
    "your message cannot be delivered to the following recipients": "Messaging Server",
    "was not delivered to:": "Domino",
    "failure reasons": "Notes",
    "an error occurred while trying to deliver the mail": "Amazon SES",
    "we had trouble delivering your message": "MTA",
    "there was an error sending your mail": "MTA",
    "error delivering your mail to": "MTA",
    "could not be delivered to": "MTA",
    "couldn't be delivered to": "MTA",
    "could not deliver": "MTA",
    "unable to deliver": "MTA",
    "not be delivered": "MTA",
    "was not delivered": "MTA",
    "undeliverable to": "MTA",
    "delivery failed": "MTA",
    "failed to deliver": "MTA",
    "following addresses had delivery problems": "MTA",
    "the original message was received at": "MTA",
    "a message that you sent could not be delivered": "Exim",
    "permanent error": "MTA",
    "has been delayed": "MTA",
    "failed addresses follow": "MTA",
    "no such user": "MTA",
    "user unknown": "MTA",
    "unknown user": "MTA",
    "mailbox unavailable": "MTA",
    "mailbox is full": "MTA",
    "over quota": "MTA",
    "message is delayed": "MTA",
    "次の宛先": "Japanese carrier",
    "配信できません": "Japanese carrier",
    "送信できません": "Japanese carrier",
    "届きませんでした": "Japanese carrier",
    "配送できません": "Japanese carrier",
    "送信に失敗": "Japanese carrier",
    "配信に失敗": "Japanese carrier",
    "お届けできません": "Japanese carrier",
}
_SIGNATURE = re.compile("|".join(re.escape(s) for s in _SIGNATURES))  # searched in lower-case text
_BOUNCE_SUBJECT = re.compile(
    r"undeliver(?:ed|able)|non[- ]?deliver|not (?:be )?delivered|could not be deliver|couldn'?t be deliver|"
    r"delivery (?:status notification|failure|failed|problem|report|notification|has failed|error|delayed)|"
    r"failure notice|failure delivery|failed (?:delivery|mail)|mail (?:delivery|system error|error|failure|"
    r"not delivered|could not|failed)|returned mail|returned to sender|returning (?:message|to sender)|mail returned|"
    r"warning: (?:message|could not send)|delayed mail|message delayed|mail delivery warning|"
    r"unzustellbar|nicht zugestellt|non remis|no se puede entregar|non recapitabile|onbestelbaar|não entregue|"
    r"niet bezorgd|permanent (?:delivery )?failure|processing error|^\[bounce\]|bounced? (?:mail|message)|"
    r"配信|不達|返送|送信エラー|配送エラー|メールエラー|エラーメール|送信できません|宛先不明",
    re.I,
)
_SHAPE_BY_SUBJECT = {
    "mail delivery failed": "Exim", "undelivered mail returned to sender": "Postfix", "undeliverable": "Exchange",
    "unzustellbar": "Exchange", "delivery status notification": "Gmail", "failure notice": "qmail",
    "returned mail": "Sendmail",
}  # fmt: skip
_TAGS = re.compile(r"^(?:\s*\[[^\[\]]{0,40}\]\s*)+")
_LIST_REJECTION = re.compile(
    r"not (?:a )?member|not subscribed|non-?member|only (?:members|subscribers)|not allowed to post|"
    r"you do not have permission to post|posting restricted|has been rejected|was rejected|was not distributed",
    re.I,
)
_LIST_NOTICE = re.compile(
    r"not (?:a )?member|not subscribed|non-?member|only (?:members|subscribers)|not allowed to post|"
    r"you do not have permission to post|posting restricted|rejected|was not distributed|held for moderation|"
    r"awaits moderator|moderator approval|requires approval",
    re.I,
)

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


class Kind(enum.StrEnum):
    """What an inbound message is to us."""

    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"  # a delivery failed for good (the recipients say whether the address is bad)
    DELAYED = "delayed"  # delivery is still being tried: a warning only
    COMPLAINT = "complaint"  # a recipient marked our mail as spam
    OTHER = "other"


REPORTS = frozenset({Kind.BOUNCE, Kind.DELAYED, Kind.COMPLAINT})  # the kinds that act only when verified


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
class Facts:
    """What a message says about itself, before we know which of its ids are ours.

    references: the message ids of In-Reply-To, then References, each once, at most 100. report: `BOUNCE`,
    `DELAYED`, `COMPLAINT`, or `OTHER` for a report of deliveries only (or a feedback report that is no complaint);
    None when it is no report. report_reason: why. bounced: the recipients a bounce or delay warning reports on;
    overall: what it says about none in particular (its one status), for a report whose recipient the caller finds
    by other means. complainants: who complained. original_message_id: the Message-ID of the message a report is
    about, when it carries it. outreach_step: (enrollment, step) of the `X-Outreach-*` fields of the returned
    original. envelope_to: the addresses the message was delivered to (Delivered-To, X-Original-To, Envelope-To,
    To), where a VERP address shows. automatic: why it is automatic mail, None for a person's mail. problem: why it
    could not be read, None when it could. cut: why only part of it was read.
    """

    message_id: str | None = None
    from_address: str | None = None
    subject: str = ""
    references: tuple[str, ...] = ()
    report: Kind | None = None
    report_reason: str = ""
    bounced: tuple[BouncedRecipient, ...] = ()
    overall: BouncedRecipient | None = None
    complainants: tuple[str, ...] = ()
    original_message_id: str | None = None
    outreach_step: tuple[int, str] | None = None
    envelope_to: tuple[str, ...] = ()
    automatic: str | None = None
    problem: str | None = None
    cut: str | None = None

    @property
    def candidate_ids(self) -> tuple[str, ...]:
        """The ids to ask the store about: the message's own, the reported message's, then the references."""
        ids = (self.message_id, self.original_message_id, *self.references)
        return tuple(dict.fromkeys(i for i in ids if i is not None))[: _MAX_IDS + 2]


@dataclasses.dataclass(frozen=True)
class Inbound:
    """One classified message.

    reason: why it got its kind, one short line. from_address: the From addr-spec in lower case. references: the
    ids of its In-Reply-To and References. our_message_ids: those of them, of `original_message_id` and of the
    messages tied to it, that we sent. bounced: for a bounce or delay warning, the addresses that failed or were
    delayed; overall: what it says about no recipient in particular. complainants: for a complaint, who complained.
    original_message_id: for a report, the Message-ID of the message it is about when it carries it. verified: for
    a report, how it is tied to our mail (None: it is not, and must change nothing).
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
    overall: BouncedRecipient | None = None
    complainants: tuple[str, ...] = ()
    verified: str | None = None


def classify(data: bytes, known: Known, tied: Mapping[str, str] | None = None) -> Inbound:
    """The kind of one message, given as the raw bytes read from the mailbox. Never raises on any `data`."""
    return decide(read(data), known, tied)


def read(data: bytes) -> Facts:
    """What a message says about itself. Never raises: an unreadable message has a `problem`."""
    try:
        return _read(data)
    except RecursionError:
        return Facts(problem="unreadable message (RecursionError)")
    except Exception as exc:  # hostile input can trip any corner of the parsing; the caller logs it
        return Facts(problem=f"unreadable message ({type(exc).__name__})")


def decide(facts: Facts, known: Known, tied: Mapping[str, str] | None = None, *, assumed: bool = False) -> Inbound:
    """The kind of a message from its `Facts`, what `known` says about our mail, and the messages of ours the caller
    tied it to (`tied`: Message-ID → how, e.g. "VERP address"). `assumed`: `known` only guesses (no store: every id
    taken for ours), and the reasons say so."""
    if facts.problem is not None:
        return Inbound(Kind.OTHER, _clean(facts.problem, _MAX_REASON))
    own = facts.message_id is not None and known.is_sent_message_id(facts.message_id)
    ours = tuple(i for i in facts.candidate_ids if i != facts.message_id and known.is_sent_message_id(i))
    ties = dict(tied or {})
    ours = tuple(dict.fromkeys((*ours, *ties)))

    def found(kind: Kind, reason: str, *, verified: str | None = None) -> Inbound:
        return Inbound(
            kind,
            _clean(reason, _MAX_REASON),
            message_id=facts.message_id,
            from_address=facts.from_address,
            subject=facts.subject,
            references=facts.references,
            our_message_ids=ours,
            bounced=facts.bounced if kind in (Kind.BOUNCE, Kind.DELAYED) else (),
            original_message_id=facts.original_message_id,
            overall=facts.overall if kind in (Kind.BOUNCE, Kind.DELAYED) else None,
            complainants=facts.complainants if kind is Kind.COMPLAINT else (),
            verified=verified,
        )

    if own:  # a Bcc or a self-addressed copy: our nudge's In-Reply-To would make it look like a reply
        return found(Kind.OTHER, "a copy of our own message")
    cut = f" ({facts.cut})" if facts.cut else ""
    our = "message" if assumed else "our message"
    guess = " (taken for ours: no store)" if assumed else ""
    if facts.report in REPORTS:
        if ours:
            first = ours[0]
            if first in ties:
                how = f"{ties[first]} of {our} {first}"
            elif first == facts.original_message_id:
                how = f"returns {our} {first}"
            else:
                how = f"references {our} {first}"
            return found(facts.report, f"{facts.report_reason}{cut}; {how}{guess}", verified=how)
        return found(facts.report, f"{facts.report_reason}{cut}; unverified: no reference to a message of ours")
    if facts.report is Kind.OTHER:
        return found(Kind.OTHER, facts.report_reason + cut)
    subjects = known.sent_subjects_to(facts.from_address) if facts.from_address else ()
    if facts.automatic is not None:
        if ours:
            return found(Kind.AUTO_REPLY, f"{facts.automatic}, about {our} {ours[0]}{guess}")
        if subjects:
            return found(Kind.AUTO_REPLY, f"{facts.automatic}, from an address we write to")
        return found(Kind.OTHER, f"{facts.automatic}, not about our mail")
    if ours:
        return found(Kind.REPLY, f"references {our} {ours[0]}{guess}")
    if subjects and _answers(facts.subject, subjects):
        return found(Kind.REPLY, "subject answers our mail to this address (no reference to our message)")
    return found(Kind.OTHER, "not about our mail")


# --- reading --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Sender:
    address: str | None  # the addr-spec, lower case
    local: str  # its local part (also of a bare `MAILER-DAEMON`), lower case
    name: str  # the display name, decoded
    empty: bool  # `<>`: the null sender


def _read(data: bytes) -> Facts:
    message = mime.read(data)
    if message is None:
        return Facts(problem="no header fields: not a mail message")
    headers = message.headers
    subject = _clean(_decoded(headers.get("subject", "")), _MAX_SUBJECT)
    sender = _sender(headers.get("from", ""))
    in_reply_to = _ids(headers.get("in-reply-to", ""))[-10:]  # one, in practice
    threads = _ids(headers.get("references", ""))[len(in_reply_to) - _MAX_IDS :]  # the newest: the parent is last
    references = tuple(dict.fromkeys((*in_reply_to, *threads)))
    message_id = next(iter(_ids(headers.get("message-id", ""))), None)
    envelope: list[str] = []
    for name in ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to"):
        envelope += _addresses(headers.get(name, "")[:2000])
    base: dict[str, Any] = {
        "message_id": message_id, "from_address": sender.address, "subject": subject, "references": references,
        "envelope_to": tuple(dict.fromkeys(envelope))[:10], "cut": message.cut,
    }  # fmt: skip

    system = _system_sender(headers, sender)
    marker = _automatic_headers(headers)
    root = message.root
    report_type = root.params.get("report-type", "").lower() if root.content_type == "multipart/report" else ""
    plain_subject = _TAGS.sub("", subject)
    bounce_subject = _BOUNCE_SUBJECT.search(plain_subject)
    list_manager = _list_manager(headers, sender)
    suspicious = bool(system or marker or report_type or bounce_subject or list_manager
                      or _may_be_report(message, sender))  # fmt: skip
    text, quoted = _texts(message) if suspicious else ("", "")
    original = _original(message, text, quoted, references)

    complaint = complaints.read(message, plain_subject, sender.local, text) if suspicious else None
    if isinstance(complaint, complaints.Complaint):
        return Facts(
            **base, report=Kind.COMPLAINT, report_reason=_clean(complaint.why, _MAX_REASON),
            complainants=complaint.complainants,
            original_message_id=complaint.original_message_id or original.message_id,
            outreach_step=original.step,
        )  # fmt: skip
    if isinstance(complaint, complaints.NotAComplaint):
        return Facts(**base, report=Kind.OTHER, report_reason=_clean(complaint.why, _MAX_REASON),
                     original_message_id=original.message_id)  # fmt: skip

    rejected = list_manager is not None and _LIST_REJECTION.search(f"{subject}\n{text[:5000]}") is not None
    bounce = _bounce(message, headers, text, subject, sender, system or marker, original, rejected,
                     sender_is_system=system is not None) if suspicious else None  # fmt: skip
    if (bounce is None or not bounce[0].recipients) and (system or marker):
        bounce = _wrapped_bounce(message, original) or bounce
    if bounce is not None:
        report, original_id = bounce
        kind = {"bounce": Kind.BOUNCE, "delayed": Kind.DELAYED}.get(report.kind, Kind.OTHER)
        return Facts(
            **base, report=kind, report_reason=_clean(report.why, _MAX_REASON), bounced=report.recipients,
            overall=report.overall, original_message_id=original_id or original.message_id,
            outreach_step=original.step,
        )  # fmt: skip
    receipt = _read_receipt(message)
    if receipt is not None:
        refs = receipt + tuple(i for i in references if i not in receipt)
        return Facts(**{**base, "references": refs[:_MAX_IDS]}, automatic="read receipt (RFC 8098)")
    automatic = marker or system
    if automatic is None and list_manager:
        automatic = list_manager
    if automatic is None and report_type:
        automatic = f"multipart/report ({_clean(report_type, 40)})"
    if automatic is None and bounce_subject:
        automatic = f"bounce subject ({_clean(bounce_subject.group(0), 40)})"
    if automatic is None:
        match = _AUTO_SUBJECT.match(unicodedata.normalize("NFKC", subject))
        if match:
            automatic = f"out-of-office subject ({match.group(1)})"
    return Facts(**base, automatic=automatic)


def _may_be_report(message: mime.Message, sender: _Sender) -> bool:
    """Whether a message that no header marks as automatic may still be a report: it carries a report part or an
    attached original, comes from a feedback desk, or is an Amazon SNS notification."""
    if "x-amz-sns-message-id" in message.headers:
        return True
    if any(p.content_type in _ORIGINALS or p.content_type.startswith("message/") for p in message.parts[1:]):
        return True
    return complaints.from_desk(sender.local)


def _bounce(
    message: mime.Message,
    headers: Mapping[str, str],
    text: str,
    subject: str,
    sender: _Sender,
    automatic: str | None,
    original: _Original,
    list_rejection: bool = False,
    sender_is_system: bool = False,
) -> tuple[bounces.Report, str | None] | None:
    """The report a bounce makes, and the Message-ID of the message it is about when the report itself names it
    (Amazon SES); None when the message is no bounce."""
    has_dsn = any(p.content_type in bounces.DSN_PARTS for p in message.parts)
    report_type = message.root.params.get("report-type", "").lower()
    is_report = has_dsn or (message.root.content_type == "multipart/report" and report_type == "delivery-status")
    failed_header = headers.get("x-failed-recipients", "")
    plain_subject = _TAGS.sub("", subject)
    lowered = text.lower()
    signature = _SIGNATURE.search(lowered[:20_000])
    subject_match = _BOUNCE_SUBJECT.search(plain_subject)
    ses = bounces.ses_notification(text) if "notificationType" in text[:4000] else None
    if ses is not None and ses.type in ("Bounce", "Delivery") and ses.report is not None:
        return ses.report, ses.original_message_id
    if not (
        is_report or failed_header or list_rejection or (automatic and (signature or subject_match)) or sender_is_system
    ):
        return None
    delayed_words = bounces.has_delay_words(plain_subject, lowered)
    report = bounces.delivery_status(message, text, delayed_words=delayed_words) if (is_report or "-recipient" in
                                                                                      text.lower()) else None  # fmt: skip
    if report is not None:
        return report, None
    exclude = {a for name in ("to", "cc", "return-path", "reply-to", "sender")
               for a in _addresses(headers.get(name, "")[:2000])}  # fmt: skip
    exclude |= set(original.senders) - {original.to}
    if sender.address:
        exclude.add(sender.address)
    weak = not (is_report or failed_header or list_rejection or (automatic and (signature or subject_match)))
    report = bounces.text_report(text, failed_header=failed_header, exclude=exclude, delayed_words=delayed_words,
                                 fallback=None if weak else original.to)  # fmt: skip
    if weak and not report.recipients:  # a mail system's notice that names no failed recipient: no bounce
        return None
    shape = "MTA"  # also when re.I matched a case the keys do not hold
    if signature:
        shape = _SIGNATURES.get(signature.group(0).lower(), shape)
    if shape == "MTA" and subject_match:
        for words, name in _SHAPE_BY_SUBJECT.items():
            if words in plain_subject.lower():
                shape = name
                break
    first = next((r for r in report.recipients if r.action == "failed"), None) or next(iter(report.recipients),
                                                                                       report.overall)  # fmt: skip
    status = first.status if first is not None else ""
    what = "delay warning" if report.kind == "delayed" else "non-delivery report"
    why = f"{shape} {what}, " + (f"Status: {status}" if status else "no status code")
    if not report.recipients:
        why += ", no failed address found"
    elif report.total > 1:
        why += f" ({report.total} recipients)"
    return dataclasses.replace(report, why=why), None


def _wrapped_bounce(message: mime.Message, outer: _Original) -> tuple[bounces.Report, str | None] | None:
    """The bounce a mail system forwarded as an attached message (a filter that wraps what it passes on): the
    attached message read as a bounce, one level down, when it is a delivery report."""
    attached = next((p for p in message.parts if p.content_type in ("message/rfc822", "message/global")), None)
    if attached is None or not attached.parts or attached.parts[0].content_type != "multipart/report":
        return None
    inner = mime.read(attached.payload(mime.MAX_BYTES))
    if inner is None:
        return None
    sender = _sender(inner.headers.get("from", ""))
    text, quoted = _texts(inner)
    original = _original(inner, text, quoted, ())
    found = _bounce(inner, inner.headers, text, _clean(_decoded(inner.headers.get("subject", "")), _MAX_SUBJECT),
                    sender, "wrapped report", original)  # fmt: skip
    if found is None or not found[0].recipients:
        return None
    return found[0], found[1] or original.message_id or outer.message_id


def _human_text(message: mime.Message) -> str:
    """What a mail system wrote for people: its text parts (or else HTML ones), not an attached message's, up to
    where it quotes the original message."""
    return _texts(message)[0]


def _texts(message: mime.Message) -> tuple[str, str]:
    """(what a mail system wrote for people, the quote of the original message after it): its text parts (or else
    HTML ones), not an attached message's, cut where it starts quoting the original message."""
    texts: list[str] = []
    for kind in ("text/plain", "text/html"):
        for part in message.parts:
            if part.content_type == kind:
                texts.append(part.text())
                if len(texts) >= 4:
                    break
        if texts:
            break
    whole = "\n".join(texts)[:_MAX_HUMAN_TEXT]
    marker = bounces.original_marker(whole)
    return (whole[: marker.start()], whole[marker.end() :]) if marker else (whole, "")


@dataclasses.dataclass(frozen=True)
class _Original:
    """What a report shows of the original message: its Message-ID, its recipient (when it has one), the addresses
    it came from (ours: never a failed recipient), and its X-Outreach enrollment and step."""

    message_id: str | None = None
    to: str | None = None
    senders: tuple[str, ...] = ()
    step: tuple[int, str] | None = None


def _original(message: mime.Message, text: str, quoted: str, references: tuple[str, ...]) -> _Original:
    """The original message a report returns: from its attached copy or header, else from its quote in the text
    (after the marker), else (for the Message-ID) the last id the report references (Exchange writes In-Reply-To)."""
    headers: Mapping[str, str] | None = None
    for part in message.parts:
        if part.content_type in ("message/rfc822", "message/global") and part.parts:
            headers = part.parts[0].headers
            break
        if part.content_type in ("text/rfc822-headers", "message/global-headers"):
            headers, _ = mime.read_headers(part.payload())
            break
    if headers is not None:
        message_id = next(iter(_ids(headers.get("message-id", ""))), None)
        to = _addresses(headers.get("to", "")[:2000])
        senders = [a for name in ("from", "sender", "reply-to", "return-path") for a in
                   _addresses(headers.get(name, "")[:2000])]  # fmt: skip
        step = _step(headers.get("x-outreach-enrollment", ""), headers.get("x-outreach-step", ""))
        return _Original(message_id or (references[-1] if references else None), to[0] if len(to) == 1 else None,
                         tuple(senders), step)  # fmt: skip
    found_id = _QUOTED_MESSAGE_ID.search(quoted) or _QUOTED_MESSAGE_ID.search(text)
    message_id = next(iter(_ids(found_id.group(1))), None) if found_id else None
    to_line = _QUOTED_TO.search(quoted)
    to = _addresses(to_line.group(1)) if to_line else []
    senders = [a for line in re.findall(r"(?im)^[ \t>]*(?:from|sender|return-path):[ \t]*([^\n]{1,300})", quoted)
               for a in _addresses(line)]  # fmt: skip
    enrollment, step_line = _QUOTED_ENROLLMENT.search(quoted), _QUOTED_STEP.search(quoted)
    step = _step(enrollment.group(1) if enrollment else "", step_line.group(1) if step_line else "")
    return _Original(message_id or (references[-1] if references else None), to[0] if len(to) == 1 else None,
                     tuple(senders), step)  # fmt: skip


def _step(enrollment: str, step: str) -> tuple[int, str] | None:
    enrollment, step = enrollment.strip(), step.strip()
    if not enrollment.isdigit() or not step or len(enrollment) > 18 or _CONTROL.search(step) or len(step) > 200:
        return None
    return int(enrollment), step


def _system_sender(headers: Mapping[str, str], sender: _Sender) -> str | None:
    """Why the sender is a mail system rather than a person, or None."""
    if "x-failed-recipients" in headers:
        return "X-Failed-Recipients"
    if sender.empty or (not sender.local and "".join(headers.get("return-path", "x").split()) == "<>"):
        return "mail-system sender <>"
    if sender.local and _SYSTEM_LOCAL.search(sender.local):
        return _clean(f"mail-system sender {sender.address or sender.local}", 100)
    if sender.name and _SYSTEM_NAME.search(sender.name):
        return _clean(f"mail-system sender {sender.name}", 100)
    return None


def _list_manager(headers: Mapping[str, str], sender: _Sender) -> str | None:
    """Why the message is a mailing-list manager's notice, or None."""
    if sender.local and _LIST_MANAGER_LOCAL.search(sender.local):
        return _clean(f"mailing-list manager {sender.address or sender.local}", 100)
    if any(name in headers for name in _LIST_HEADERS) and _LIST_NOTICE.search(headers.get("subject", "")):
        return "mailing-list manager notice"
    return None


def _sender(value: str) -> _Sender:
    value = value[:2000]
    quoted = _QUOTED.search(value)
    name = _decoded(quoted.group(0)[1:-1] if quoted else value.partition("<")[0])
    address = _address(value)
    if address is not None:
        return _Sender(address, address.rpartition("@")[0], _clean(name, 200), False)
    angle = _ANGLE_LOCAL.search(_COMMENT.sub(" ", _QUOTED.sub(" ", value)))
    if angle is not None:
        return _Sender(None, angle.group(1).lower(), _clean(name, 200), angle.group(1) == "")
    bare = _COMMENT.sub(" ", _QUOTED.sub(" ", value)).split()
    local = bare[0].lower() if len(bare) == 1 and _ID_CHARS.fullmatch(bare[0]) else ""
    return _Sender(None, local, _clean(_decoded(value), 200), False)


def _automatic_headers(headers: Mapping[str, str]) -> str | None:
    """Why the header fields mark a message as automatic mail, or None."""
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
    return None


def _read_receipt(message: mime.Message) -> tuple[str, ...] | None:
    """The Original-Message-ID of a disposition notification (a read receipt); None when it is none."""
    for part in message.parts:
        if part.content_type == "message/disposition-notification":
            fields = {k: v for block in mime.fields(part.text()) for k, v in block.items()}
            return _ids(fields.get("original-message-id", ""))
    root = message.root
    if root.content_type == "multipart/report" and root.params.get("report-type", "").lower() == \
            "disposition-notification":  # fmt: skip
        return ()
    return None


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
    if "@" not in value:
        return []
    value = _COMMENT.sub(" ", _QUOTED.sub(" ", value))  # display names and comments may hold anything
    found = _ANGLE_ADDR_SPEC.findall(value) or _BARE_ADDR_SPEC.findall(value)
    return [a.lower() for a in found if a.isprintable() or not _CONTROL.search(a)]


def _ids(value: str) -> tuple[str, ...]:
    """The message ids in a header value, each once, in order; at most the last `_MAX_IDS`."""
    bracketed = [re.sub(r"\s+", "", inner) for inner in _ID.findall(value)]
    if not bracketed:  # clients that leave out the angle brackets
        bracketed = _BARE_ID.findall(value)
    ids = tuple(dict.fromkeys(f"<{inner}>" for inner in bracketed if "@" in inner and _ID_CHARS.fullmatch(inner)))
    return ids[-_MAX_IDS:]


# --- replies ----------------------------------------------------------------------------------------------------


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
