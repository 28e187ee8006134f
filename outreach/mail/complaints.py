"""Feedback-loop complaints: a person marked our mail as spam, and their mailbox provider tells us (pure).

Called by the classifier (outreach/mail/inbound.py); no I/O. Three shapes:

- an Abuse Reporting Format report (RFC 5965): `multipart/report; report-type=feedback-report` with a
  `message/feedback-report` part (`Feedback-Type`, `Original-Rcpt-To`, ...) and the original message or its
  header attached. Yahoo, AOL, Microsoft (JMRP), Comcast, Fastmail and the FBL services send these. Feedback-Type
  `abuse`, `fraud`, `virus`, `other` (and any unknown one) is a complaint; `not-spam` says the opposite and
  `auth-failure` reports a failed SPF/DKIM/DMARC check, so neither is one;
- Amazon SES's JSON complaint notification (bounces.ses_notification);
- a provider's own complaint notice: from a feedback or abuse desk (`abuse@`, `complaints@`, `fbl@`, `feedback@`,
  `scomp@`, `staff@hotmail.com` ...) with a complaint subject ("complaint", "abuse report", "spam report",
  "feedback loop", "marked as spam" ...), carrying the original message or its header.

The person who complained is the report's `Original-Rcpt-To`, else the `To` of the original message (providers
often redact it; the caller then goes by the original's Message-ID, which names the message and so its recipient).
"""

from __future__ import annotations

import dataclasses
import re

from outreach.mail import bounces, mime

_NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})
_DESKS = re.compile(
    r"^(?:abuse|complaints?|feedback|feedbackloop|fbl|arf|spam|spamreport|spam-report|report-?spam|scomp|"
    r"staff|junk|postmaster-fbl|fbl-\w+|\w+-fbl|\w+-abuse|abuse-\w+)$",
    re.I,
)
_SUBJECT = re.compile(
    r"complaint|abuse report|spam report|report(?:ed)? (?:as )?spam|marked as (?:spam|junk)|feedback[- ]loop|"
    r"\bfbl\b|junk (?:mail )?report|email abuse|user reported|spam complaint",
    re.I,
)
_ORIGINALS = frozenset({"message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"})


@dataclasses.dataclass(frozen=True)
class Complaint:
    """What a complaint reports: who complained (lower case; empty when the report redacts them), its feedback type
    ("" when it has none), the Message-ID of the message complained about when the report carries one, and why it
    is taken for a complaint."""

    complainants: tuple[str, ...]
    feedback_type: str
    original_message_id: str | None
    why: str


@dataclasses.dataclass(frozen=True)
class NotAComplaint:
    """A feedback report that is no complaint (`not-spam`, `auth-failure`): automatic mail, about our mail or not."""

    why: str


def read(message: mime.Message, subject: str, sender_local: str, text: str) -> Complaint | NotAComplaint | None:
    """The complaint `message` is, or None. `text` is its text for people."""
    root = message.root
    report = next((p for p in message.parts if p.content_type == "message/feedback-report"), None)
    arf = report is not None or (
        root.content_type == "multipart/report" and root.params.get("report-type", "").lower() == "feedback-report"
    )
    if arf:
        fields: dict[str, str] = {}
        for block in mime.fields(report.text() if report is not None else ""):
            for name, value in block.items():
                fields.setdefault(name, value)
        feedback = bounces.clean(fields.get("feedback-type", "").split(";")[0].strip().lower(), 40) or "abuse"
        if feedback in _NOT_COMPLAINTS:
            return NotAComplaint(f"ARF feedback report (Feedback-Type: {feedback})")
        complainants = _addresses(fields.get("original-rcpt-to", "")) or _original_to(message)
        return Complaint(complainants, feedback, None, f"ARF complaint (Feedback-Type: {feedback})")
    ses = bounces.ses_notification(text)
    if ses is not None and ses.type == "Complaint":
        why = "Amazon SES complaint notification" + (f" ({ses.feedback_type})" if ses.feedback_type else "")
        return Complaint(ses.complained, ses.feedback_type, ses.original_message_id, why)
    if (
        _DESKS.match(sender_local)
        and _SUBJECT.search(subject)
        and (any(p.content_type in _ORIGINALS for p in message.parts) or bounces.original_marker(text))
    ):
        return Complaint(_original_to(message), "", None, f"complaint notice from {sender_local}@ (not ARF)")
    return None


def from_desk(local: str) -> bool:
    """Whether a sender's local part is that of a feedback or abuse desk."""
    return bool(_DESKS.match(local))


def _addresses(value: str) -> tuple[str, ...]:
    found = [m.group(1).lower() for m in bounces.ADDRESS.finditer(value[:10_000])]
    return tuple(dict.fromkeys(found))[: bounces.MAX_RECIPIENTS]


def _original_to(message: mime.Message) -> tuple[str, ...]:
    for part in message.parts:
        if part.content_type in ("message/rfc822", "message/global") and part.parts:
            return _addresses(part.parts[0].headers.get("to", ""))
        if part.content_type in ("text/rfc822-headers", "message/global-headers"):
            headers, _ = mime.read_headers(part.payload())
            return _addresses(headers.get("to", ""))
    return ()
