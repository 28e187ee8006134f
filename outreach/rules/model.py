"""The immutable rule model: what a valid rule set means, with durations, criteria and times parsed.

Every definition carries where it came from and the sha256 of its canonical
JSON, so the store can keep each version and `plan` can tell what changed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
from collections.abc import Collection, Mapping
from typing import Any

from outreach.rules import criteria, timing
from outreach.rules.criteria import Criteria, FieldType


def content_hash(data: Any) -> str:
    """sha256 of the canonical JSON of a document (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a definition was written, its content hash, and the document as written (for plans and the store)."""

    file: str
    line: int
    hash: str
    body: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def renamed_from(self) -> tuple[str, ...]:
        """The earlier names the definition says it had (`renamed_from`), the latest first."""
        return earlier_names(self.body)


RENAMABLE = ("Template", "Sequence", "View", "Campaign", "SalesProcess")  # the kinds that take `renamed_from`
_NAMING_KEYS = frozenset({"name", "renamed_from"})


def earlier_names(body: Mapping[str, Any]) -> tuple[str, ...]:
    """`renamed_from` of a definition's document, as a tuple of names (it may be one name or a list)."""
    value = body.get("renamed_from")
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()


def same_but_naming(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether two versions of a definition differ in nothing but their name and `renamed_from`: they do the
    same (a rename alone, or `renamed_from` taken out once every database has applied it)."""
    return {k: v for k, v in old.items() if k not in _NAMING_KEYS} == {
        k: v for k, v in new.items() if k not in _NAMING_KEYS
    }


def renames(
    renamed_from: Mapping[tuple[str, str], tuple[str, ...]], applied: Collection[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Which renames applying a rule set makes, as {(kind, earlier name): new name}: a definition not applied
    under its name takes over the first of its earlier names (in the order written) that is applied and that no
    other definition took. One whose earlier names were never applied here is added as a new definition."""
    out: dict[tuple[str, str], str] = {}
    for (kind, name), earlier in renamed_from.items():
        if (kind, name) in applied:
            continue  # renamed here before: nothing more to take over
        old = next((o for o in earlier if (kind, o) in applied and (kind, o) not in out), None)
        if old is not None:
            out[(kind, old)] = name
    return out


# --- Settings -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Calendar:
    name: str
    workdays: frozenset[int]  # 0 = Monday
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    send_window: timing.Window | None = None
    timezone: str | None = None  # None: Settings.timezone


DEFAULT_CALENDAR = Calendar("default", frozenset(range(5)))


@dataclasses.dataclass(frozen=True)
class Organization:
    name: str
    email: str
    address: str | None = None
    website: str | None = None
    phone: str | None = None


@dataclasses.dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str
    mailbox: str | None = None
    daily_limit: int | None = None
    timezone: str | None = None
    title: str | None = None
    phone: str | None = None
    signature: str | None = None


class Security(enum.StrEnum):
    STARTTLS = "starttls"
    TLS = "tls"
    NONE = "none"


@dataclasses.dataclass(frozen=True)
class Server:
    """An SMTP relay or an IMAP mailbox. Secrets are named, never held."""

    name: str
    host: str
    port: int | None = None
    security: Security = Security.STARTTLS
    username: str | None = None
    username_env: str | None = None
    username_file: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    timeout: timing.Duration = timing.Duration(seconds=30)
    pool_size: int = 4
    rate: float | None = None
    folder: str = "INBOX"
    poll_every: timing.Duration = timing.Duration(seconds=60)


@dataclasses.dataclass(frozen=True)
class Transport:
    type: str = "maildir"
    maildir: str = "var/outbox"
    smtp: Server | None = None


@dataclasses.dataclass(frozen=True)
class Tracking:
    base_url: str
    secret_env: str | None = None
    secret_file: str | None = None
    opens: bool = True
    clicks: bool = True


@dataclasses.dataclass(frozen=True)
class Web:
    """Where the daemon (or `outreach web`) serves its HTTP endpoints, and the ingest API's bearer token."""

    listen: str = "127.0.0.1:8025"
    api_token_env: str | None = None
    api_token_file: str | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


@dataclasses.dataclass(frozen=True)
class DkimKey:
    """The DKIM key of one sending domain (Settings.dkim). The private key is named, never held."""

    domain: str  # lower case, ASCII (A-labels)
    selector: str
    private_key_env: str | None = None
    private_key_file: str | None = None

    @property
    def record_name(self) -> str:
        """Where receivers look up the public key: `<selector>._domainkey.<domain>`."""
        return f"{self.selector}._domainkey.{self.domain}"


@dataclasses.dataclass(frozen=True)
class Limits:
    campaigns_per_slot: int = 5
    campaign_freeze: timing.Duration = timing.Duration(seconds=15 * 60)
    max_attempts: int = 8
    domains: Mapping[str, int] = dataclasses.field(default_factory=dict)  # recipient domain -> mail per hour
    render_time: timing.Duration = timing.Duration(seconds=1)  # what rendering one message may take
    message_size: int = 1024 * 1024  # bytes of a message's rendered subject, text and html together


@dataclasses.dataclass(frozen=True)
class Settings:
    source: Source
    timezone: str = "UTC"
    calendars: Mapping[str, Calendar] = dataclasses.field(default_factory=dict)
    organization: Organization | None = None
    users: Mapping[str, User] = dataclasses.field(default_factory=dict)
    record_fields: Mapping[str, FieldType] = dataclasses.field(default_factory=dict)
    modules: tuple[str, ...] = ()
    transport: Transport = Transport()
    mailboxes: Mapping[str, Server] = dataclasses.field(default_factory=dict)
    tracking: Tracking | None = None
    web: Web = Web()
    limits: Limits = Limits()
    database_url: str | None = None  # Settings.database.url, or the value of its url_env
    database_url_env: str | None = None
    dkim: tuple[DkimKey, ...] = ()  # at most one per domain
    bounce_address: str | None = None  # VERP: `bounces+{token}@example.com`, the envelope sender of SMTP mail

    @property
    def fields(self) -> dict[str, FieldType]:
        """Built-in and declared record fields with their types."""
        return {**criteria.BUILTIN_FIELDS, **self.record_fields}

    @property
    def all_modules(self) -> tuple[str, ...]:
        return ("lead", "contact", "deal", *self.modules)

    def calendar(self, name: str) -> Calendar:
        if name in self.calendars:
            return self.calendars[name]
        if name == "default":
            return DEFAULT_CALENDAR
        raise KeyError(name)


# --- Templates, sequences, views --------------------------------------------


@dataclasses.dataclass(frozen=True)
class Template:
    source: Source
    name: str
    subject: str
    text: str
    html: str | None = None
    shared: bool = True
    description: str | None = None


class StepKind(enum.StrEnum):
    EMAIL = "email"
    TASK = "task"


class Thread(enum.StrEnum):
    REPLY = "reply"
    NEW = "new"


@dataclasses.dataclass(frozen=True)
class Step:
    id: str
    kind: StepKind
    wait: timing.Duration = timing.Duration()
    template: str | None = None  # email steps
    thread: Thread = Thread.NEW
    task: str | None = None  # task steps: the subject
    task_type: str = "todo"
    due_within: timing.Duration | None = None


class SenderKind(enum.StrEnum):
    ENROLLING_USER = "enrolling_user"
    RECORD_OWNER = "record_owner"
    USER = "user"


@dataclasses.dataclass(frozen=True)
class Sender:
    kind: SenderKind
    user: str | None = None  # for SenderKind.USER


class OnEdit(enum.StrEnum):
    PIN = "pin"
    NEXT_STEP = "next_step"


@dataclasses.dataclass(frozen=True)
class Sequence:
    source: Source
    name: str
    steps: tuple[Step, ...]
    applies_to: tuple[str, ...] = ("lead", "contact")
    sender: Sender = Sender(SenderKind.ENROLLING_USER)
    calendar: str = "default"
    on_edit: OnEdit = OnEdit.PIN
    unsubscribe_language: str | None = None  # None: no unsubscribe link
    enroll_when: Criteria | None = None
    description: str | None = None


@dataclasses.dataclass(frozen=True)
class View:
    source: Source
    name: str
    module: str
    where: Criteria
    description: str | None = None


# --- Campaigns ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Who:
    """record_owner, campaign_owner, or a user by id."""

    kind: str
    user: str | None = None


@dataclasses.dataclass(frozen=True)
class FieldUpdate:
    field: str
    value: Any


@dataclasses.dataclass(frozen=True)
class TaskAction:
    subject: str
    due: timing.Duration | None = None
    priority: str = "normal"
    assign_to: Who = Who("record_owner")
    status: str = "not started"


@dataclasses.dataclass(frozen=True)
class CallAction:
    subject: str
    owner: Who = Who("record_owner")
    at: timing.Duration | None = None


Action = FieldUpdate | TaskAction | CallAction


@dataclasses.dataclass(frozen=True)
class Triggers:
    opened: tuple[Action, ...] = ()
    clicked: tuple[Action, ...] = ()
    bounced: tuple[FieldUpdate, ...] = ()


@dataclasses.dataclass(frozen=True)
class Recipients:
    view: str | None = None
    where: Criteria | None = None
    records: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class FollowUp:
    to: str  # received | opened
    template: str
    after: timing.Duration | None = None
    at: dt.datetime | None = None
    except_: Criteria | None = None
    triggers: Triggers = Triggers()
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class Campaign:
    source: Source
    name: str
    module: str
    owner: str
    to: Recipients
    template: str
    from_: str = "owner"
    reply_to: str = "from"
    send_at: dt.datetime | None = None
    unsubscribe_language: str | None = None
    triggers: Triggers = Triggers()
    calendar: str | None = None  # None: any time; else that calendar's working days and send window
    follow_ups: tuple[FollowUp, ...] = ()
    description: str | None = None


# --- Sales processes --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    max: timing.Duration | None = None


@dataclasses.dataclass(frozen=True)
class ReminderPolicy:
    enabled: bool
    every: timing.Duration | None = None  # None: a single reminder
    at: str = "0 7 * * *"
    timezone: str = "UTC"
    to: Who = Who("record_owner")
    template: str | None = None
    digest: bool = False  # one mail per reminded user and run, listing their records


@dataclasses.dataclass(frozen=True)
class SalesProcess:
    source: Source
    name: str
    module: str
    stages: tuple[Stage, ...]
    stage_field: str = "stage"
    where: Criteria | None = None
    follow_up: ReminderPolicy = ReminderPolicy(enabled=False)
    description: str | None = None


# --- Rule tests --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class When:
    """An exact time (`at`) or a window (`after` .. `before`, either open)."""

    at: dt.datetime | None = None
    after: dt.datetime | None = None
    before: dt.datetime | None = None

    def matches(self, t: dt.datetime) -> bool:
        if self.at is not None:
            return t == self.at
        return (self.after is None or t >= self.after) and (self.before is None or t <= self.before)


@dataclasses.dataclass(frozen=True)
class TestRecord:
    id: str
    type: str
    fields: Mapping[str, Any]  # every other key, with datetimes parsed


@dataclasses.dataclass(frozen=True)
class TestEvent:
    at: dt.datetime
    kind: str
    args: Mapping[str, Any]
    line: int
    ruleset: RuleSet | None = dataclasses.field(default=None, compare=False, repr=False)  # `apply`: the changed set


@dataclasses.dataclass(frozen=True)
class SentExpectation:
    when: When
    to: str
    template: str
    subject: str | None = None
    from_: str | None = None
    thread: str | None = None
    line: int = 0


@dataclasses.dataclass(frozen=True)
class TaskExpectation:
    record: str
    subject: str
    when: When | None = None
    line: int = 0


@dataclasses.dataclass(frozen=True)
class UpdateExpectation:
    record: str
    field: str
    value: Any
    line: int = 0


@dataclasses.dataclass(frozen=True)
class EnrollmentExpectation:
    record: str
    sequence: str
    status: str
    reason: str | None = None
    line: int = 0


# What a RuleTest's `campaigns` expectation may compare: a step's statistics (outreach/engine/campaigns.py `Stats`)
# and the reasons its recipients are skipped for (its `Skip`); tests/test_ruletest_campaigns.py keeps them equal.
CAMPAIGN_COUNTS = ("recipients", "pending", "sent", "delivered", "not_delivered", "bounced", "opened",
                   "automated_opens", "clicked", "unclicked", "unknown")  # fmt: skip
CAMPAIGN_SKIPS = ("no valid email", "suppressed", "deleted", "same address twice", "excepted", "bounced",
                  "not opened")  # fmt: skip
CAMPAIGN_STATUSES = ("scheduled", "sending", "sent", "stopped", "deleted", "waiting")


@dataclasses.dataclass(frozen=True)
class CampaignExpectation:
    """A campaign step's statistics at the end of the run; only the counts given are compared."""

    campaign: str
    step: int = 0  # 0: the campaign mail; 1..3: its follow-ups
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)  # sent, opened, bounced, ...
    skipped: Mapping[str, int] = dataclasses.field(default_factory=dict)  # by reason: suppressed, excepted, ...
    status: str | None = None  # scheduled, sending, sent, stopped, deleted; a follow-up: waiting too
    line: int = 0


@dataclasses.dataclass(frozen=True)
class Expectations:
    sent: tuple[SentExpectation, ...] | None = None  # None: not checked; () : nothing may be sent
    tasks: tuple[TaskExpectation, ...] = ()
    updates: tuple[UpdateExpectation, ...] = ()
    enrollments: tuple[EnrollmentExpectation, ...] = ()
    campaigns: tuple[CampaignExpectation, ...] = ()


@dataclasses.dataclass(frozen=True)
class RuleTest:
    __test__ = False  # not a pytest class

    source: Source
    name: str
    start: dt.datetime
    until: dt.datetime | None
    records: tuple[TestRecord, ...]
    events: tuple[TestEvent, ...]
    expect: Expectations
    description: str | None = None


# --- The whole set -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RuleSet:
    settings: Settings
    templates: Mapping[str, Template]
    sequences: Mapping[str, Sequence]
    views: Mapping[str, View]
    campaigns: Mapping[str, Campaign]
    processes: Mapping[str, SalesProcess]
    tests: Mapping[str, RuleTest]

    def live_definitions(self) -> dict[tuple[str, str], Source]:
        """What `apply` stores: every definition but the RuleTests (which only `outreach test` runs)."""
        return {(kind, name): source for kind, name, source in self.definitions() if kind != "RuleTest"}

    def renamed_from(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """{(kind, name): its earlier names, the latest first} of the definitions that say `renamed_from`."""
        return {(kind, name): source.renamed_from for kind, name, source in self.definitions()
                if kind in RENAMABLE and source.renamed_from}  # fmt: skip

    def definitions(self) -> list[tuple[str, str, Source]]:
        """(kind, name, source) of every definition, Settings first."""
        out: list[tuple[str, str, Source]] = [("Settings", "settings", self.settings.source)]
        for kind, items in (
            ("Template", self.templates),
            ("Sequence", self.sequences),
            ("View", self.views),
            ("Campaign", self.campaigns),
            ("SalesProcess", self.processes),
            ("RuleTest", self.tests),
        ):
            out.extend((kind, name, d.source) for name, d in items.items())
        return out
