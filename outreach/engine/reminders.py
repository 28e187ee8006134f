"""Stage-duration reminders, decided: when a record is overdue, when its owner is reminded, and what stops it.

Pure functions over the rule model and plain state: they take `now` (an aware
instant) and return decisions. The scheduler loads each record of a process's
module with its stored `ReminderState` and its `Activity`, calls `run`, stores
the states it gets back and renders the mails. Behaviour: RULES-LANGUAGE.md,
"kind: SalesProcess"; the timing rules with a worked example:
docs/reminders.md.

Timing in short. A record is overdue once it has stayed in its stage longer
than the stage's `max` (`2 days` is 48 hours; business days count on the
calendar named `default`). Reminders go at the process's daily run
(`follow_up.at`, a cron time read in `follow_up.timezone`, UTC by default).
The first goes at the first run on the day after the day the record became
overdue, days being calendar days in the run's zone. The later ones go at the
first run of every `every`-th day counted from the day the first one was sent
(`every` rounded up to whole days). A reminder is due when `now` has reached
its run; a daemon that was down sends one reminder when it is back, and the
next one on the cadence day after that, never two on one day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from outreach import calendar
from outreach.rules import model, timing

_DAY = dt.timedelta(days=1)
_TICK = dt.timedelta(microseconds=1)

Matches = Callable[[model.SalesProcess, Mapping[str, Any]], bool]
"""Whether a record matches a process's `where` criteria (the store evaluates criteria, in SQL)."""


class StopReason(enum.StrEnum):
    """Why reminders of an overdue period stopped before the record left the stage."""

    APPOINTMENT = "appointment"  # an appointment in the future was entered for the record
    TASK = "task"  # a task was created for the record


# --- what the caller passes ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Appointment:
    entered_at: dt.datetime  # when it was entered (the appointment row's created_at)
    starts_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Activity:
    """What was done for a record that can stop its reminders.

    Only what happened while the record was overdue counts (from `overdue_since`
    to `now`); the caller may pass more, e.g. everything since `stage_entered_at`.
    """

    tasks_created_at: tuple[dt.datetime, ...] = ()
    appointments: tuple[Appointment, ...] = ()


NO_ACTIVITY = Activity()


@dataclasses.dataclass(frozen=True)
class ReminderState:
    """One record's reminders in one process, as the store keeps them (a row per process and record).

    An overdue period is (stage, stage_entered_at, overdue_since): when the record's
    stage, its entry time or the process's `max` changes, the period and its state
    start over.
    """

    stage: str
    stage_entered_at: dt.datetime
    overdue_since: dt.datetime
    sent: int = 0
    first_sent_at: dt.datetime | None = None  # later reminders count their days from this one's day
    last_sent_at: dt.datetime | None = None
    next_due_at: dt.datetime | None = None  # derived, for the store's index and `processes overdue`
    stopped: StopReason | None = None
    stopped_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Entry:
    """A record of the process's module (`rows.Record.as_dict()`), its stored state and activity."""

    record: Mapping[str, Any]
    state: ReminderState | None = None
    activity: Activity = NO_ACTIVITY


# --- what the engine returns -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reminder:
    """One reminder due now, with what the template shows."""

    process: str
    record_id: str
    to: str  # the user id reminded
    stage: str
    stage_entered_at: dt.datetime
    max: timing.Duration
    overdue_since: dt.datetime
    in_stage: dt.timedelta  # how long the record has been in the stage, at `now`
    due_at: dt.datetime  # the run it was due at (earlier than now when caught up after downtime)
    number: int  # 1 for the first reminder of the overdue period


@dataclasses.dataclass(frozen=True)
class Overdue:
    """A record's overdue standing, for `processes overdue` and `records show`."""

    process: str
    record_id: str
    stage: str
    stage_entered_at: dt.datetime
    max: timing.Duration
    overdue_since: dt.datetime
    next_reminder: dt.datetime | None  # None: reminders off, stopped, or the single one sent
    sent: int
    stopped: StopReason | None
    stopped_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one record's evaluation decided."""

    record_id: str
    state: ReminderState | None  # what to store; None: not overdue in this process, delete the row
    reminder: Reminder | None = None  # to send now; the state already counts it
    problem: str | None = None  # a reminder is due but cannot go (it stays due)
    to: str | None = None  # the user this record's reminders go to


@dataclasses.dataclass(frozen=True)
class Mail:
    """One reminder mail: one record's reminder, or with `digest: true` every due one of a user."""

    process: str
    template: str | None
    to: str
    reminders: tuple[Reminder, ...]
    also_overdue: tuple[Overdue, ...] = ()  # digest only: the user's other overdue records, not due in this run


@dataclasses.dataclass(frozen=True)
class Run:
    outcomes: tuple[Outcome, ...]
    mails: tuple[Mail, ...]


# --- membership and overdue ------------------------------------------------------------------------


def follows(process: model.SalesProcess, record: Mapping[str, Any], matches: Matches | None = None) -> bool:
    """Whether the record follows the process: of its module and, if it has `where`, matching it."""
    if record.get("type") != process.module:
        return False
    if process.where is None:
        return True
    if matches is None:
        raise ValueError(f"process {process.name!r} has `where` criteria: pass `matches` to evaluate them")
    return matches(process, record)


def processes_of(
    record: Mapping[str, Any], processes: Iterable[model.SalesProcess], matches: Matches | None = None
) -> tuple[model.SalesProcess, ...]:
    """Every process the record follows, by name."""
    return tuple(sorted((p for p in processes if follows(p, record, matches)), key=lambda p: p.name))


def stage_of(process: model.SalesProcess, value: object) -> model.Stage | None:
    """The process's stage with this name; None for a value that is not one of its stages."""
    return next((s for s in process.stages if s.name == value), None)


def overdue_since(
    process: model.SalesProcess,
    stage: object,
    entered_at: dt.datetime | None,
    *,
    settings: model.Settings | None = None,
) -> dt.datetime | None:
    """When a record that entered `stage` at `entered_at` becomes overdue; None if it never does.

    A plain `max` is exact time (`2 days` is 48 hours after the entry). A business `max`
    counts working days on the calendar named `default` of `settings` (Monday to Friday in
    UTC without settings), keeping the time of day; its send window does not apply.
    """
    found = stage_of(process, stage)
    if found is None or found.max is None or entered_at is None:
        return None
    entered = _utc(entered_at)
    if not found.max.is_business:
        return entered + found.max.as_timedelta()
    cal = settings.calendar("default") if settings is not None else model.DEFAULT_CALENDAR
    tz = timing.zone(cal.timezone or (settings.timezone if settings is not None else "UTC"))
    return calendar.add_wait(entered, found.max, dataclasses.replace(cal, send_window=None), tz)


# --- the schedule -----------------------------------------------------------------------------------


def every_days(policy: model.ReminderPolicy) -> int | None:
    """The repeat interval in whole days (rounded up, at least 1); None: a single reminder."""
    if policy.every is None:
        return None
    return max(1, math.ceil(policy.every.as_timedelta() / _DAY))


def first_reminder_at(process: model.SalesProcess, since: dt.datetime) -> dt.datetime | None:
    """The first run on the day after the day (in the run's zone) a record became overdue at `since`."""
    policy = process.follow_up
    return _first_run_on(policy.at, policy.timezone, _day(since, policy) + _DAY)


def next_run(process: model.SalesProcess, after: dt.datetime) -> dt.datetime | None:
    """The first daily run after `after` that can send a reminder (the first run of a day); None: never again.

    Reminders fall due only at these times, so a caller that looked at every record at `after`
    need not look again before it (unless records changed).
    """
    policy = process.follow_up
    day = _day(after, policy)
    found = _first_run_on(policy.at, policy.timezone, day)
    if found is not None and found <= after:
        found = _first_run_on(policy.at, policy.timezone, day + _DAY)
    return found


def next_due(process: model.SalesProcess, state: ReminderState) -> dt.datetime | None:
    """When the state's next reminder is due; None when none will be (off, stopped, single one sent)."""
    policy = process.follow_up
    if not policy.enabled or state.stopped is not None:
        return None
    if state.sent == 0 or state.first_sent_at is None or state.last_sent_at is None:
        return first_reminder_at(process, state.overdue_since)
    n = every_days(policy)
    if n is None:
        return None
    # The first run of the first cadence day after the day of the last reminder: a reminder
    # caught up late still leaves the cadence where it was, and no day gets two.
    start = _day(state.first_sent_at, policy)
    k = (_day(state.last_sent_at, policy) - start).days // n + 1
    return _first_run_on(policy.at, policy.timezone, start + k * n * _DAY)


def reminder_times(
    process: model.SalesProcess,
    stage: str,
    entered_at: dt.datetime,
    start: dt.datetime,
    end: dt.datetime,
    *,
    settings: model.Settings | None = None,
) -> list[dt.datetime]:
    """Every reminder in [start, end) for a record that entered `stage` at `entered_at` and stays.

    Assumes nothing stops the reminders and the daemon runs at every run time.
    """
    since = overdue_since(process, stage, entered_at, settings=settings)
    if since is None or not process.follow_up.enabled:
        return []
    state = ReminderState(stage, _utc(entered_at), since)
    times: list[dt.datetime] = []
    due = next_due(process, state)
    while due is not None and due < end:
        if due >= start:
            times.append(due)
        state = dataclasses.replace(state, sent=state.sent + 1, first_sent_at=state.first_sent_at or due,
                                    last_sent_at=due)  # fmt: skip
        due = next_due(process, state)
    return times


# --- deciding -----------------------------------------------------------------------------------------


def tick(
    process: model.SalesProcess,
    record: Mapping[str, Any],
    state: ReminderState | None,
    now: dt.datetime,
    *,
    activity: Activity = NO_ACTIVITY,
    matches: Matches | None = None,
    settings: model.Settings | None = None,
) -> Outcome:
    """One record at `now`: its new state and the reminder to send, if one is due.

    Calling it again at the same `now` with the returned state sends nothing more.
    """
    now = _utc(now)
    record_id = str(record.get("id"))
    found = _current(process, record, state, now, activity, matches, settings)
    if found is None:
        return Outcome(record_id, None)
    stage, current = found
    to = _recipient(process, record)
    due = current.next_due_at
    if due is None or now < due:
        return Outcome(record_id, current, to=to)
    if to is None:
        return Outcome(record_id, current, problem=f"record {record_id} has no owner to remind")
    sent = dataclasses.replace(current, sent=current.sent + 1, first_sent_at=current.first_sent_at or now,
                               last_sent_at=now)  # fmt: skip
    sent = dataclasses.replace(sent, next_due_at=next_due(process, sent))
    assert stage.max is not None
    reminder = Reminder(
        process=process.name, record_id=record_id, to=to, stage=current.stage,
        stage_entered_at=current.stage_entered_at, max=stage.max, overdue_since=current.overdue_since,
        in_stage=now - current.stage_entered_at, due_at=due, number=sent.sent,
    )  # fmt: skip
    return Outcome(record_id, sent, reminder, to=to)


def status(
    process: model.SalesProcess,
    record: Mapping[str, Any],
    state: ReminderState | None,
    now: dt.datetime,
    *,
    activity: Activity = NO_ACTIVITY,
    matches: Matches | None = None,
    settings: model.Settings | None = None,
) -> Overdue | None:
    """The record's overdue standing at `now` (without sending anything); None when it is not overdue."""
    found = _current(process, record, state, _utc(now), activity, matches, settings)
    if found is None:
        return None
    return _standing(process, str(record.get("id")), found[1])


def run(
    process: model.SalesProcess,
    entries: Iterable[Entry],
    now: dt.datetime,
    *,
    matches: Matches | None = None,
    settings: model.Settings | None = None,
    digest: bool | None = None,
) -> Run:
    """One tick of one process over the records of its module: new states and the mails to send.

    `digest` None reads `follow_up.digest`.
    """
    outcomes = tuple(
        tick(process, e.record, e.state, now, activity=e.activity, matches=matches, settings=settings) for e in entries
    )
    if digest is None:
        digest = process.follow_up.digest
    return Run(outcomes, mails(process, outcomes, digest=digest))


def mails(process: model.SalesProcess, outcomes: Iterable[Outcome], *, digest: bool) -> tuple[Mail, ...]:
    """The mails for one run's outcomes: one per reminder, or with `digest` one per reminded user.

    A digest lists the user's due reminders and, besides, their other overdue records whose
    reminders are not stopped (only when at least one reminder of theirs is due).
    """
    outcomes = list(outcomes)
    template = process.follow_up.template
    due = [o.reminder for o in outcomes if o.reminder is not None]
    if not digest:
        return tuple(Mail(process.name, template, r.to, (r,)) for r in due)
    by_user: dict[str, list[Reminder]] = {}
    for r in due:
        by_user.setdefault(r.to, []).append(r)
    others: dict[str, list[Overdue]] = {}
    if by_user:
        for o in outcomes:
            if o.reminder is None and o.state is not None and o.state.stopped is None and o.to in by_user:
                others.setdefault(o.to, []).append(_standing(process, o.record_id, o.state))
    return tuple(
        Mail(process.name, template, user, tuple(rs), tuple(others.get(user, ())))
        for user, rs in sorted(by_user.items())
    )


# --- inside --------------------------------------------------------------------------------------------


def _current(
    process: model.SalesProcess,
    record: Mapping[str, Any],
    state: ReminderState | None,
    now: dt.datetime,
    activity: Activity,
    matches: Matches | None,
    settings: model.Settings | None,
) -> tuple[model.Stage, ReminderState] | None:
    """The record's stage and the state of its current overdue period, stops applied; None: not overdue."""
    if not follows(process, record, matches):
        return None
    stage = stage_of(process, record.get(process.stage_field))
    entered = record.get("stage_entered_at")
    if stage is None or not isinstance(entered, dt.datetime):
        return None
    since = overdue_since(process, stage.name, entered, settings=settings)
    if since is None or now <= since:  # overdue means longer than max
        return None
    entered = _utc(entered)
    if state is None or (state.stage, state.stage_entered_at, state.overdue_since) != (stage.name, entered, since):
        state = ReminderState(stage.name, entered, since)  # a new overdue period
    if state.stopped is None:
        stop = _first_stop(activity, since, now)
        if stop is not None:
            state = dataclasses.replace(state, stopped=stop[0], stopped_at=stop[1])
    return stage, dataclasses.replace(state, next_due_at=next_due(process, state))


def _first_stop(activity: Activity, since: dt.datetime, now: dt.datetime) -> tuple[StopReason, dt.datetime] | None:
    """The earliest thing done for the record while it was overdue that stops its reminders."""
    found = [(_utc(t), StopReason.TASK) for t in activity.tasks_created_at]
    found += [(_utc(a.entered_at), StopReason.APPOINTMENT) for a in activity.appointments
              if _utc(a.starts_at) > _utc(a.entered_at)]  # fmt: skip
    found = [(t, why) for t, why in found if since <= t <= now]
    if not found:
        return None
    at, why = min(found)
    return why, at


def _recipient(process: model.SalesProcess, record: Mapping[str, Any]) -> str | None:
    """The user reminded: the record's owner, or the user `follow_up.to` names."""
    to = process.follow_up.to
    if to.kind == "user":
        return to.user
    owner = record.get("owner")
    return owner if isinstance(owner, str) and owner else None


def _standing(process: model.SalesProcess, record_id: str, state: ReminderState) -> Overdue:
    stage = stage_of(process, state.stage)
    assert stage is not None and stage.max is not None
    return Overdue(process.name, record_id, state.stage, state.stage_entered_at, stage.max, state.overdue_since,
                   state.next_due_at, state.sent, state.stopped, state.stopped_at)  # fmt: skip


def _utc(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t.isoformat()} has no time zone: reminders need aware datetimes")
    return t.astimezone(dt.UTC)


def _day(t: dt.datetime, policy: model.ReminderPolicy) -> dt.date:
    """The calendar day of an instant in the run's zone."""
    return t.astimezone(timing.zone(policy.timezone)).date()


@functools.lru_cache(maxsize=4096)
def _first_run_on(cron: str, zone: str, day: dt.date) -> dt.datetime | None:
    """The first run of the cron time (read in zone) on `day` or a later day, in UTC; None if it never runs.

    Cached: every record overdue since the same day shares it.
    """
    import croniter  # imported here: only processes with reminders pay for it

    tz = timing.zone(zone)
    start = dt.datetime.combine(day, dt.time(), tzinfo=tz)  # fold=0: the first midnight, or just after a gap
    it = croniter.croniter(cron, start - _TICK)
    for _ in range(3):  # a zone whose midnight repeats may give a run on the previous day first
        try:
            found: dt.datetime = it.get_next(dt.datetime)
        except croniter.CroniterBadDateError:  # e.g. "0 7 31 2 *": no such day
            return None
        if found.astimezone(tz).date() >= day:
            return found.astimezone(dt.UTC)
    return None
