"""Sequences, decided: who may be enrolled, what a due enrollment does next, and where it goes after.

Pure functions over the rule model and plain state; they take `now` and
return decisions. The store claims due enrollments and applies the decisions;
the transport sends. Behaviour: RULES-LANGUAGE.md, "kind: Sequence".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import zoneinfo
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from outreach import calendar
from outreach.engine import render, unsubscribe
from outreach.rules import model


class Status(enum.StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    COMPLETED = "completed"
    STOPPED = "stopped"


LIVE = (Status.ACTIVE, Status.BLOCKED)

@dataclasses.dataclass(frozen=True)
class Enrollment:
    """One person in one sequence, at one version, as the store keeps it."""

    id: int
    record_id: str
    email: str
    sequence: str
    version: str
    enrolled_by: str
    status: Status
    step_index: int  # the step that runs next (== steps_done unless the sequence was edited)
    steps_done: int
    next_due_at: dt.datetime | None  # None while a task step waits for its task
    started_at: dt.datetime
    reason: str | None = None
    awaiting_task: bool = False
    last_step_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    thread_message_id: str | None = None  # the latest mail, for reply steps
    thread_subject: str | None = None


ENROLLMENT_FIELDS = tuple(f.name for f in dataclasses.fields(Enrollment))  # in their order
_FIELD_NAMES = frozenset(ENROLLMENT_FIELDS)


def enrollment_from(values: Sequence[Any]) -> Enrollment:
    """An Enrollment from the values of all its fields in their order, without __init__ (as `evolve`)."""
    new = object.__new__(Enrollment)
    new.__dict__.update(zip(ENROLLMENT_FIELDS, values, strict=True))
    return new


def evolve(enrollment: Enrollment, **changes: Any) -> Enrollment:
    """`dataclasses.replace` for an Enrollment, at a fraction of its cost (a due step makes one or two).

    Enrollment has plain fields, no defaults made by factories and no __post_init__, so a copy of its
    attributes with the changes applied is the same as calling __init__ again.
    """
    unknown = changes.keys() - _FIELD_NAMES
    if unknown:
        raise TypeError(f"Enrollment has no field {', '.join(sorted(unknown))}")
    new = object.__new__(Enrollment)
    new.__dict__.update(enrollment.__dict__, **changes)
    return new


@dataclasses.dataclass(frozen=True)
class Recipient:
    """What the engine needs of a record: its fields for merging and its address, owner and zone."""

    id: str
    type: str
    email: str | None
    owner: str | None
    timezone: str | None
    fields: Mapping[str, Any]  # every field by name, built-in and custom
    deleted: bool = False


# --- decisions -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SendEmail:
    step: model.Step
    sender: model.User
    to: str
    rendered: render.Rendered
    in_reply_to: str | None  # the thread's latest Message-ID for `thread: reply`


@dataclasses.dataclass(frozen=True)
class CreateTask:
    step: model.Step
    subject: str
    type: str
    due_at: dt.datetime | None
    owner: str | None  # the enrolling user by default


@dataclasses.dataclass(frozen=True)
class Block:
    reason: str


@dataclasses.dataclass(frozen=True)
class Wait:
    until: dt.datetime | None  # None: until the step's task is completed
    reason: str | None = None  # what it waits for when not its schedule, e.g. the sender's daily limit


@dataclasses.dataclass(frozen=True)
class Complete:
    steps_done: int


Decision = SendEmail | CreateTask | Block | Wait | Complete


# --- enrolling ---------------------------------------------------------------------------


class Refusal(str):
    """Why a record cannot be enrolled: the notice for the user (the string), and its `kind` for counting
    (deleted, wrong_type, no_email, unsubscribed, already_active, same_address, no_record, not_a_user)."""

    kind: str

    def __new__(cls, kind: str, message: str) -> Refusal:
        made = super().__new__(cls, message)
        made.kind = kind
        return made


def refusal(
    recipient: Recipient,
    sequence: model.Sequence,
    *,
    live_in_sequence: bool,
    unsubscribed_at: dt.datetime | None,
) -> Refusal | None:
    """Why this record cannot be enrolled now (a notice for the user), or None."""
    if recipient.deleted:
        return Refusal("deleted", f"record {recipient.id} is deleted")
    if recipient.type not in sequence.applies_to:
        return Refusal("wrong_type", f"record {recipient.id} is a {recipient.type}; {sequence.name} enrolls "
                                     f"{', '.join(sequence.applies_to)}")  # fmt: skip
    if not recipient.email:
        return Refusal("no_email", f"record {recipient.id} has no valid email address")
    if unsubscribed_at is not None:
        return Refusal("unsubscribed", f"{recipient.email} unsubscribed on {unsubscribed_at:%Y-%m-%d %H:%M} UTC and "
                                       "cannot be enrolled")  # fmt: skip
    if live_in_sequence:
        return Refusal("already_active", f"{recipient.email} is already active in {sequence.name}")
    return None


def zone(recipient: Recipient, sequence: model.Sequence, settings: model.Settings) -> zoneinfo.ZoneInfo:
    cal = settings.calendar(sequence.calendar)
    return calendar.zone_for(recipient.timezone, cal, settings.timezone)


def first_due(
    recipient: Recipient, sequence: model.Sequence, settings: model.Settings, now: dt.datetime
) -> dt.datetime:
    """When the first step runs: its wait after enrollment, inside the calendar's send window."""
    cal = settings.calendar(sequence.calendar)
    return calendar.add_wait(now, sequence.steps[0].wait, cal, zone(recipient, sequence, settings))


def enroll(
    enrollment_id: int,
    recipient: Recipient,
    sequence: model.Sequence,
    settings: model.Settings,
    *,
    enrolled_by: str,
    now: dt.datetime,
) -> Enrollment:
    """A new active enrollment (after `refusal` said none)."""
    assert recipient.email is not None
    return Enrollment(
        id=enrollment_id, record_id=recipient.id, email=recipient.email, sequence=sequence.name,
        version=sequence.source.hash, enrolled_by=enrolled_by, status=Status.ACTIVE, step_index=0, steps_done=0,
        next_due_at=first_due(recipient, sequence, settings, now), started_at=now,
    )  # fmt: skip


# --- running a due step ------------------------------------------------------------------------


def sender_of(
    sequence: model.Sequence, enrollment: Enrollment, recipient: Recipient, settings: model.Settings
) -> model.User | str:
    """The user mail goes out as, or the reason there is none."""
    kind = sequence.sender.kind
    if kind is model.SenderKind.ENROLLING_USER:
        user_id: str | None = enrollment.enrolled_by
    elif kind is model.SenderKind.RECORD_OWNER:
        user_id = recipient.owner
        if user_id is None:
            return f"the sequence sends as the record owner and record {recipient.id} has no owner"
    else:
        user_id = sequence.sender.user
    if user_id is None or user_id not in settings.users:
        return f"the sender {user_id!r} is not a user in Settings.users"
    return settings.users[user_id]


def decide(
    enrollment: Enrollment,
    sequence: model.Sequence,
    recipient: Recipient,
    ruleset: model.RuleSet,
    now: dt.datetime,
    *,
    unsubscribe_url: str | None = None,
) -> Decision:
    """What an enrollment does at `now`. `sequence` is the version the enrollment runs on."""
    if enrollment.status is not Status.ACTIVE:
        return Wait(None)
    if enrollment.awaiting_task:
        return Wait(None)
    if enrollment.step_index >= len(sequence.steps):
        return Complete(enrollment.steps_done)
    if enrollment.next_due_at is not None and enrollment.next_due_at > now:
        return Wait(enrollment.next_due_at)
    step = sequence.steps[enrollment.step_index]
    settings = ruleset.settings
    sender = sender_of(sequence, enrollment, recipient, settings)
    if isinstance(sender, str):
        return Block(sender)
    if step.kind is model.StepKind.TASK:
        cal = settings.calendar(sequence.calendar)
        due = step.due_within
        due_at = None
        if due is not None:
            due_at = calendar.add_wait(now, due, cal, zone(recipient, sequence, settings)) if due.is_business \
                else now + due.as_timedelta()  # fmt: skip
        return CreateTask(step, step.task or "", step.task_type, due_at, sender.id)
    window_opens = calendar.next_send_time(
        now, settings.calendar(sequence.calendar), zone(recipient, sequence, settings)
    )
    if window_opens > now:  # due inside the window but run after it closed, or retried at night
        return Wait(window_opens)
    template = ruleset.templates.get(step.template or "")
    if template is None:
        return Block(f"template {step.template!r} no longer exists")
    if not recipient.email:
        return Block(f"record {recipient.id} has no valid email address")
    owner = settings.users.get(recipient.owner) if recipient.owner else None
    merge = render.context(recipient.fields, sender=sender, owner=owner, organization=settings.organization,
                           unsubscribe_url=unsubscribe_url)  # fmt: skip
    try:
        rendered = render.render(template, merge)
        render.check_header("From", sender.name)
    except render.RenderError as exc:
        return Block(exc.reason)
    in_reply_to = None
    if step.thread is model.Thread.REPLY and enrollment.thread_message_id is not None:
        in_reply_to = enrollment.thread_message_id
        subject = enrollment.thread_subject or rendered.subject
        rendered = render.Rendered(subject if subject.startswith("Re: ") else f"Re: {subject}", rendered.text,
                                   rendered.html)  # fmt: skip
    if sequence.unsubscribe_language is not None and unsubscribe_url is not None:
        rendered = unsubscribe.add_footer(rendered, sequence.unsubscribe_language, unsubscribe_url)
    return SendEmail(step, sender, recipient.email, rendered, in_reply_to)


DAY = dt.timedelta(days=1)


def quota_hold(
    enrollment: Enrollment,
    sequence: model.Sequence,
    recipient: Recipient,
    settings: model.Settings,
    sender: model.User,
    *,
    used: int,
    oldest: dt.datetime | None,
    now: dt.datetime,
) -> Wait | Block | None:
    """Whether the sender's daily limit holds a due email back (None: it may go).

    The limit counts the sender's mail queued in the 24 hours before `now` (a rolling window, as HubSpot
    counts); `used` is that count and `oldest` the oldest of them, whose 24 hours end first. A held step
    waits until a slot frees; if it could not go within a day of when it was due, it is blocked.
    """
    limit = sender.daily_limit
    if limit is None or used < limit:
        return None
    frees_at = max(now, (oldest or now) + DAY)
    why = f"daily limit of {sender.id} reached ({used}/{limit})"
    if frees_at - scheduled_at(enrollment, sequence, recipient, settings) > DAY:
        return Block(f"quota exceeded: {why}")
    return Wait(frees_at, f"waiting: {why}")


def scheduled_at(
    enrollment: Enrollment, sequence: model.Sequence, recipient: Recipient, settings: model.Settings
) -> dt.datetime:
    """When the enrollment's current step was due by its schedule (its wait after the last step or the start)."""
    if enrollment.step_index == 0 or enrollment.last_step_at is None:
        return first_due(recipient, sequence, settings, enrollment.started_at)
    step = sequence.steps[min(enrollment.step_index, len(sequence.steps) - 1)]
    cal = settings.calendar(sequence.calendar)
    return calendar.add_wait(enrollment.last_step_at, step.wait, cal, zone(recipient, sequence, settings))


def after_step(
    enrollment: Enrollment,
    sequence: model.Sequence,
    recipient: Recipient,
    settings: model.Settings,
    done_at: dt.datetime,
    *,
    message_id: str | None = None,
    subject: str | None = None,
) -> Enrollment:
    """The enrollment once its current step is done (an email sent, or a step's task completed)."""
    index = enrollment.step_index + 1
    changes: dict[str, Any] = {"step_index": index, "steps_done": enrollment.steps_done + 1, "last_step_at": done_at,
                               "awaiting_task": False, "reason": None}  # fmt: skip
    if message_id is not None:
        changes.update(thread_message_id=message_id, thread_subject=_bare_subject(subject or ""))
    changes.update(_next_run(index, sequence, recipient, settings, done_at))
    return evolve(enrollment, **changes)


def schedule_next(
    enrollment: Enrollment,
    sequence: model.Sequence,
    recipient: Recipient,
    settings: model.Settings,
    done_at: dt.datetime,
) -> Enrollment:
    """When the enrollment's step `step_index` runs: its wait after `done_at`; completed past the last step."""
    return evolve(enrollment, **_next_run(enrollment.step_index, sequence, recipient, settings, done_at))


def _next_run(
    index: int, sequence: model.Sequence, recipient: Recipient, settings: model.Settings, done_at: dt.datetime
) -> dict[str, Any]:
    if index >= len(sequence.steps):
        return {"status": Status.COMPLETED, "next_due_at": None, "ended_at": done_at}
    cal = settings.calendar(sequence.calendar)
    return {"next_due_at": calendar.add_wait(done_at, sequence.steps[index].wait, cal,
                                             zone(recipient, sequence, settings))}  # fmt: skip


def _bare_subject(subject: str) -> str:
    return subject[4:] if subject.startswith("Re: ") else subject


def walk(
    enrollment: Enrollment,
    sequence: model.Sequence,
    recipient: Recipient,
    ruleset: model.RuleSet,
    *,
    unsubscribe_url: Callable[[Enrollment], str | None] = lambda _e: None,
    limit: int = 1000,
) -> Iterator[tuple[dt.datetime, int, SendEmail | CreateTask | Block]]:
    """Every step of an enrollment as it would run if nothing stopped it: (when, its index, what it does).

    For `outreach preview` and review timelines: a task counts as done when it is created and a blocked step
    as passed; a step due outside the send window waits for it. `limit` guards against a loop.
    """
    e = enrollment
    for _ in range(limit):
        if e.status is not Status.ACTIVE or e.step_index >= len(sequence.steps) or e.next_due_at is None:
            return
        at = e.next_due_at
        decision = decide(e, sequence, recipient, ruleset, at, unsubscribe_url=unsubscribe_url(e))
        if isinstance(decision, Wait):
            if decision.until is None or decision.until <= at:
                return
            e = evolve(e, next_due_at=decision.until)
            continue
        if isinstance(decision, Complete):
            return
        yield at, e.step_index, decision
        if isinstance(decision, SendEmail):
            e = after_step(e, sequence, recipient, ruleset.settings, at, message_id="<walk@example>",
                           subject=decision.rendered.subject)  # fmt: skip
        else:
            e = after_step(e, sequence, recipient, ruleset.settings, at)


def task_created(enrollment: Enrollment) -> Enrollment:
    """A task step's task exists: the sequence waits until it is completed."""
    return evolve(enrollment, awaiting_task=True, next_due_at=None)


def block(enrollment: Enrollment, reason: str) -> Enrollment:
    return evolve(enrollment, status=Status.BLOCKED, reason=reason)


def retry(enrollment: Enrollment, now: dt.datetime) -> Enrollment:
    """A blocked step is tried again at the next tick."""
    if enrollment.status is not Status.BLOCKED:
        raise ValueError(f"enrollment {enrollment.id} is {enrollment.status}, not blocked")
    return evolve(enrollment, status=Status.ACTIVE, reason=None, next_due_at=now)


def stop(enrollment: Enrollment, reason: str, at: dt.datetime) -> Enrollment:
    """End a live enrollment (replied, converted, deleted, unsubscribed, bounced, stopped by USER, ...)."""
    if enrollment.status not in LIVE:
        return enrollment
    return evolve(enrollment, status=Status.STOPPED, reason=reason, ended_at=at, next_due_at=None,
                  awaiting_task=False)  # fmt: skip


# --- edits while people are enrolled ------------------------------------------------------------


def follow_edit(enrollment: Enrollment, old: model.Sequence, new: model.Sequence) -> Enrollment:
    """Move an enrollment that just finished a step onto the new version, for `on_edit: next_step`.

    Steps are matched by id: it continues after the step it finished. If the new
    version no longer has that step, it continues at the same position, and
    completes when the new version has no step there.
    """
    if new.on_edit is not model.OnEdit.NEXT_STEP or enrollment.version == new.source.hash:
        return enrollment
    finished = old.steps[enrollment.step_index - 1].id if 0 < enrollment.step_index <= len(old.steps) else None
    ids = [s.id for s in new.steps]
    index = ids.index(finished) + 1 if finished in ids else enrollment.step_index
    return evolve(enrollment, version=new.source.hash, step_index=min(index, len(new.steps)))


# --- what people look at ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SequenceLine:
    """One sequence of a record, as the sequences widget shows it."""

    enrollment: int
    sequence: str
    status: Status
    last_step: str | None  # the last completed step's id
    next_email: dt.datetime | None  # active: when the next mail goes
    detail: str  # active: what it waits for; blocked/stopped: the reason; completed: date and steps done


def widget_line(e: Enrollment, sequence: model.Sequence | None) -> SequenceLine:
    steps = sequence.steps if sequence is not None and sequence.source.hash == e.version else ()
    last = steps[e.steps_done - 1].id if 0 < e.steps_done <= len(steps) else (
        f"step {e.steps_done}" if e.steps_done else None)  # fmt: skip
    next_email = None
    if e.status is Status.ACTIVE:
        upcoming = steps[e.step_index] if e.step_index < len(steps) else None
        if e.awaiting_task:
            detail = "waiting for its task to be completed"
        elif upcoming is not None and upcoming.kind is model.StepKind.TASK:
            detail = f"task {upcoming.task!r} at {e.next_due_at:%Y-%m-%d %H:%M} UTC" if e.next_due_at else "task next"
        else:
            next_email = e.next_due_at
            detail = f"next mail {e.next_due_at:%Y-%m-%d %H:%M} UTC" if e.next_due_at else ""
            if e.reason:  # held back, e.g. "waiting: daily limit of anna reached (300/300)"
                detail = f"{e.reason}; {detail}" if detail else e.reason
    elif e.status is Status.COMPLETED:
        detail = f"completed {e.ended_at:%Y-%m-%d} after {e.steps_done} steps" if e.ended_at else "completed"
    else:
        detail = e.reason or ""
    return SequenceLine(e.id, e.sequence, e.status, last, next_email, detail)


def widget(enrollments: list[Enrollment], ruleset: model.RuleSet) -> tuple[dict[str, int], list[SequenceLine]]:
    """Counts of active, blocked and completed sequences, and one line per enrollment (live ones first)."""
    counts = {s: sum(1 for e in enrollments if e.status is Status(s)) for s in ("active", "blocked", "completed")}
    order = {Status.ACTIVE: 0, Status.BLOCKED: 1, Status.COMPLETED: 2, Status.STOPPED: 3}
    lines = [widget_line(e, ruleset.sequences.get(e.sequence))
             for e in sorted(enrollments, key=lambda e: (order[e.status], e.started_at))]  # fmt: skip
    return counts, lines
