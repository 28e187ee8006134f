"""The JSON Schema of every rule kind, built here once and written to `schemas/`.

Each schema is self-contained (shared definitions are copied into `$defs`) so
an editor can use one file alone. The 2020-12 form is what `outreach validate`
checks; the draft-07 copy (same rules, `definitions` instead of `$defs`) is for
yaml-language-server. Both use only keywords the two drafts share, plus
`patternErrorMessage`, which VS Code shows and validators ignore.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from outreach.rules import model, timing

KINDS = ("Settings", "Template", "Sequence", "View", "Campaign", "SalesProcess", "RuleTest")
BASE_URL = "https://outreach.example.org/schemas"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"

Schema = dict[str, Any]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*(?!\n)$"
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME_PATTERN = rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})+(?!\n)$"  # a domain: two or more labels, ASCII (A-labels)
# {token} (42 characters once filled in) once in a local part of at most 64: at most 22 more characters around it.
BOUNCE_ADDRESS_PATTERN = (
    rf"^(?=[A-Za-z0-9._+-]{{0,22}}\{{token\}}[A-Za-z0-9._+-]*@)(?=[^@]{{7,29}}@)[A-Za-z0-9._+-]*\{{token\}}"
    rf"[A-Za-z0-9._+-]*@{_DNS_LABEL}(?:\.{_DNS_LABEL})+(?!\n)$"
)
SELECTOR_PATTERN = rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*(?!\n)$"  # a DKIM selector: one or more labels
MODULES_BUILTIN = ("lead", "contact", "deal")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UNSUBSCRIBE_LANGUAGES = ("en", "de", "fr", "es", "it", "ja", "nl", "pt")
EVENT_KINDS = (
    "enroll",
    "reply",
    "auto_reply",
    "bounce",
    "open",
    "click",
    "unsubscribe",
    "convert",
    "delete",
    "set",
    "task",
    "complete_task",
    "appointment",
    "stop",
    "apply",
)
INLINE_KINDS = ("Settings", "Template", "Sequence", "View", "SalesProcess")  # what an `apply` event may define
REMOVABLE_KINDS = INLINE_KINDS[1:]  # a rule set keeps its one Settings


def _obj(properties: Mapping[str, Schema], *, required: tuple[str, ...] = (), desc: str, **extra: Any) -> Schema:
    out: Schema = {"type": "object", "description": desc, "properties": dict(properties), "additionalProperties": False}
    if required:
        out["required"] = list(required)
    out.update(extra)
    return out


def _str(desc: str, **extra: Any) -> Schema:
    return {"type": "string", "description": desc, **extra}


def _ref(name: str, desc: str | None = None) -> Schema:
    out: Schema = {"$ref": f"#/$defs/{name}"}
    if desc:
        out["description"] = desc
    return out


def _list(items: Schema, desc: str, **extra: Any) -> Schema:
    return {"type": "array", "description": desc, "items": items, **extra}


def _kind(name: str) -> Schema:
    return {"const": name, "description": f"The kind of this document: {name}."}


def _name(what: str) -> Schema:
    return _str(
        f"The {what}'s name, unique among {what}s; other rules refer to it by this name.",
        pattern=NAME_PATTERN,
        patternErrorMessage="a name starts with a letter or digit and holds only letters, digits, _ . -",
    )


def _renamed_from(what: str) -> Schema:
    earlier = _str(f"An earlier name of the {what}.", pattern=NAME_PATTERN,
                   patternErrorMessage="a name starts with a letter or digit and holds only letters, digits, _ . -")  # fmt: skip
    return {
        "type": ["string", "array"],
        "description": f"The {what}'s earlier name (or names, the latest first): applied where the {what} is known "
        "by it, it is renamed, and keeps what it had (its versions; a sequence its enrollments, a sales process its "
        "reminders), instead of being removed and added anew.",
        "pattern": NAME_PATTERN,
        "patternErrorMessage": "a name starts with a letter or digit and holds only letters, digits, _ . -",
        "items": earlier,
        "minItems": 1,
        "uniqueItems": True,
    }


def _secret_pair(what: str) -> dict[str, Schema]:
    return {
        f"{what}_env": _str(f"Name of the environment variable that holds the {what}."),
        f"{what}_file": _str(
            f"Path of a file that holds the {what} (e.g. under $CREDENTIALS_DIRECTORY for systemd credentials)."
        ),
    }


# Definitions shared by several kinds. Each schema copies the ones it uses.
COMMON: dict[str, Schema] = {
    "duration": {
        "type": ["string", "integer"],
        "description": "A duration: immediately, 45s, 30m, 4h, 3 days, 1 week, 2 business days. "
        "Business days skip the calendar's non-working days and holidays.",
        "pattern": timing.DURATION_PATTERN,
        "patternErrorMessage": "use immediately, 45s, 30m, 4h, 3 days, 1 week or 2 business days",
        "$comment": "duration",
    },
    "window": _str(
        "A daily time window HH:MM-HH:MM in the recipient's time zone (else the calendar's), e.g. 08:00-18:00.",
        pattern=timing.WINDOW_PATTERN,
        patternErrorMessage="write the window as HH:MM-HH:MM, e.g. 08:00-18:00",
        **{"$comment": "window"},
    ),
    "datetime": _str(
        "A date and time with a UTC offset (RFC 3339), e.g. 2027-03-02T10:00:00-08:00 or 2026-11-23T08:00:00Z.",
        pattern=timing.DATETIME_PATTERN,
        patternErrorMessage="write a date and time with an offset, e.g. 2027-03-02T10:00:00+01:00",
        **{"$comment": "datetime"},
    ),
    "timezone": _str("An IANA time zone name, e.g. Europe/Berlin."),
    "userRef": _str(
        "Who: record_owner, or user:<id> for a user from Settings.users.",
        pattern=r"^(?:record_owner|user:[A-Za-z0-9_.-]+)(?!\n)$",
        patternErrorMessage="use record_owner or user:<id>",
    ),
    "assigneeRef": _str(
        "Who: record_owner, campaign_owner (the campaign's owner), or user:<id> for a user from Settings.users.",
        pattern=r"^(?:record_owner|campaign_owner|user:[A-Za-z0-9_.-]+)(?!\n)$",
        patternErrorMessage="use record_owner, campaign_owner or user:<id>",
    ),
    "criteria": {
        "description": "Which records: {all: [...]}, {any: [...]}, {not: {...}} or a condition "
        "{field: F, <operator>: value}.",
        "type": "object",
        "if": {"required": ["all"]},
        "then": _obj(
            {"all": _list(_ref("criteria"), "Every condition must hold.", minItems=1)},
            required=("all",),
            desc="Every condition must hold.",
        ),
        "else": {
            "if": {"required": ["any"]},
            "then": _obj(
                {"any": _list(_ref("criteria"), "At least one condition must hold.", minItems=1)},
                required=("any",),
                desc="At least one condition must hold.",
            ),
            "else": {
                "if": {"required": ["not"]},
                "then": _obj(
                    {"not": _ref("criteria", "The condition that must not hold.")},
                    required=("not",),
                    desc="The condition must not hold.",
                ),
                "else": _ref("condition"),
            },
        },
    },
    "condition": _obj(
        {
            "field": _str(
                "A record field: email, type, owner, stage, stage_entered_at, created_at, "
                "timezone, id, or a field declared in Settings.record_fields."
            ),
            "eq": {"description": "The field equals this value."},
            "ne": {"description": "The field does not equal this value."},
            "in": _list({}, "The field equals one of these values.", minItems=1),
            "not_in": _list({}, "The field equals none of these values.", minItems=1),
            "gt": {"type": ["number", "string"], "description": "Greater than (numbers and dates)."},
            "gte": {"type": ["number", "string"], "description": "Greater than or equal (numbers and dates)."},
            "lt": {"type": ["number", "string"], "description": "Less than (numbers and dates)."},
            "lte": {"type": ["number", "string"], "description": "Less than or equal (numbers and dates)."},
            "contains": {"description": "The text field contains this text."},
            "starts_with": {"description": "The text field starts with this text."},
            "exists": {"type": "boolean", "description": "true: the field has a value; false: it is empty."},
            "older_than": _ref("duration", "The date field is further in the past than this duration."),
            "newer_than": _ref("duration", "The date field is within this duration before now."),
        },
        required=("field",),
        desc="One condition on one field with exactly one operator.",
        minProperties=2,
        maxProperties=2,
    ),
    "triggers": _obj(
        {
            "opened": _list(_ref("action"), "Actions when a recipient opens the mail."),
            "clicked": _list(_ref("action"), "Actions when a recipient clicks a link in the mail."),
            "bounced": _list(_ref("action"), "Actions when the mail bounces (field updates only)."),
        },
        desc="Trigger actions: per trigger at most 3 field updates, 2 tasks and 2 calls.",
    ),
    "action": {
        "type": "object",
        "description": "One trigger action: update a field, add a follow-up task, or schedule a call.",
        "oneOf": [{"required": ["update"]}, {"required": ["task"]}, {"required": ["call"]}],
        "properties": {
            "update": _obj(
                {
                    "field": _str("The record field to set (declared in Settings.record_fields)."),
                    "value": {"description": "The value to set; it must fit the field's type."},
                },
                required=("field", "value"),
                desc="Set a field of the record.",
            ),
            "task": _obj(
                {
                    "subject": _str("The task's subject."),
                    "due": _ref("duration", "When the task is due, counted from the trigger."),
                    "priority": {
                        "enum": ["highest", "high", "normal", "low", "lowest"],
                        "description": "The task's priority (default normal).",
                    },
                    "status": {
                        "enum": ["not started", "in progress", "waiting", "deferred"],
                        "description": "The task's status when it is added (default not started).",
                    },
                    "assign_to": _ref("assigneeRef", "Who gets the task (default record_owner)."),
                },
                required=("subject",),
                desc="Add a follow-up task for the record.",
            ),
            "call": _obj(
                {
                    "subject": _str("The call's subject."),
                    "owner": _ref("assigneeRef", "Who makes the call (default record_owner)."),
                    "at": _ref("duration", "When the call is scheduled, counted from the trigger."),
                },
                required=("subject",),
                desc="Schedule a call with the record.",
            ),
        },
        "additionalProperties": False,
    },
    "unsubscribeLink": _obj(
        {
            "language": {
                "enum": list(UNSUBSCRIBE_LANGUAGES),
                "description": "Language of the footer link text (default en).",
            }
        },
        desc="Add an unsubscribe footer link and List-Unsubscribe / one-click headers (RFC 8058).",
    ),
    "server": _obj(
        {
            "host": _str("Host name of the server."),
            "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "TCP port."},
            "security": {
                "enum": ["starttls", "tls", "none"],
                "description": "starttls (upgrade a plain connection), tls (implicit TLS) or none.",
            },
            "username": _str("The login name (not a secret; or use username_env / username_file)."),
            **_secret_pair("username"),
            **_secret_pair("password"),
            "timeout": _ref("duration", "How long to wait for the server before giving up (default 30s)."),
        },
        required=("host",),
        desc="A mail server connection. Passwords come only from password_env or password_file.",
    ),
}


def _settings() -> Schema:
    calendar = _obj(
        {
            "workdays": _list(
                {"enum": list(WEEKDAYS)}, "Working days (default mon-fri).", minItems=1, uniqueItems=True
            ),
            "holidays": _obj(
                {
                    "country": _str("ISO 3166 country code known to python-holidays, e.g. DE."),
                    "subdivision": _str("State or province code, e.g. BE for Berlin."),
                },
                required=("country",),
                desc="Public holidays that are not working days.",
            ),
            "send_window": _ref("window", "Mail goes out only inside this daily window."),
            "timezone": _ref("timezone", "The calendar's zone (default: Settings.timezone)."),
        },
        desc="A business calendar: working days, holidays and a send window.",
    )
    smtp = copy.deepcopy(COMMON["server"])
    smtp["description"] = "The SMTP relay that sends mail."
    smtp["properties"].update(
        {
            "pool_size": {
                "type": "integer",
                "minimum": 1,
                "maximum": 64,
                "description": "Connections kept open to the relay (default 4).",
            },
            "rate": {"type": "number", "exclusiveMinimum": 0, "description": "At most this many messages per second."},
        }
    )
    mailbox = copy.deepcopy(COMMON["server"])
    mailbox["description"] = "An IMAP mailbox polled for replies and bounces."
    mailbox["properties"].update(
        {
            "folder": _str("The folder to read (default INBOX)."),
            "poll_every": _ref("duration", "How often to poll when the server has no IDLE (default 60s)."),
        }
    )
    return _obj(
        {
            "kind": _kind("Settings"),
            "timezone": _ref("timezone", "The organization's time zone (default UTC)."),
            "calendars": {
                "type": "object",
                "description": "Business calendars by name; `default` is used when a sequence names none.",
                "additionalProperties": calendar,
                "propertyNames": {"pattern": NAME_PATTERN},
            },
            "organization": _obj(
                {
                    "name": _str("The organization's name (merge field organization.name)."),
                    "email": _str("The organization's address, used for `from: organization`."),
                    "address": _str("Postal address, for mail footers (organization.address)."),
                    "website": _str("Web site (organization.website)."),
                    "phone": _str("Phone number (organization.phone)."),
                },
                required=("name", "email"),
                desc="The sending organization.",
            ),
            "users": _list(
                _obj(
                    {
                        "id": _str("Short id that rules and the CLI use, e.g. anna.", pattern=NAME_PATTERN),
                        "name": _str("Display name, used in From headers (sender.name)."),
                        "email": _str("The user's address; sequence mail goes out from it."),
                        "mailbox": _str("Name of the mailbox in `mailboxes` that receives this user's replies."),
                        "daily_limit": {
                            "type": "integer",
                            "minimum": 1,
                            "description": "At most this many mails in any 24 hours.",
                        },
                        "timezone": _ref("timezone", "The user's zone."),
                        "title": _str("Job title (sender.title)."),
                        "phone": _str("Phone number (sender.phone)."),
                        "signature": _str("Signature text (sender.signature)."),
                    },
                    required=("id", "name", "email"),
                    desc="A rep who enrolls people and sends as themselves.",
                ),
                "The reps.",
            ),
            "record_fields": {
                "type": "object",
                "description": "Custom record fields and their types; merge tags and criteria are checked "
                "against these and the built-in fields.",
                "additionalProperties": {
                    "enum": ["string", "number", "boolean", "datetime"],
                    "description": "The field's type.",
                },
                "propertyNames": {"pattern": r"^[a-z][a-z0-9_]*$"},
            },
            "modules": _list(
                _str("A custom module name.", pattern=r"^[a-z][a-z0-9_]*$"),
                "Custom modules besides lead, contact and deal.",
                uniqueItems=True,
            ),
            "transport": _obj(
                {
                    "type": {
                        "enum": ["maildir", "smtp"],
                        "description": "maildir (embedded default: each message becomes a file) or smtp.",
                    },
                    "maildir": _str("Directory for the maildir transport (default var/outbox)."),
                    "smtp": smtp,
                },
                required=("type",),
                desc="How mail leaves.",
                **{
                    "if": {"properties": {"type": {"const": "smtp"}}, "required": ["type"]},
                    "then": {"required": ["smtp"]},
                },
            ),
            "mailboxes": {
                "type": "object",
                "description": "IMAP mailboxes by name, read for replies and bounces.",
                "additionalProperties": mailbox,
                "propertyNames": {"pattern": NAME_PATTERN},
            },
            "bounce_address": _str(
                "The envelope sender (VERP) of each message sent over SMTP: {token} becomes a signed token that names "
                "the message, so a bounce delivered to that address is known to be about it, e.g. "
                "bounces+{token}@example.com. Its local part holds {token} once and at most 22 other characters.",
                pattern=BOUNCE_ADDRESS_PATTERN,
                patternErrorMessage="an address such as bounces+{token}@example.com: {token} once in a local part of "
                "at most 22 more letters, digits and . _ + - characters, at a domain name",
            ),
            "tracking": _obj(
                {
                    "base_url": _str(
                        "Public https URL of the tracking and unsubscribe endpoints.",
                        pattern=r"^https?://",
                        patternErrorMessage="an http(s):// URL",
                    ),
                    **_secret_pair("secret"),
                    "opens": {"type": "boolean", "description": "Add an open-tracking pixel."},
                    "clicks": {"type": "boolean", "description": "Rewrite links for click tracking."},
                },
                required=("base_url",),
                desc="Signed tracking and unsubscribe links. Without secret_env or secret_file, or when the "
                "secret they name is not set, the daemon signs with a secret it creates in its state directory.",
            ),
            "web": _obj(
                {
                    "listen": _str(
                        "host:port the web endpoints listen on (default 127.0.0.1:8025); a reverse proxy maps "
                        "tracking.base_url to it.",
                        pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$",
                        patternErrorMessage="host:port, e.g. 127.0.0.1:8025",
                    ),
                    **_secret_pair("api_token"),
                },
                desc="The daemon's web endpoints: unsubscribe, tracking, the ingest API, /healthz and /metrics.",
            ),
            "dkim": _list(
                _obj(
                    {
                        "domain": _str(
                            "The signing domain (d=), e.g. example.com: mail whose From address is at this domain, "
                            "or at a subdomain of it without an entry of its own, is signed with this key.",
                            pattern=DNS_NAME_PATTERN,
                            patternErrorMessage="a domain name such as example.com (IDNs as their xn-- form)",
                        ),
                        "selector": _str(
                            "The selector (s=): receivers look up the public key at <selector>._domainkey.<domain>.",
                            pattern=SELECTOR_PATTERN,
                            patternErrorMessage="DNS labels of letters, digits and -, e.g. s1 or 2026-01",
                        ),
                        **_secret_pair("private_key"),
                    },
                    required=("domain", "selector"),
                    desc="A DKIM key for one sending domain. The private key (PEM: RSA, PKCS#1 or PKCS#8, or "
                    "Ed25519) comes only from private_key_file or private_key_env.",
                ),
                "DKIM keys, one per sending domain: mail is signed (relaxed/relaxed) when it is queued.",
            ),
            "database": _obj(
                {
                    "url": _str(
                        "The store's URL without a password, e.g. sqlite:///var/outreach.db or "
                        "postgresql://outreach@db.internal/outreach. --db and $OUTREACH_DB take precedence."
                    ),
                    "url_env": _str("Name of the environment variable that holds the URL (when it has a password)."),
                },
                desc="Where the engine keeps its state (default: sqlite:///var/outreach.db).",
                maxProperties=1,
            ),
            "limits": _obj(
                {
                    "campaigns_per_slot": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "At most this many campaigns of one module at one send time (default 5).",
                    },
                    "campaign_freeze": _ref(
                        "duration",
                        "A scheduled campaign edited closer than this to its send time is stopped (default 15m).",
                    ),
                    "max_attempts": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Delivery attempts on temporary failures (default 8).",
                    },
                    "domains": {
                        "type": "object",
                        "description": "At most this many messages an hour to a recipient domain, e.g. "
                        "{gmail.com: 500}; more wait in the outbox.",
                        "propertyNames": {"pattern": "^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$"},
                        "additionalProperties": {"type": "integer", "minimum": 1},
                    },
                    "render_time": _ref(
                        "duration",
                        "What rendering one message may take, 1s to 10s (default 1s): a template that takes longer "
                        "blocks its enrollment.",
                    ),
                    "message_size": {
                        "type": "integer",
                        "minimum": 10240,
                        "maximum": 26214400,
                        "description": "Bytes a message's rendered subject, text and html may have together "
                        "(default 1048576, 1 MiB; 10240 to 26214400): a template that makes more blocks its "
                        "enrollment, and `outreach validate` flags an expression that would.",
                    },
                },
                desc="Engine limits.",
            ),
        },
        required=("kind",),
        desc="The rule set's settings: one Settings document per rule set.",
    )


def _template() -> Schema:
    return _obj(
        {
            "kind": _kind("Template"),
            "name": _name("template"),
            "renamed_from": _renamed_from("template"),
            "description": _str("What the template is for."),
            "subject": _str("The subject line (Jinja2).", minLength=1),
            "text": _str("The plain-text body (Jinja2); always sent.", minLength=1),
            "html": _str("An optional HTML body (Jinja2), sent as multipart/alternative."),
            "shared": {"type": "boolean", "description": "Whether every user may use it (default true)."},
        },
        required=("kind", "name", "subject", "text"),
        desc="An email template. Merge names: record.*, sender.*, owner.*, organization.*, unsubscribe_url.",
    )


def _sequence() -> Schema:
    step = _obj(
        {
            "id": _str("Stable id of the step; edits map enrollments by it.", pattern=NAME_PATTERN),
            "email": _str("Template to send (an email step)."),
            "task": _str("Subject of the task to create (a task step); the sequence waits until it is done."),
            "wait": _ref(
                "duration",
                "Wait after the previous step completed (the first step: after enrollment). Default immediately.",
            ),
            "thread": {
                "enum": ["reply", "new"],
                "description": "reply: send in the thread of the previous mail (Re:); new: a new thread.",
            },
            "task_type": {"enum": ["call", "email", "todo", "meeting"], "description": "The task's type."},
            "due_within": _ref("duration", "The task is due this long after it is created."),
        },
        required=("id",),
        desc="One step: an email (email: TEMPLATE) or a task (task: SUBJECT).",
        oneOf=[{"required": ["email"]}, {"required": ["task"]}],
    )
    return _obj(
        {
            "kind": _kind("Sequence"),
            "name": _name("sequence"),
            "renamed_from": _renamed_from("sequence"),
            "description": _str("What the sequence is for."),
            "applies_to": _list(
                _str("A module: lead, contact, or a custom module."),
                "Record types that may be enrolled (default lead and contact).",
                minItems=1,
                uniqueItems=True,
            ),
            "sender": _str(
                "Who mail is sent as: enrolling_user (default), record_owner or user:<id>.",
                pattern=r"^(?:enrolling_user|record_owner|user:[A-Za-z0-9_.-]+)$",
                patternErrorMessage="use enrolling_user, record_owner or user:<id>",
            ),
            "calendar": _str("Business calendar from Settings.calendars (default: default)."),
            "on_edit": {
                "enum": ["pin", "next_step"],
                "description": "pin: active enrollments keep their version; "
                "next_step: they move to the new version after their next step.",
            },
            "unsubscribe_link": _ref("unsubscribeLink"),
            "enroll_when": _ref("criteria", "Enroll matching records automatically (once per record and version)."),
            "steps": _list(step, "The steps, in order.", minItems=1),
        },
        required=("kind", "name", "steps"),
        desc="An email sequence: automated mail and task steps with waits, sent as the enrolling user.",
    )


def _view() -> Schema:
    return _obj(
        {
            "kind": _kind("View"),
            "name": _name("view"),
            "renamed_from": _renamed_from("view"),
            "description": _str("What the view shows."),
            "module": _str("The module: lead, contact, deal or a custom module."),
            "where": _ref("criteria", "Which records the view holds."),
        },
        required=("kind", "name", "module", "where"),
        desc="A saved view: a named set of records picked by criteria.",
    )


def _campaign() -> Schema:
    follow_up = _obj(
        {
            "name": _str("An optional label for the follow-up."),
            "to": {
                "enum": ["received", "opened"],
                "description": "Who gets it: everyone who received the campaign mail, or those who opened it.",
            },
            "after": _ref("duration", "Send this long after the campaign mail."),
            "at": _ref("datetime", "Send at this date and time (not with to: opened)."),
            "template": _str("Template of the follow-up."),
            "except": _ref("criteria", "Recipients matching these criteria get no follow-up."),
            "on": _ref("triggers"),
        },
        required=("to", "template"),
        desc="A follow-up mail; give `after` or `at`.",
        oneOf=[{"required": ["after"]}, {"required": ["at"]}],
    )
    return _obj(
        {
            "kind": _kind("Campaign"),
            "name": _name("campaign"),
            "renamed_from": _renamed_from("campaign"),
            "description": _str("What the campaign is for."),
            "module": _str("The module of the recipients: lead, contact, deal or a custom module."),
            "owner": _str("User id of the owner: only the owner may edit, stop or start it."),
            "to": _obj(
                {
                    "view": _str("A saved View."),
                    "where": _ref("criteria", "Records matching these criteria."),
                    "records": _list(_str("A record id."), "These records.", minItems=1, uniqueItems=True),
                },
                desc="The recipients: a view, criteria, or a list of records.",
                oneOf=[{"required": ["view"]}, {"required": ["where"]}, {"required": ["records"]}],
            ),
            "template": _str("The template of the campaign mail."),
            "from": {
                "enum": ["owner", "record_owner", "organization"],
                "description": "Whose address sends it (default owner).",
            },
            "reply_to": {
                "enum": ["from", "owner", "record_owner", "organization"],
                "description": "Where replies go (default from).",
            },
            "send_at": _ref("datetime", "When to send; absent: when applied."),
            "calendar": _str("Send only inside this Settings.calendars calendar's working days and send window, "
                             "on each recipient's clock (default: any time)."),
            "unsubscribe_link": _ref("unsubscribeLink"),
            "on": _ref("triggers"),
            "follow_ups": _list(follow_up, "Up to 3 follow-up mails.", maxItems=3),
        },
        required=("kind", "name", "module", "owner", "to", "template"),
        desc="A bulk email to records picked by a view, criteria or a list, now or scheduled.",
    )


def _sales_process() -> Schema:
    return _obj(
        {
            "kind": _kind("SalesProcess"),
            "name": _name("sales process"),
            "renamed_from": _renamed_from("sales process"),
            "description": _str("What the process is for."),
            "module": _str("The module whose records move through the stages (usually lead)."),
            "where": _ref("criteria", "Only records matching these criteria follow this process."),
            "stage_field": _str("The record field that holds the stage (default stage)."),
            "stages": _list(
                _obj(
                    {
                        "name": _str("The stage's value in the stage field."),
                        "max": _ref("duration", "A record that stays longer is overdue; no max: never overdue."),
                    },
                    required=("name",),
                    desc="A stage and its maximum duration.",
                ),
                "The stages in order.",
                minItems=1,
            ),
            "follow_up": _obj(
                {
                    "enabled": {"type": "boolean", "description": "Send reminder mail for overdue records."},
                    "every": _ref("duration", "Interval of repeated reminders, counted from the day of the first."),
                    "at": _str('Cron time of the daily run (default "0 7 * * *": 07:00).'),
                    "timezone": _ref("timezone", "Zone of the cron time (default UTC)."),
                    "to": _ref("userRef", "Who gets the reminders (default record_owner)."),
                    "template": _str("Template of the reminder mail."),
                    "digest": {
                        "type": "boolean",
                        "description": "One mail per reminded user and run, listing all their overdue records "
                        "(default false: one mail per record).",
                    },
                },
                required=("enabled",),
                desc="Reminder mail to the owner of an overdue record.",
            ),
        },
        required=("kind", "name", "module", "stages"),
        desc="A sales process: stages with maximum durations, and reminders for overdue records.",
    )


_CAMPAIGN_COUNTS = {
    "recipients": "recipients are to get the mail or got it (not skipped)",
    "pending": "mails wait to be sent",
    "sent": "mails the relay accepted (those that bounced later too)",
    "delivered": "mails were sent and did not bounce",
    "not_delivered": "mails the relay refused or that bounced",
    "bounced": "mails bounced",
    "opened": "recipients opened the mail (people, not automated opens)",
    "automated_opens": "recipients whose every open looked automated",
    "clicked": "recipients clicked a link",
    "unclicked": "recipients the mail reached and who clicked nothing",
    "unknown": "mails were handed to the relay and its answer was lost",
}
assert tuple(_CAMPAIGN_COUNTS) == model.CAMPAIGN_COUNTS


def _rule_test() -> Schema:
    rec = _str("A record id from `records`.")

    def ev(props: Mapping[str, Schema], required: tuple[str, ...], desc: str) -> Schema:
        return _obj({"record": rec, **props}, required=("record", *required), desc=desc)

    automated = {
        "type": "boolean",
        "description": "A link scanner or a mail provider's prefetch, not a person: recorded, and fires nothing "
        "(default false).",
    }
    events = {
        "enroll": ev(
            {"sequence": _str("The sequence."), "as": _str("The enrolling user's id.")},
            ("sequence", "as"),
            "Enroll the record in a sequence.",
        ),
        "reply": ev({}, (), "The record replies to the latest mail sent to it."),
        "auto_reply": ev({}, (), "An auto-reply (out of office) arrives from the record."),
        "bounce": ev(
            {
                "status": _str("DSN status, e.g. 5.1.1 (hard) or 4.2.2 (soft)."),
                "campaign": _str("The campaign whose latest mail to the record bounces (default: the latest mail)."),
            },
            (),
            "The latest mail to the record bounces.",
        ),
        "open": ev(
            {
                "campaign": _str("The campaign whose latest mail to the record is opened (default: the latest mail)."),
                "automated": automated,
            },
            (),
            "The record opens a mail: its open pixel is fetched.",
        ),
        "click": ev(
            {
                "campaign": _str("The campaign whose latest mail to the record is clicked (default: the latest mail)."),
                "url": _str("The link's target, as the template writes it (default: the first tracked link)."),
                "automated": automated,
            },
            (),
            "The record clicks a tracked link of a mail.",
        ),
        "unsubscribe": ev({}, (), "The record unsubscribes."),
        "convert": ev({}, (), "The lead is converted to a contact."),
        "delete": ev({}, (), "The record is deleted."),
        "set": {
            "type": "object",
            "description": "Set fields of the record (a stage change: {record: L2, stage: Contacted}).",
            "properties": {"record": rec},
            "required": ["record"],
            "minProperties": 2,
        },
        "task": ev({"subject": _str("The task's subject.")}, ("subject",), "A task is created for the record."),
        "complete_task": ev({}, (), "The record's open sequence task is completed."),
        "appointment": ev(
            {"starts": _ref("datetime", "When the appointment starts.")},
            ("starts",),
            "An appointment is entered for the record.",
        ),
        "stop": ev(
            {"sequence": _str("The sequence."), "as": _str("The user who stops it.")},
            ("sequence",),
            "Someone stops the record's sequence by hand.",
        ),
    }
    events["apply"] = {
        "type": "object",
        "description": "The rule set under test changes, as `outreach apply` of the changed files would: "
        "`definitions` replace (or add) definitions of the same kind and name, `remove` takes some away.",
        "properties": {
            "definitions": _list(
                {
                    "type": "object",
                    "description": "A whole definition, as in a rule file; it is checked against its kind's schema.",
                    "properties": {"kind": {"enum": list(INLINE_KINDS), "description": "The kind of the definition."}},
                    "required": ["kind"],
                },
                "Definitions that replace those of the same kind and name, or are added.",
                minItems=1,
            ),
            "remove": _list(
                _obj(
                    {
                        "kind": {"enum": list(REMOVABLE_KINDS), "description": "The kind of the definition."},
                        "name": _str("Its name."),
                    },
                    required=("kind", "name"),
                    desc="A definition taken out of the rule set.",
                ),
                "Definitions removed from the rule set.",
                minItems=1,
            ),
        },
        "additionalProperties": False,
        "anyOf": [{"required": ["definitions"]}, {"required": ["remove"]}],
    }
    event = {
        "type": "object",
        "description": "A timed event: `at` and one of " + ", ".join(EVENT_KINDS) + ".",
        "properties": {"at": _ref("datetime", "When it happens."), **events},
        "required": ["at"],
        "additionalProperties": False,
        "minProperties": 2,
        "maxProperties": 2,
    }
    when = {
        "description": "Exactly this time, or a window {after, before}.",
        "oneOf": [
            _ref("datetime"),
            _obj(
                {"after": _ref("datetime", "Not before this."), "before": _ref("datetime", "Not after this.")},
                desc="A window of time.",
                minProperties=1,
            ),
        ],
    }
    sent = _obj(
        {
            "at": when,
            "to": _str("The recipient's address."),
            "template": _str("The template."),
            "subject": _str("The rendered subject."),
            "from": _str("The sender's address."),
            "thread": {"enum": ["reply", "new"], "description": "Sent in the previous mail's thread, or new."},
        },
        required=("at", "to", "template"),
        desc="A mail that must be sent.",
    )
    return _obj(
        {
            "kind": _kind("RuleTest"),
            "name": _str("What the test shows, in a sentence.", minLength=1),
            "description": _str("More about the test."),
            "start": _ref("datetime", "The virtual clock starts here."),
            "until": _ref("datetime", "The run ends here (default: a day after the latest time named)."),
            "records": _list(
                {
                    "type": "object",
                    "description": "A record: id, type, email, owner, stage, stage_entered_at, "
                    "created_at, timezone and declared fields.",
                    "properties": {
                        "id": _str("The record's id."),
                        "type": _str("lead, contact, deal or a custom module."),
                        "email": _str("The address."),
                    },
                    "required": ["id", "type"],
                },
                "The records that exist at the start.",
            ),
            "events": _list(event, "What happens, in time order."),
            "expect": _obj(
                {
                    "sent": _list(sent, "Every mail sent during the run (order does not matter)."),
                    "tasks": _list(
                        _obj(
                            {"record": rec, "subject": _str("The task's subject."), "at": when},
                            required=("record", "subject"),
                            desc="A task that must exist.",
                        ),
                        "Tasks that must be created.",
                    ),
                    "updates": _list(
                        _obj(
                            {
                                "record": rec,
                                "field": _str("The field."),
                                "value": {"description": "The value it must have."},
                            },
                            required=("record", "field", "value"),
                            desc="A field update.",
                        ),
                        "Field updates that must happen.",
                    ),
                    "enrollments": _list(
                        _obj(
                            {
                                "record": rec,
                                "sequence": _str("The sequence."),
                                "status": {
                                    "enum": ["active", "blocked", "completed", "stopped"],
                                    "description": "The state at the end of the run.",
                                },
                                "reason": _str("Why it is blocked or stopped, e.g. replied."),
                            },
                            required=("record", "sequence", "status"),
                            desc="An enrollment's final state.",
                        ),
                        "Enrollment states at the end of the run.",
                    ),
                    "campaigns": _list(
                        _obj(
                            {
                                "campaign": _str("The campaign."),
                                "step": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "maximum": 3,
                                    "description": "0: the campaign mail (default); 1 to 3: its follow-ups.",
                                },
                                "status": {
                                    "enum": list(model.CAMPAIGN_STATUSES),
                                    "description": "The campaign's (or follow-up's) state at the end of the run.",
                                },
                                **{
                                    key: {"type": "integer", "minimum": 0, "description": f"How many {what}."}
                                    for key, what in _CAMPAIGN_COUNTS.items()
                                },
                                "skipped": {  # a number, or a mapping (the keywords of each apply to it alone)
                                    "type": ["integer", "object"],
                                    "description": "Recipients skipped: how many in all, or how many for each "
                                    "reason given.",
                                    "minimum": 0,
                                    "properties": {
                                        reason: {"type": "integer", "minimum": 0, "description": f"Skipped: {reason}."}
                                        for reason in model.CAMPAIGN_SKIPS
                                    },
                                    "additionalProperties": False,
                                    "minProperties": 1,
                                },
                            },
                            required=("campaign",),
                            desc="A campaign step's statistics at the end of the run: only the keys given are "
                            "compared.",
                            minProperties=2,
                        ),
                        "Campaign statistics at the end of the run.",
                    ),
                },
                desc="What must happen; a RuleTest must expect something.",
                minProperties=1,
            ),
        },
        required=("kind", "name", "start", "expect"),
        desc="A unit test for the rules, run on a virtual clock by `outreach test`.",
    )


_BUILDERS = {
    "Settings": _settings,
    "Template": _template,
    "Sequence": _sequence,
    "View": _view,
    "Campaign": _campaign,
    "SalesProcess": _sales_process,
    "RuleTest": _rule_test,
}


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            found.add(ref.removeprefix("#/$defs/"))
        for v in node.values():
            found |= _refs(v)
    elif isinstance(node, list):
        for v in node:
            found |= _refs(v)
    return found


def file_name(kind: str) -> str:
    return f"{kind.lower()}.schema.json"


def schema(kind: str, draft: str = "2020-12") -> Schema:
    """The schema of one kind, self-contained, for draft 2020-12 or draft-07."""
    body = _BUILDERS[kind]()
    defs: dict[str, Schema] = {}
    todo = _refs(body)
    while todo:
        name = todo.pop()
        if name not in defs:
            defs[name] = copy.deepcopy(COMMON[name])
            todo |= _refs(defs[name]) - set(defs)
    out: Schema = {
        "$schema": DRAFT_2020_12,
        "$id": f"{BASE_URL}/{file_name(kind)}",
        "title": f"outreach {kind}",
        **body,
    }
    if defs:
        out["$defs"] = dict(sorted(defs.items()))
    if draft == "07":
        out = _to_draft07(out)
        out["$id"] = f"{BASE_URL}/draft-07/{file_name(kind)}"
    elif draft != "2020-12":
        raise ValueError(f"unknown draft {draft!r}")
    return out


def _to_draft07(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$schema":
                out[k] = DRAFT_07
            elif k == "$defs":
                out["definitions"] = _to_draft07(v)
            elif k == "$ref" and isinstance(v, str):
                out[k] = v.replace("#/$defs/", "#/definitions/")
            else:
                out[k] = _to_draft07(v)
        return out
    if isinstance(node, list):
        return [_to_draft07(v) for v in node]
    return node


def dumps(s: Schema) -> str:
    return json.dumps(s, indent=2, ensure_ascii=False) + "\n"


def all_files() -> dict[str, str]:
    """Relative path -> text of every schema file, as `outreach schema --write` writes them."""
    out = {}
    for kind in KINDS:
        out[file_name(kind)] = dumps(schema(kind))
        out[f"draft-07/{file_name(kind)}"] = dumps(schema(kind, "07"))
    return out
