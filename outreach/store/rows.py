"""What the store hands back: plain, immutable rows of the domain."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Record:
    id: str
    type: str
    email: str | None
    owner: str | None
    stage: str | None
    stage_entered_at: dt.datetime | None
    timezone: str | None
    fields: Mapping[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    converted_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None

    def value(self, field: str) -> Any:
        """A built-in or custom field's value (None when absent)."""
        if field in BUILTIN_COLUMNS:
            return getattr(self, field)
        return self.fields.get(field)

    def as_dict(self) -> dict[str, Any]:
        """Every field by name, built-in first, as `records show --json` prints it."""
        out = {name: getattr(self, name) for name in BUILTIN_COLUMNS}
        out.update(self.fields)
        out["updated_at"] = self.updated_at
        out["converted_at"] = self.converted_at
        out["deleted_at"] = self.deleted_at
        return out


BUILTIN_COLUMNS = ("id", "type", "email", "owner", "stage", "stage_entered_at", "created_at", "timezone")


@dataclasses.dataclass(frozen=True)
class Task:
    id: int
    record_id: str
    subject: str
    type: str
    priority: str
    owner: str | None
    due_at: dt.datetime | None
    created_at: dt.datetime
    completed_at: dt.datetime | None
    enrollment_id: int | None = None
    step_id: str | None = None
    status: str | None = None  # as a campaign's trigger action set it; None: none given


@dataclasses.dataclass(frozen=True)
class Appointment:
    id: int
    record_id: str
    subject: str
    starts_at: dt.datetime
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Event:
    id: int
    record_id: str | None
    kind: str
    at: dt.datetime
    data: Mapping[str, Any]
    source: str


@dataclasses.dataclass(frozen=True)
class Suppression:
    """An address kept off every sequence and campaign: why (unsubscribed | bounced | complaint | manual), since
    when, and what put it there (web, imap ..., cli)."""

    email: str  # lower-case
    reason: str
    at: dt.datetime
    source: str | None


@dataclasses.dataclass(frozen=True)
class ActiveDefinition:
    kind: str
    name: str
    hash: str
    body: Mapping[str, Any]
    applied_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class ScheduledSteps:
    """Steps of active enrollments due at one time: of which sequence and step, who enrolled them, the records'
    owner, and how many (for the forecast of the senders' daily limits)."""

    sequence: str
    step_index: int
    enrolled_by: str
    owner: str | None
    due: dt.datetime
    count: int


@dataclasses.dataclass(frozen=True)
class ImportProblem:
    line: int
    message: str


@dataclasses.dataclass
class ImportResult:
    """What an import did: rows written, rows refused (with their lines), and whether it was committed."""

    inserted: int = 0
    updated: int = 0
    problems: list[ImportProblem] = dataclasses.field(default_factory=list)
    problem_count: int = 0  # may exceed len(problems): only the first ones are kept
    committed: bool = False


@dataclasses.dataclass(frozen=True)
class LinkedMessage:
    """A message found by the key its signed links name: who it went to, and where its tracked links lead."""

    outbox_id: int
    record_id: str | None
    recipient: str
    enrollment_id: int | None
    campaign: str | None
    state: str
    sent_at: dt.datetime | None
    urls: tuple[str, ...]
    language: str


@dataclasses.dataclass(frozen=True)
class Status:
    """Counts for /metrics: messages by state, enrollments by status, due steps not run yet, when each mailbox was
    last read, opens and clicks by (kind, automated), and unsubscribe events."""

    messages: Mapping[str, int]
    enrollments: Mapping[str, int]
    due: int
    mailboxes: Mapping[str, dt.datetime | None]
    hits: Mapping[tuple[str, bool], int]
    unsubscribes: int


@dataclasses.dataclass(frozen=True)
class Lease:
    """Who holds a piece of singleton work until when (`daemon:<id>`: that the daemon is alive, and its `info`)."""

    name: str
    holder: str
    expires_at: dt.datetime
    renewed_at: dt.datetime | None
    info: Mapping[str, Any]
