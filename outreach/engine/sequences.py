"""Sequences, decided: who may be enrolled, what a due enrollment does next, and where it goes after.

Pure functions over the rule model and plain state; they take `now` and
return decisions. The store claims due enrollments and applies the decisions;
the transport sends. Behaviour: RULES-LANGUAGE.md, "kind: Sequence".
"""

from __future__ import annotations

import bisect
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


def _headers_fit(_sender: model.User, _to: str, _subject: str) -> str | None:
    return None


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the application layer knows that decides a step, and the engine cannot see for itself.

    `decide` is the one place that says what a due step does: the daemon's scheduler (and so `outreach test` and
    `outreach simulate`, which run it) and `outreach preview` (through `walk`) all ask it, each handing over the
    facts of where it runs:

    - `unsubscribe_url`: this message's signed unsubscribe link; None when links cannot be signed (no tracking in
      Settings, or no secret to sign with);
    - `sent_today`: each sender address's mail of the 24 hours before `now` and the oldest of it, which its daily
      limit counts; None when not counted (a preview cannot know what else goes out that day);
    - `headers`: why the transport cannot carry a message from this sender to this address with this subject
      (None: it can); the application layer gives the mail layer's own check (outreach.mail.message).
    """

    unsubscribe_url: str | None = None
    sent_today: Mapping[str, tuple[int, dt.datetime | None]] | None = None
    headers: Callable[[model.User, str, str], str | None] = _headers_fit


NO_FACTS = Facts()


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
    facts: Facts | None = None,
) -> Decision:
    """What an enrollment does at `now`. `sequence` is the version the enrollment runs on; `facts` what the
    application layer knows (Facts); `unsubscribe_url` alone is short for Facts(unsubscribe_url=...)."""
    if facts is None:
        facts = Facts(unsubscribe_url=unsubscribe_url) if unsubscribe_url is not None else NO_FACTS
    elif unsubscribe_url is not None:
        raise TypeError("give the unsubscribe URL in `facts` or alone, not both")
    unsubscribe_url = facts.unsubscribe_url
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
        rendered = render.render(template, merge, settings.limits)
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
    problem = facts.headers(sender, recipient.email, rendered.subject)
    if problem is not None:  # what the transport would refuse blocks here, in every path, not at sending
        return Block(problem)
    if facts.sent_today is not None and sender.daily_limit is not None:
        used, oldest = facts.sent_today.get(sender.email, (0, None))
        hold = quota_hold(enrollment, sequence, recipient, settings, sender, used=used, oldest=oldest, now=now)
        if hold is not None:
            return hold
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
) -> Wait | None:
    """Whether the sender's daily limit holds a due email back (None: it may go).

    The limit counts the sender's mail queued in the 24 hours before `now` (a rolling window, as HubSpot
    counts); `used` is that count and `oldest` the oldest of them, whose 24 hours end first. A held step waits
    for the next day's allowance: until a slot frees, then for a working day (and the send window) of its
    calendar. It is never blocked for it, however many days that takes: mail over a limit goes out later, as
    the forecast of `outreach enroll` says (`limit_forecast`).
    """
    limit = sender.daily_limit
    if limit is None or used < limit:
        return None
    frees_at = max(now, (oldest or now) + DAY)
    goes = calendar.next_send_time(frees_at, settings.calendar(sequence.calendar), zone(recipient, sequence, settings))
    return Wait(goes, f"{LIMIT_WAIT}{sender.id} reached ({used}/{limit})")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_DAY_MICROSECONDS = DAY // _MICROSECOND  # times in the forecast are whole microseconds: exact, and fast to compare
LIMIT_WAIT = "waiting: daily limit of "  # the reason of a step held back by its sender's daily limit, then the user


def sending_user(sequence: model.Sequence, *, enrolled_by: str, owner: str | None) -> str | None:
    """The id of the user a sequence's mail goes out as (sender_of's choice), given who enrolled the person and
    the record's owner; None when the record has no owner and the sequence sends as it."""
    kind = sequence.sender.kind
    if kind is model.SenderKind.ENROLLING_USER:
        return enrolled_by
    if kind is model.SenderKind.RECORD_OWNER:
        return owner
    return sequence.sender.user


@dataclasses.dataclass(frozen=True)
class FirstMail:
    """A mail for `limit_forecast`: who sends it, when it is due, and the calendar and zone that say when mail may
    go. `new` is false for mail already scheduled (earlier enrollments' steps, steps waiting for the limit): it
    goes in its turn, first, and is not counted."""

    sender: model.User
    due: dt.datetime
    calendar: model.Calendar
    zone: zoneinfo.ZoneInfo
    new: bool = True


@dataclasses.dataclass(frozen=True)
class LimitForecast:
    """How one sender's daily limit spreads new mail over the days: how many go on each day (in the order of
    the days), how many go later than they are due and when the last one goes. `used` is what the sender queued
    in the 24 hours before (the limit counts it), `ahead` the mail of theirs already scheduled."""

    sender: str  # the user's id
    limit: int
    used: int
    ahead: int
    days: tuple[tuple[dt.date, int], ...]
    held: int
    last: dt.datetime


@dataclasses.dataclass(frozen=True)
class Forecast:
    """`limit_forecast`'s answer: per sender with a daily limit, and when each mail goes (in the order given)."""

    senders: tuple[LimitForecast, ...]
    times: tuple[dt.datetime, ...]


def limit_forecast(
    mails: Sequence[FirstMail],
    *,
    queued: Mapping[str, Sequence[tuple[dt.datetime, int]]],
    day_zone: zoneinfo.ZoneInfo,
) -> Forecast:
    """When mail goes out under its senders' daily limits, as the daemon sends it (quota_hold): each mail, in the
    order it is due (mail already scheduled first), goes at its due time if its sender queued fewer
    than `daily_limit` mails in the 24 hours before, else when enough of them have turned 24 hours old, on a
    working day inside its calendar's window. Mail over a limit goes on later days; none is left out.

    `queued` is the mail each sender address queued before (how many at each time, as the outbox has them);
    days are counted in `day_zone`. Pure: the application layer reads the store and the clock.
    """
    times: list[dt.datetime | None] = [None] * len(mails)
    senders: list[LimitForecast] = []
    by_sender: dict[str, list[int]] = {}
    for i, m in enumerate(mails):
        if m.sender.daily_limit is None:
            times[i] = m.due
        else:
            by_sender.setdefault(m.sender.id, []).append(i)
    for user, indexes in by_sender.items():
        sender = mails[indexes[0]].sender
        limit = sender.daily_limit
        assert limit is not None
        first = (min(mails[i].due for i in indexes) - _EPOCH) // _MICROSECOND
        # the sender's mail in microseconds since 1970, sorted: what the limit counts in any 24 hours
        sent = sorted((t - _EPOCH) // _MICROSECOND for t, n in queued.get(sender.email, ()) for _ in range(n))
        used = len(sent) - bisect.bisect_right(sent, first - _DAY_MICROSECONDS)
        days: dict[dt.date, int] = {}
        held = 0
        last: dt.datetime | None = None
        # In the order of their due times, the mail already scheduled first: steps held back by the limit are due
        # when it frees a slot, and the daemon then takes the older enrollments first. Placed in that order, a
        # mail of the same kind, calendar and zone never goes before the one placed before it (`floor`).
        floor: dict[tuple[bool, int, int], dt.datetime] = {}  # calendar and zone by id(): alive all along
        for i in sorted(indexes, key=lambda i: (mails[i].new, mails[i].due, i)):
            m = mails[i]
            key = (m.new, id(m.calendar), id(m.zone))
            t = max(m.due, floor.get(key, m.due))
            while True:
                at = (t - _EPOCH) // _MICROSECOND
                hi, lo = bisect.bisect_right(sent, at), bisect.bisect_right(sent, at - _DAY_MICROSECONDS)
                if hi - lo < limit:
                    break
                # enough of the 24 hours before turn old (a later instant than t); then a working day, in the window
                frees = _EPOCH + (sent[hi - limit] + _DAY_MICROSECONDS) * _MICROSECOND
                t = calendar.next_send_time(frees, m.calendar, m.zone)
            bisect.insort(sent, at)
            floor[key] = t
            times[i] = t
            if m.new:
                day = t.astimezone(day_zone).date()
                days[day] = days.get(day, 0) + 1
                held += t > m.due
                last = t if last is None or t > last else last
        if last is not None:
            ahead = sum(not mails[i].new for i in indexes)
            senders.append(LimitForecast(user, limit, used, ahead, tuple(sorted(days.items())), held, last))
    assert all(t is not None for t in times)
    return Forecast(tuple(sorted(senders, key=lambda f: f.sender)), tuple(t for t in times if t is not None))


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
    facts: Callable[[Enrollment], Facts] | None = None,
    limit: int = 1000,
) -> Iterator[tuple[dt.datetime, int, SendEmail | CreateTask | Block]]:
    """Every step of an enrollment as it would run if nothing stopped it: (when, its index, what it does).

    For `outreach preview`, `enrollments show` and review timelines: each step is `decide`d as the daemon
    decides it, with the `facts` of each (else only its unsubscribe URL); a task counts as done when it is
    created and a blocked step as passed; a step due outside the send window waits for it. `limit` guards
    against a loop.
    """
    e = enrollment
    for _ in range(limit):
        if e.status is not Status.ACTIVE or e.step_index >= len(sequence.steps) or e.next_due_at is None:
            return
        at = e.next_due_at
        known = facts(e) if facts is not None else Facts(unsubscribe_url=unsubscribe_url(e))
        decision = decide(e, sequence, recipient, ruleset, at, facts=known)
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
    detail: str  # active: what it waits for; blocked: its step and the reason; stopped: the reason; completed:
    # date and steps done
    blocked_at: str | None = None  # blocked: the step it stopped at, `step 2 nudge`


def step_label(index: int, sequence: model.Sequence | None, version: str) -> str:
    """A step as people name it: `step 2 nudge` (1-based, with its id when `sequence` is the version `version`),
    else `step 2`."""
    steps = sequence.steps if sequence is not None and sequence.source.hash == version else ()
    return f"step {index + 1} {steps[index].id}" if index < len(steps) else f"step {index + 1}"


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
    elif e.status is Status.BLOCKED:
        blocked_at = step_label(e.step_index, sequence, e.version)
        return SequenceLine(e.id, e.sequence, e.status, last, None, f"{blocked_at}: {e.reason or 'blocked'}",
                            blocked_at)  # fmt: skip
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
