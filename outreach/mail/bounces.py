"""What a bounce says: which recipients failed or were delayed, with what status, for what reason (pure).

Called by the classifier (outreach/mail/inbound.py) with a message it takes for a bounce or may be one; no I/O.

Three readers, tried in turn:

1. `delivery_status`: an RFC 3464 delivery status notification, per recipient: `Action`, `Status`,
   `Diagnostic-Code`, `Original-Recipient` / `Final-Recipient` (and `X-Actual-Recipient`). The fields are read from
   a `message/delivery-status` (or RFC 6533 `message/global-delivery-status`) part, or, for mail systems that put
   them in the text (Courier, Bigfoot, Amazon SES), from the text. `delivered`, `relayed`, `expanded`,
   `deliverable` and any 2.x.x status are deliveries, never failures; an unknown Action counts by its status, and
   a recipient with neither is no failure. A status missing from the report is taken from the Diagnostic-Code,
   else from what the text says about that recipient; a generic X.0.0 gives way to a specific code of the same
   class in the diagnostic.
2. `ses_notification`: Amazon SES's JSON notifications, mailed as they are (`notificationType`: Bounce,
   Complaint, Delivery).
3. `text_report`: the rest, written for people: Postfix, Exim, Sendmail, qmail, Exchange and Microsoft 365,
   Gmail, Yahoo, Domino, Notes, Courier, OpenSMTPD, GMX, Zoho, Mimecast, m-FILTER, Japanese carriers and others.
   The failed addresses are found by where they stand in the text, not by which software wrote it: an address alone
   on a line (`<addr>:`, `"addr":`, `* addr`, `-- addr`), before a reply (`addr: 550 5.1.1 ...`), after a reply
   code (`554 <addr>... User unknown`), after a label (`Recipient address:`, `RCPT TO:`, `Original address:`),
   after words such as "could not be delivered to" or "error delivering your mail to", and in
   `X-Failed-Recipients`. What the text says about each address is the lines from where it is named to where the
   next one is, and every other place that names it (Sendmail's transcript names it again): its status is the
   enhanced status code there, else the SMTP reply code as X.0.0, else the one code of the whole report.

Each failed recipient gets a reason (`Reason`) from the server's words first, else from its status code
(X.1.1 user unknown, X.2.2 mailbox full, X.1.2 and X.4.4 host unknown, X.2.3 and X.3.4 too large, X.4.7 expired,
X.7.x policy), and `permanent` from the reason: only an address that does not exist (user unknown, host unknown,
or another 5.x.x failure the words do not explain) is permanent. A full mailbox, an expired message, spam, policy
and blocks, a message too large: the message failed, the address is fine. A delay is never permanent.

Everything is bounded: at most `MAX_RECIPIENTS` recipients are read (a report may list 20,000; `Report.total`
counts them all), and every string is one line without control characters.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Collection, Iterable, Sequence

from outreach.mail import mime

MAX_RECIPIENTS = 100
MAX_DIAGNOSTIC = 300
_MAX_LINES = 3000  # of a report's text read
_MAX_CONTEXT = 12  # lines that belong to one recipient at most

# Line breaks, other control characters, zero-width and bidirectional marks, and lone surrogates.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]+")

_LOCAL = r"[^\s<>()\[\]{},;:\"'@\\=|*/?]+(?:\.[^\s<>()\[\]{},;:\"'@\\=|*/?.]+)*"
_DOMAIN = r"(?:[\w-]+\.)+(?:[^\W\d_]{2,63}|xn--[\w-]{2,59})"
ADDRESS = re.compile(rf"(?<![\w.+-])({_LOCAL}@{_DOMAIN})(?![\w-]*@)(?!\.?[\w-])")
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_FAILURE_STATUS = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")  # what a report's text may say
_REPLY_CODE = re.compile(
    r"(?:^|(?<=[\s:#(\[<>\"'=]))([45](?:[0-5]\d))(?=[\s\-,.;:)\]\"']|$)"
)  # an SMTP reply code where one stands: at a line start, after "said:", "#", "<<<", "(", "[", "ERROR_CODE :"
_VALID_CODES = frozenset(
    {"421", "450", "451", "452", "454", "455", "500", "501", "502", "503", "504", "510", "511", "512", "513",
     "521", "523", "530", "534", "535", "538", "540", "541", "550", "551", "552", "553", "554", "555", "556", "557"}
)  # fmt: skip


class Reason(enum.StrEnum):
    """Why a recipient's mail failed."""

    USER_UNKNOWN = "user_unknown"  # the mailbox does not exist (or no longer takes mail)
    MAILBOX_FULL = "mailbox_full"
    HOST_UNKNOWN = "host_unknown"  # the domain does not exist or has no mail server
    BLOCKED = "blocked"  # a block list, a filter, a refused connection: about us, not the address
    POLICY = "policy"  # the receiver's rules: relaying, authentication, SPF/DMARC, a list's members only
    SPAM = "spam"  # the content was taken for spam or a virus
    TOO_LARGE = "too_large"
    EXPIRED = "expired"  # the sending server gave up after retrying
    OTHER = "other"


# The server's words, most telling first. The first group decides over a status code; the rest only when the
# status says nothing specific.
_STRONG: tuple[tuple[Reason, re.Pattern[str]], ...] = (
    (
        Reason.SPAM,
        re.compile(
            r"\bspam\b|spamming|junk mail|unsolicited|\bvirus\b|malware|infected|phish|content (?:was )?rejected|"
            r"rejected (?:because|due to) (?:its |the )?content|message content (?:rejected|not accepted)|"
            r"suspicious content|looks like spam|bulk mail"
        ),
    ),
    (
        Reason.BLOCKED,
        re.compile(
            r"block ?list|black ?list|blacklisted|\brbl\b|dnsbl|spamhaus|spamcop|sorbs|barracudacentral|"
            r"(?:ip|client|sender|host|connection|address|message)s? (?:was |has been |is )?(?:temporarily )?blocked|"
            r"blocked (?:by|using|because|due)|poor reputation|bad reputation|reputation|\bbanned\b|"
            r"listed (?:at|on|in|by) "
        ),
    ),
    (
        Reason.TOO_LARGE,
        re.compile(
            r"too (?:large|big)|size (?:limit|exceeds)|exceeds? (?:the )?(?:fixed )?(?:maximum|max\.?|allowed) "
            r"(?:message |mail )?size|message size|mail size|maximum (?:message |mail )?size|databytes limit|"
            r"message length exceeds|message is larger than"
        ),
    ),
    (
        Reason.MAILBOX_FULL,
        re.compile(
            r"mailbox (?:is )?full|full mailbox|(?:mailbox|mail|disk|storage|user) quota|over (?:the )?"
            r"(?:allowed )?quota|quota (?:exceeded|violation|usage exceeded|exceed)|exceed(?:ed|s|ing)? (?:its |their "
            r"|the )?(?:mailbox |storage |disk )?(?:quota|storage allocation|space limit|local limit|receiving "
            r"limits)|insufficient (?:storage|disk space|system storage)|not enough (?:storage|space|disk)|"
            r"mail ?folder is full|space has been used up|too many messages (?:on|in)|would exceed (?:maximum|the)|"
            r"mailbox (?:size|has) exceeded|exceeds allowed size|too much mail data|recipient's mailbox exceeded|"
            r"mailbox exceeded|out of (?:storage|space)"
        ),
    ),
    (
        Reason.EXPIRED,
        re.compile(
            r"retry time(?:out)? (?:exceeded|expired)|(?:delivery time|message|queue lifetime) (?:has )?expired|"
            r"delivery expired|message expired|queue\.expired|gave up|giving up on|too long in (?:the )?queue|"
            r"has been in the queue too long|(?:could|was) not (?:be )?delivered within|maximum time|"
            r"couldn't be delivered in the allowed time|delivery period|after \d+ attempt|attempts? to deliver over|"
            r"over a period of"
        ),
    ),
)
_WEAK: tuple[tuple[Reason, re.Pattern[str]], ...] = (
    (
        Reason.HOST_UNKNOWN,
        re.compile(
            r"host (?:or domain name )?(?:not found|unknown)|unknown host|host unreachable|domain (?:does not exist|"
            r"doesn'?t exist|not found|is not reachable|must exist|name not found|unknown)|no such domain|"
            r"unknown domain|unrout(?:e)?able (?:address|domain|mail domain)|name or service not known|"
            r"name ?service error|couldn'?t find any host|could not find (?:any host|a gateway)|no mx |"
            r"no mail exchanger|mail exchanger|no valid mx|nxdomain|all host address lookups failed|"
            r"non-existent host|nonexistentdomain|dns error|no route to|domain (?:name )?lookup failed|"
            r"remote domain doesnt exist|mail domain mentioned in email address is unknown|"
            r"no (?:mx|a) records?|invalid domain"
        ),
    ),
    (
        Reason.USER_UNKNOWN,
        re.compile(
            r"user(?:name)? (?:unknown|not found|not known|does not exist|doesn'?t exist|is unknown|"
            r"not exist|invalid)|unknown (?:user|recipient|local[- ]?part|mailbox|e-?mail|address|account)|"
            r"no such (?:user|recipient|mailbox|address|person|account|local user|e-?mail)|"
            r"(?:mailbox|recipient|address|account|user|destinatario|utilisateur)\S* (?:\S+ ){0,3}(?:does not exist|"
            r"doesn'?t exist|not found|unavailable|is unavailable|is inactive|not present|invalid|disabled|"
            r"deactivated|is closed|has been closed|suspended|no longer (?:exists|available|valid))|"
            r"invalid (?:recipient|mailbox|address|user|final delivery)|recipient (?:address )?rejected|"
            r"\bno mailbox\b|not a (?:valid|known) (?:user|mailbox|recipient)|is not a valid mailbox|"
            r"bad (?:destination|recipient|address)|address (?:unknown|rejected|does not exist|not found|invalid)|"
            r"no account by that name|doesn'?t have an? \S+ account|not listed in|name is not recognized|"
            r"recip(?:ient)?notfound|mailbox unavailable|no longer accepts mail|undeliverable address|"
            r"does not like recipient|no one at this address|non-?existent (?:user|recipient|address)|"
            r"account that you tried to reach (?:does not exist|is disabled)|couldn'?t be found|"
            r"wasn'?t found at|not found by smtp address lookup|no mailbox here|badrcptto|user not active|"
            r"not our customer|utilisateur non recens|no existe|existiert nicht|unbekannt|inexistant|"
            r"宛先不明|存在しません|見つかりません|アドレスが(?:不明|存在)"
        ),
    ),
    (
        Reason.POLICY,
        re.compile(
            r"polic(?:y|ies)|not permitted|relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)|"
            r"unable to relay|relay not|authentication (?:required|failed)|must (?:authenticate|be authenticated)|"
            r"\bdmarc\b|\bspf\b|\bdkim\b|sender (?:address )?(?:rejected|verify failed|domain)|"
            r"not (?:a )?member|not subscribed|non-?member|only (?:members|subscribers)|not allowed to (?:post|send)|"
            r"moderat|you do not have permission|permission denied|restricted"
        ),
    ),
    (
        Reason.BLOCKED,
        re.compile(
            r"\bblocked\b|access denied|\bdenied\b|refused|rejected by|not allowed|\bfilter(?:ed)?\b|"
            r"not accepted|rejected"
        ),
    ),
)
_BY_STATUS = {
    "1.1": Reason.USER_UNKNOWN, "1.10": Reason.USER_UNKNOWN, "1.6": Reason.USER_UNKNOWN,
    "2.1": Reason.USER_UNKNOWN, "1.2": Reason.HOST_UNKNOWN, "4.4": Reason.HOST_UNKNOWN,
    "2.2": Reason.MAILBOX_FULL, "2.3": Reason.TOO_LARGE, "3.4": Reason.TOO_LARGE, "4.7": Reason.EXPIRED,
}  # fmt: skip
_WORDS_BEFORE_STATUS = {Reason.USER_UNKNOWN, Reason.HOST_UNKNOWN}  # a specific status outranks the weak words but these


# Words one of which a text must hold for each pattern above to be tried: a substring test costs a fraction of a
# regular expression's search, and most texts hold the words of two or three reasons at most.
_KEYS: dict[re.Pattern[str], tuple[str, ...]] = {
    _STRONG[0][1]: ("spam", "junk", "unsolicited", "virus", "malware", "infected", "phish", "content", "bulk"),
    _STRONG[1][1]: (
        "block",
        "black",
        "rbl",
        "spamhaus",
        "spamcop",
        "sorbs",
        "barracuda",
        "reputation",
        "banned",
        "listed",
    ),
    _STRONG[2][1]: ("large", "big", "size", "databytes", "length"),
    _STRONG[3][1]: ("full", "quota", "exceed", "insufficient", "not enough", "space", "too many", "too much", "out of"),
    _STRONG[4][1]: (
        "retry",
        "expired",
        "gave up",
        "giving up",
        "queue",
        "within",
        "maximum time",
        "allowed time",
        "period",
        "attempt",
    ),
    _WEAK[0][1]: ("host", "domain", "unrout", "name", "mx", "exchanger", "dns", "route", "record"),
    _WEAK[1][1]: (
        "user",
        "unknown",
        "no such",
        "mailbox",
        "recipient",
        "address",
        "account",
        "invalid",
        "not a ",
        "bad ",
        "listed",
        "recogni",
        "recip",
        "accepts",
        "no one",
        "existent",
        "found",
        "badrcpt",
        "customer",
        "recens",
        "exist",
        "unbekannt",
        "destinatario",
        "utilisateur",
        "宛先",
        "存在",
        "見つかり",
        "アドレス",
    ),
    _WEAK[2][1]: (
        "polic",
        "permit",
        "relay",
        "authenticat",
        "dmarc",
        "spf",
        "dkim",
        "sender",
        "member",
        "subscri",
        "only",
        "allowed",
        "moderat",
        "permission",
        "restricted",
    ),
    _WEAK[3][1]: ("block", "denied", "refused", "rejected", "allowed", "filter", "accepted"),
}


# Each pattern is tried only where a word starts (not after an ASCII letter or digit, so that Japanese text, all word
# characters, is still searched): Python's regular expressions try every alternative at every position, and this
# halves the time of a search.
_AT_WORDS = {pattern: re.compile(r"(?<![a-z0-9])(?:" + pattern.pattern + ")") for pattern in _KEYS}
_KEY_PATTERNS = {pattern: re.compile("|".join(re.escape(k) for k in keys)) for pattern, keys in _KEYS.items()}


def _says(pattern: re.Pattern[str], text: str) -> bool:
    return _KEY_PATTERNS[pattern].search(text) is not None and _AT_WORDS[pattern].search(text) is not None


def reason_of(status: str, text: str) -> Reason:
    """The reason of a failure from its status (like 5.1.1, or "") and what the server said."""
    text = text[:1000].lower()  # the patterns are written in lower case: case-insensitive matching is slower
    for reason, pattern in _STRONG:
        if _says(pattern, text):
            return reason
    _, _, subject_detail = status.partition(".")
    by_status = _BY_STATUS.get(subject_detail)
    weak = next((reason for reason, pattern in _WEAK if _says(pattern, text)), None)
    if by_status is not None and (weak is None or weak not in _WORDS_BEFORE_STATUS):
        return by_status
    if weak is not None:
        return weak
    if subject_detail.startswith("7."):
        return Reason.POLICY
    if subject_detail in ("1.0", "1.3"):
        return Reason.USER_UNKNOWN if subject_detail == "1.0" else Reason.OTHER
    return Reason.OTHER


def is_permanent(reason: Reason, status: str, failed: bool) -> bool:
    """Whether the address is shown not to take mail (and should be suppressed): a failure because the user or the
    domain does not exist, or another 5.x.x failure the server's words do not explain; never a delay."""
    if not failed or status.startswith(("4", "2")):
        return False
    return reason in (Reason.USER_UNKNOWN, Reason.HOST_UNKNOWN, Reason.OTHER)


@dataclasses.dataclass(frozen=True)
class BouncedRecipient:
    """One address a bounce or delay warning reports on.

    address: the address the message was sent to (Original-Recipient when the report gives it, else
    Final-Recipient), lower case; "" for what a report says about nobody in particular. final_recipient: the
    Final-Recipient, which differs after an alias or forward. action: failed or delayed. status: like 5.1.1, or ""
    when the report has none. diagnostic: the server's words. permanent: the address does not take mail (see
    `is_permanent`). reason: a `Reason` value.
    """

    address: str
    final_recipient: str
    action: str
    status: str
    diagnostic: str
    permanent: bool
    reason: str = Reason.OTHER.value


@dataclasses.dataclass(frozen=True)
class Report:
    """What a bounce reports. kind: "bounce" (some recipient failed for good), "delayed" (only delays), or "other"
    (a report of deliveries only). overall: what the report says when it names no recipient or names more than it
    explains (its one status and words), for a caller that knows which recipient it is about. total: how many
    recipients it named, of which at most MAX_RECIPIENTS are in `recipients`."""

    kind: str
    why: str
    recipients: tuple[BouncedRecipient, ...] = ()
    overall: BouncedRecipient | None = None
    total: int = 0


def clean(text: str, limit: int) -> str:
    """One line: control characters, line breaks and invisible marks become spaces; at most `limit` characters."""
    line = " ".join((text if text.isprintable() else CONTROL.sub(" ", text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- RFC 3464 ----------------------------------------------------------------------------------------------------

DSN_PARTS = ("message/delivery-status", "message/global-delivery-status")
_SUCCESS = frozenset({"delivered", "relayed", "expanded", "deliverable"})
_FIELD_LINE = re.compile(r"^[ \t]*(?:final|original)-recipient[ \t]*:", re.I | re.M)


def delivery_status(message: mime.Message, text: str, *, delayed_words: bool) -> Report | None:
    """The report of an RFC 3464 DSN: from its delivery-status part, or from DSN fields in `text` (the report's
    text for people, which also fills in what the fields leave out). None when there are no per-recipient fields."""
    blocks: list[dict[str, str]] = []
    named = 0  # the recipients the report names, read or not (a report may list 20,000)
    for part in message.parts:
        if part.content_type in DSN_PARTS:
            blocks += mime.fields(part.text(mime.MAX_TEXT * 4), MAX_RECIPIENTS + 2)
            named += part.body.lower().count(b"final-recipient:")
    if not any(_recipient_field(b) for b in blocks) and _FIELD_LINE.search(text):
        blocks = mime.fields(text)  # fields written into the text (Courier, Bigfoot, Mimecast...)
    recipients: list[BouncedRecipient] = []
    delivered: list[str] = []
    unknown: list[str] = []
    total = 0
    lines = _lines(text)
    for fields in blocks:
        final = _field_address(fields.get("final-recipient", "") or fields.get("x-actual-recipient", ""))
        original = _field_address(fields.get("original-recipient", ""))
        if not (final or original):
            continue
        total += 1
        if len(recipients) >= MAX_RECIPIENTS:
            continue
        action = _action((fields.get("action", "").split() or [""])[0].strip(";,.").lower())
        diagnostic = fields.get("diagnostic-code", "")
        if ";" in diagnostic[:24]:
            diagnostic = diagnostic.split(";", 1)[1]
        diagnostic = clean(diagnostic, MAX_DIAGNOSTIC)
        status = _status_of(fields.get("status", ""), diagnostic)
        if not status or not diagnostic or status.endswith(".0.0"):  # what the text says about this recipient
            said_status, said = _said_about(lines, original or final, final)
            if not status or (status.endswith(".0.0") and said_status[:1] == status[:1] and said_status[1:] != ".0.0"):
                status = said_status or status
            diagnostic = diagnostic or said
        if action in _SUCCESS or status.startswith("2"):
            delivered.append(action or f"Status {status}")
            continue
        if action not in ("failed", "delayed"):  # unknown or missing: its status says which, else nothing failed
            if status.startswith("5"):
                action = "failed"
            elif status.startswith("4"):
                action = "delayed"
            else:
                unknown.append(action or "none")
                continue
        address = original or final
        reason = reason_of(status, diagnostic)
        recipients.append(BouncedRecipient(address, final or original, action, status, diagnostic,
                                           is_permanent(reason, status, action == "failed"), reason.value))  # fmt: skip
    if not recipients:
        if delivered or unknown:
            said = delivered[0] if delivered else f"{clean(unknown[0], 40)} and no status"
            return Report("other", f"DSN Action: {said} (no failure reported)")
        return None
    first = next((r for r in recipients if r.action == "failed"), recipients[0])
    total = max(total, named)
    why = f"DSN Action: {first.action}, " + (f"Status: {first.status}" if first.status else "no Status")
    if total > 1:
        why += f" ({total} recipients" + (f", the first {MAX_RECIPIENTS} read)" if total > MAX_RECIPIENTS else ")")
    kind = "bounce" if any(r.action == "failed" for r in recipients) else "delayed"
    return Report(kind, why, tuple(recipients), None, total)  # it names its recipients: `overall` is not needed


def _action(word: str) -> str:
    """An Action field's word, the variants mail systems write made standard."""
    if word.startswith("fail") or word in ("bounced", "undeliverable", "rejected"):
        return "failed"
    if word.startswith("delay"):
        return "delayed"
    return word


def _recipient_field(fields: dict[str, str]) -> bool:
    return any(name in fields for name in ("final-recipient", "original-recipient", "x-actual-recipient"))


def _field_address(value: str) -> str:
    """The address of a Final-Recipient or Original-Recipient field ("rfc822; jo@example.org"), lower case; "" when
    it holds none."""
    if ";" in value:
        value = value.split(";", 1)[1]
    value = value.strip().strip("<>").strip()
    if "@" not in value or CONTROL.search(value) or " " in value:
        found = ADDRESS.search(value)
        return found.group(1).lower() if found else ""
    return clean(value, 320).lower()


def _status_of(field: str, diagnostic: str) -> str:
    """The status of a recipient: its Status field, made specific by the diagnostic when the field is X.0.0, or from
    the diagnostic alone (an SMTP reply code alone gives X.0.0)."""
    found = _STATUS.search(field)
    status = found.group(0) if found else ""
    if not status:
        code = _REPLY_CODE.search(field.strip())
        if code and code.group(1) in _VALID_CODES:
            status = f"{code.group(1)[0]}.0.0"
    said = _FAILURE_STATUS.search(diagnostic)
    if said and (not status or (status.endswith(".0.0") and said.group(1) == status[0])):
        return said.group(0)
    if status:
        return status
    code = _REPLY_CODE.search(diagnostic)
    if code and code.group(1) in _VALID_CODES:
        return f"{code.group(1)[0]}.0.0"
    return ""


# --- Amazon SES notifications ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SesNotification:
    """An Amazon SES notification: its type (Bounce, Complaint, Delivery), what it reports, and the Message-ID of
    the message it is about (from the notification's copy of its headers)."""

    type: str
    report: Report | None
    complained: tuple[str, ...]
    feedback_type: str
    original_message_id: str | None


def ses_notification(text: str) -> SesNotification | None:
    """The SES notification a message's text is (a JSON object, possibly inside an SNS envelope); None otherwise."""
    start = text.find("{")
    if start < 0 or start > 200 or ('"notificationType"' not in text and '\\"notificationType\\"' not in text):
        return None
    try:
        data = json.loads(text[start : text.rfind("}") + 1])
        if isinstance(data, dict) and isinstance(data.get("Message"), str):
            data = json.loads(data["Message"])
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("notificationType"), str):
        return None
    kind = data["notificationType"]
    mail = data.get("mail")
    original = _ses_message_id(mail) if isinstance(mail, dict) else None
    if kind == "Bounce" and isinstance(data.get("bounce"), dict):
        bounce = data["bounce"]
        transient = str(bounce.get("bounceType", "")) == "Transient"
        recipients: list[BouncedRecipient] = []
        listed = bounce.get("bouncedRecipients") if isinstance(bounce.get("bouncedRecipients"), list) else []
        for entry in listed[:MAX_RECIPIENTS]:
            if not isinstance(entry, dict) or not isinstance(entry.get("emailAddress"), str):
                continue
            address = _field_address(entry["emailAddress"])
            if not address:
                continue
            diagnostic = str(entry.get("diagnosticCode", ""))
            if ";" in diagnostic[:24]:
                diagnostic = diagnostic.split(";", 1)[1]
            diagnostic = clean(diagnostic, MAX_DIAGNOSTIC)
            status = _status_of(str(entry.get("status", "")), diagnostic)
            sub_type = str(bounce.get("bounceSubType", ""))
            reason = {"MailboxFull": Reason.MAILBOX_FULL, "MessageTooLarge": Reason.TOO_LARGE,
                      "ContentRejected": Reason.SPAM, "AttachmentRejected": Reason.SPAM,
                      "NoEmail": Reason.USER_UNKNOWN}.get(sub_type) or reason_of(status, diagnostic)  # fmt: skip
            action = "delayed" if transient and status.startswith("4") else "failed"
            permanent = not transient and is_permanent(reason, status, True)
            recipients.append(BouncedRecipient(address, address, action, status, diagnostic, permanent, reason.value))
        why = f"Amazon SES bounce notification ({bounce.get('bounceType', '?')}/{bounce.get('bounceSubType', '?')})"
        report = None
        if recipients:
            kind_of = "bounce" if any(r.action == "failed" for r in recipients) else "delayed"
            report = Report(kind_of, clean(why, 200), tuple(recipients), None, len(listed))
        return SesNotification("Bounce", report, (), "", original)
    if kind == "Complaint" and isinstance(data.get("complaint"), dict):
        complaint = data["complaint"]
        listed = complaint.get("complainedRecipients")
        addresses = tuple(
            a for e in (listed if isinstance(listed, list) else [])[:MAX_RECIPIENTS]
            if isinstance(e, dict) and isinstance(e.get("emailAddress"), str) and (a := _field_address(e["emailAddress"]))
        )  # fmt: skip
        feedback = clean(str(complaint.get("complaintFeedbackType", "")), 40)
        return SesNotification("Complaint", None, addresses, feedback, original)
    if kind == "Delivery":
        return SesNotification("Delivery", Report("other", "Amazon SES delivery notification"), (), "", original)
    return None


def _ses_message_id(mail: dict[str, object]) -> str | None:
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return _angle_id(common["messageId"])
    headers = mail.get("headers")
    if isinstance(headers, list):
        for header in headers:
            if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
                return _angle_id(str(header.get("value", "")))
    return None


def _angle_id(value: str) -> str | None:
    value = value.strip()
    inner = value[1:-1] if value.startswith("<") and value.endswith(">") else value
    if "@" not in inner or CONTROL.search(inner) or " " in inner or "<" in inner or ">" in inner:
        return None
    return f"<{inner}>"


# --- reports written for people ----------------------------------------------------------------------------------

# A line that names an address for another reason than its failing: a header of the original, our own sender.
_NOT_A_RECIPIENT_LINE = re.compile(
    r"^[ \t>*•·-]*(?:from|sender|reply-to|return-path|message-id|in-reply-to|references|received|by|envelope-from|"
    r"mail from|x-[\w-]+|dkim-signature|arc-[\w-]+|authentication-results|list-[\w-]+|errors-to|cc|bcc|"
    r"reporting-mta|received-from-mta|remote-mta|original-envelope-id|sender address|return-receipt-to|"
    r"disposition-notification-to|resent-[\w-]+|delivered-to|envelope-to|x-original-to|x-envelope-to)"
    r"[ \t]*[:=]|^[ \t>]*to[ \t]*:|mail from:|envelope from|\bfrom:?\s*<|sent by|the original message was (?:received|sent)|"
    r"(?:contact|write to|send mail to|e-?mail|reach|notify|inform) (?:the |your |our )?(?:postmaster|"
    r"administrator|helpdesk|help desk|support|system administrator|hostmaster)|for (?:more )?(?:help|"
    r"information|assistance)|please contact|if you (?:have|need)|questions",
    re.I,
)
# Addresses that stand where failed recipients stand (the group is the address): alone on a line, or first on it
# before a colon, a reply, a bracket or a few words about it.
_RECIPIENT_LINE = re.compile(
    rf"^[ \t]*(?:[-*•·>+]{{1,3}}|\d{{1,3}}[.)]|\(\d+\))?[ \t]*(?:(?:smtp|rfc822|mailto)[=:;][ \t]*)?[<\"'(\[]?"
    rf"({_LOCAL}@{_DOMAIN})[>\"')\]]?[ \t]*(?::|;|,|\.|$|<|[ \t]+(?:on[ \t]|\(|\[|<|[45]\d\d|#|invalid|"
    rf"user|unknown|failed|error|-{{1,2}}|\u2013|because|reason|\w+ (?:\w+ )?(?:not|does|is|has|was)))",
    re.I,
)
_LABELLED = re.compile(
    rf"(?:recipient(?:[ -]address)?|original(?:[ -]address|[ -]recipient)?|final[ -]recipient|failed[ -]recipients?|"
    rf"address(?:e)?|rcpt to|destinataire|empfänger|destinatario|user|unknown user|invalid address|"
    rf"mailbox|e-?mail(?:[ -]address)?|宛先|送信先)[ \t]*(?:\(s\))?[ \t]*[:=][ \t]*[<\[\"']?"
    rf"(?:(?:smtp|rfc822|mailto)[=:;])?[ \t]*[<\"']?({_LOCAL}@{_DOMAIN})",
    re.I,
)
_TO_LABEL = re.compile(rf"^[ \t>]*to[ \t]*:[ \t]*(?:[^<\n]{{0,80}}<)?[\"']?({_LOCAL}@{_DOMAIN})", re.I)
_LABEL_ANY = re.compile(rf"^[^:@<>\n]{{3,80}}:[ \t]*[<\[\"']?({_LOCAL}@{_DOMAIN})[>\]\"']?[ \t.]*$", re.I)
_SMTP_PREFIX = re.compile(rf"(?:smtp|rfc822)[=:;][ \t]*<?({_LOCAL}@{_DOMAIN})", re.I)
_AFTER_CODE = re.compile(rf"(?:^|[\s:#>(\[])[45]\d\d[ \-](?:[#]?[245]\.\d{{1,3}}\.\d{{1,3}}[ \-])?[^<@\n]{{0,60}}?"
                         rf"[<\"']?({_LOCAL}@{_DOMAIN})", re.I)  # fmt: skip
_AFTER_WORDS = re.compile(
    rf"(?:(?:could|can)(?:n'?t| ?not)\s+(?:be\s+)?deliver(?:ed)?\s+(?:your\s+message\s+|the\s+message\s+|mail\s+)?to|"
    rf"(?:was|were|is)\s+not\s+delivered\s+to|not\s+be\s+delivered\s+to|delivery\s+to|"
    rf"deliver(?:ing)?\s+(?:your\s+)?(?:mail|message|e-?mail)\s+to|unable\s+to\s+deliver\s+(?:your\s+)?"
    rf"(?:message\s+|mail\s+)?to|failed\s+to\s+deliver\s+to|(?:message|mail|e-?mail)\s+to|undeliverable\s+to|"
    rf"error\s+delivering\s+(?:your\s+)?(?:mail|message)\s+to|rejected\s+(?:recipient|your\s+message\s+to)|"
    rf"sending\s+to|recipient|following\s+(?:address|recipient)[^:\n]{{0,40}}:|did\s+not\s+reach|"
    rf"couldn'?t\s+be\s+delivered\s+to|addressed(?:\s+to)?,?|generated\s+from|expanded\s+from:?|(?:local\s+)?mailbox|"
    rf"delivery\s+failed\s+(?:\d+\s+attempts\s*)?:?)[ \t]*[:]?[ \t]*[<\"'(\[]?({_LOCAL}@{_DOMAIN})",
    re.I,
)
_STRONG_PATTERNS = (_RECIPIENT_LINE, _LABELLED, _AFTER_CODE, _AFTER_WORDS, _SMTP_PREFIX, _LABEL_ANY)
# Where a report starts quoting the original message: its text after this is not the mail system's. A line that
# starts with a rule of dashes (or one of a few phrases) and names the original.
_MARKER_START = re.compile(
    r"^[ \t]*(?:[-=_*]{2,}|original message|below is a copy|the attachment contains|------ this is)", re.M
)  # on lower-case text
_MARKER_WORDS = re.compile(
    r"copy of (?:the|your) message|original message|message headers|below this line|undelivered message|"
    r"returned message|unsent message|header of the original|original mail|message header follows|"
    r"header of the source mail|returned mail|below is a copy of the original message|"
    r"the attachment contains the original mail headers|original message (?:as received )?(?:is )?(?:as )?follows|"
    r"this is a copy of the message"
)
_MARKER_ALONE = re.compile(r"^[ \t]*original message (?:headers?|details):", re.M)  # on lower-case text


def original_marker(text: str) -> re.Match[str] | None:
    """Where a report's text starts quoting the original message (a match of that line), or None."""
    lowered = text.lower()
    for start in _MARKER_START.finditer(lowered):
        end = lowered.find("\n", start.start())
        line = lowered[start.start() : end if end >= 0 else len(lowered)]
        if _MARKER_WORDS.search(line[:200]):
            return start
    return _MARKER_ALONE.search(lowered)


_DAEMONS = frozenset(
    {"mailer-daemon", "mailerdaemon", "mailer_daemon", "mail-daemon", "postmaster", "post_master", "post-master",
     "hostmaster", "abuse", "double-bounce", "mdaemon", "mail.delivery.system", "noreply", "no-reply",
     "donotreply", "do-not-reply", "webmaster", "root"}
)  # fmt: skip


def text_report(
    text: str,
    *,
    failed_header: str = "",
    exclude: Collection[str] = (),
    delayed_words: bool = False,
    fallback: str | None = None,
) -> Report:
    """What a report written for people says: the addresses it names as failed (and `failed_header`, the
    X-Failed-Recipients field), each with the status and words the text gives it. `exclude` are addresses that are
    not recipients (our sender, the report's own addresses); `fallback` is the recipient of the original message,
    used when the text names none."""
    lines = _lines(text)
    skip = {a.lower() for a in exclude}
    addresses: list[str] = []
    total = 0

    def add(address: str) -> None:
        nonlocal total
        address = address.strip(".").lower()
        if address in skip or address.partition("@")[0] in _DAEMONS or address in addresses:
            return
        total += 1
        if len(addresses) < MAX_RECIPIENTS:
            addresses.append(address)

    for found in ADDRESS.finditer(failed_header[:100_000]):
        add(found.group(1))
    weak: list[str] = []
    known = set(skip)  # addresses added or refused already: a line that names only these needs no more reading
    for line in lines:
        if "@" not in line:
            continue
        named = {m.group(1).strip(".").lower() for m in ADDRESS.finditer(line)}
        if named <= known:
            continue
        to = _TO_LABEL.match(line)
        if to is not None:
            weak.append(to.group(1))
            continue
        if _NOT_A_RECIPIENT_LINE.search(line):
            continue
        for pattern in _STRONG_PATTERNS:
            for found in pattern.finditer(line):
                add(found.group(1))
        known |= {a for a in named if a in addresses or a in skip or a.partition("@")[0] in _DAEMONS}
    for address in weak if not addresses else ():  # the original's To: the recipient, when nothing else is named
        add(address)
    if not addresses and fallback and fallback.lower() not in skip:
        add(fallback)
    overall = _overall(text, delayed_words, reason_too=not addresses)
    recipients = []
    lowered = [line.lower() for line in lines] if addresses else []
    for address in addresses:
        status, diagnostic = _said_about(lines, address, address, others=addresses, lowered=lowered)
        if not status and overall.status:
            status = overall.status
            if reason_of("", diagnostic) is Reason.OTHER:  # its own words say nothing: the report's line with the code
                diagnostic = overall.diagnostic
        if not diagnostic:
            diagnostic = overall.diagnostic
        delayed = status.startswith("4") and (delayed_words or _DELAY.search(diagnostic.lower()) is not None)
        if not status and delayed_words:
            delayed = True
        reason = reason_of(status, diagnostic or text[:600])
        action = "delayed" if delayed else "failed"
        recipients.append(BouncedRecipient(address, address, action, status, diagnostic,
                                           is_permanent(reason, status, action == "failed"), reason.value))  # fmt: skip
    kind = "bounce" if any(r.action == "failed" for r in recipients) else "delayed"
    if not recipients:
        kind = "delayed" if delayed_words else "bounce"
    return Report(kind, "", tuple(recipients), overall, total)


_HEADER_LIKE = re.compile(r"^[ \t>*-]*[A-Za-z][\w-]{0,30}(?: [\w-]+)?:[ \t]")  # "From: ...", "Sent date: ..."
_DELAY = re.compile(
    r"has not yet been delivered|has been delayed|(?:delivery|message|mail) (?:is |has been )?delayed|"
    r"delayed (?:mail|message|for)|(?:will|to) be retried|still being retried|will (?:continue to )?(?:re)?try|"
    r"\(delay\)|^[^\w\n]{0,9}warning: message|warning: could not send|no action is required on your part|"
    r"transient non-fatal|warning message only|do not need to re-?send|temporary failure report|"
    r"still trying|not yet delivered|delivery (?:is )?(?:being )?(?:re)?attempted|retry (?:time|until)|"
    r"will be (?:re)?attempted|delays in delivering|attempts will continue|will continue to be made",
    re.M,
)  # on lower-case text


_DELAY_KEYS = (
    "delay",
    "retr",
    "warning",
    "not yet",
    "will",
    "no action",
    "transient",
    "temporary",
    "still",
    "attempt",
    "resend",
    "re-send",
)


_DELAY_KEY = re.compile("|".join(re.escape(k) for k in _DELAY_KEYS))


def has_delay_words(*texts: str) -> bool:
    """Whether a report's subject or text says delivery is still being tried."""
    for text in texts:
        lowered = text.lower()
        if _DELAY_KEY.search(lowered) and _DELAY.search(lowered):
            return True
    return False


def status_in(text: str) -> tuple[str, str]:
    """(status like 5.1.1, the line it is on) of a report's text: an enhanced status code (the first on a line with a
    reply code too, else the first), else an SMTP reply code as X.0.0; ("", "") when there is none."""
    first: re.Match[str] | None = None
    for found in _FAILURE_STATUS.finditer(text):
        line = _line_at(text, found.start())
        code = _REPLY_CODE.search(line)
        if code is not None and code.group(1) in _VALID_CODES:
            return found.group(0), clean(line.strip(" \t#>-*"), MAX_DIAGNOSTIC)
        first = first or found
    if first is not None:
        return first.group(0), clean(_line_at(text, first.start()).strip(" \t#>-*"), MAX_DIAGNOSTIC)
    for code in _REPLY_CODE.finditer(text):
        if code.group(1) in _VALID_CODES:
            return f"{code.group(1)[0]}.0.0", clean(_line_at(text, code.start()).strip(" \t#>-*"), MAX_DIAGNOSTIC)
    return "", ""


def _line_at(text: str, at: int) -> str:
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n", at)
    return text[start : end if end >= 0 else len(text)]


def _overall(text: str, delayed_words: bool, *, reason_too: bool = True) -> BouncedRecipient:
    """What a report says about no recipient in particular: its one status (the best code of its text), and, with
    `reason_too`, the reason and permanence they give."""
    status, line = status_in(text)
    reason = reason_of(status, line or text[:600]) if reason_too and (line or status) else Reason.OTHER
    failed = not (delayed_words and not status.startswith("5"))
    return BouncedRecipient("", "", "failed" if failed else "delayed", status, line,
                            is_permanent(reason, status, failed), reason.value)  # fmt: skip


def _lines(text: str) -> list[str]:
    return text.split("\n", _MAX_LINES)[:_MAX_LINES]


def _said_about(
    lines: Sequence[str], address: str, final: str, others: Iterable[str] = (), lowered: Sequence[str] | None = None
) -> tuple[str, str]:
    """(status, words) the text gives one recipient: from each line that names it to the line before the next line
    that names another recipient (at most _MAX_CONTEXT lines), the best code found; the words are the line with that
    code, else the first line after the address that says something."""
    names = {address.lower(), final.lower()} - {""}
    if not names:
        return "", ""
    other = {o.lower() for o in others} - names
    segments: list[str] = []
    lowered_lines = lowered if lowered is not None else [line.lower() for line in lines]
    index = 0
    while index < len(lines):
        lowered = lowered_lines[index]
        if any(name in lowered for name in names):
            stop = index + 1
            while stop < len(lines) and stop - index < _MAX_CONTEXT:
                ahead = lowered_lines[stop]
                if "@" in ahead and any(o in ahead for o in other):
                    break
                stop += 1
            segments.append("\n".join(lines[index:stop]))
            index = stop
        else:
            index += 1
    if not segments:
        return "", ""
    context = "\n".join(segments)
    status, line = status_in(context)
    if line:
        return status, line
    for segment in segments:
        first, _, rest = segment.partition("\n")
        after_address = first
        for name in names:
            where = first.lower().find(name)
            if where >= 0:
                after_address = first[where + len(name) :]
                break
        words = after_address.strip(" \t:>\"'-)]")
        if len(words) >= 4:
            return "", clean(words, MAX_DIAGNOSTIC)
        for line in rest.split("\n")[:3]:
            if not line.strip():
                continue
            if original_marker(line) or _HEADER_LIKE.match(line) or "@" in line:
                break
            return "", clean(line.strip(" \t#>-*()"), MAX_DIAGNOSTIC)
    return "", ""
