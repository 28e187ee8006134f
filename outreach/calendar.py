"""The business calendar: working days, holidays, send windows and when a step's wait is over.

Pure functions of their arguments: no clock reads, no I/O. Every instant going in must be
aware; every instant coming out is aware and in UTC.

Local wall-clock times become instants by one rule (`_first_instant`): the first instant at
which the local clock shows that time or a later one. A time in a repeated hour (clocks
going back) is its first occurrence; a time in a skipped hour (clocks going forward) is the
moment the clocks jump, e.g. 02:30 on a spring-forward night in Berlin is 03:00 CEST.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import zoneinfo
from typing import Any, Protocol

from outreach.rules import model, timing

# Longest stretch of non-working days we look through for a send slot. Any calendar with a
# working weekday has one within a few weeks, whatever its holidays.
_SEARCH_DAYS = 400


class _Holidays(Protocol):
    """What we use of python-holidays' HolidayBase."""

    def __contains__(self, day: object) -> bool: ...

    def __getitem__(self, key: Any) -> Any: ...  # a slice of dates gives the sorted holidays in it


@functools.cache
def _holidays(country: str, subdivision: str | None) -> _Holidays:
    import holidays  # imported here: only calendars with a holiday country pay for it

    # python-holidays computes each year on first use, so one object serves every year.
    days: _Holidays = holidays.country_holidays(country, subdiv=subdivision)
    return days


def zone_for(record_timezone: str | None, calendar: model.Calendar, default_tz: str) -> zoneinfo.ZoneInfo:
    """The zone a send window is read in: the recipient's if valid, else the calendar's, else Settings'."""
    # "localtime" resolves to the server's own zone file; it names no place a recipient lives.
    if isinstance(record_timezone, str) and record_timezone and record_timezone != "localtime":
        try:
            return timing.zone(record_timezone)
        except ValueError:
            pass
    return timing.zone(calendar.timezone or default_tz)


# The functions below are pure, and a tick asks them the same questions for every enrollment due at the same
# `now` in the same calendar and zone: the answers for a day are kept (a few thousand days and instants).


@functools.lru_cache(maxsize=8192)
def is_working_day(day: dt.date, calendar: model.Calendar) -> bool:
    """A weekday of the calendar's workdays that is not a public holiday of its country."""
    if day.weekday() not in calendar.workdays:
        return False
    if calendar.holiday_country is None:
        return True
    return day not in _holidays(calendar.holiday_country, calendar.holiday_subdivision)


@functools.lru_cache(maxsize=8192)  # every step due at a tick asks with the same `now`
def next_send_time(t: dt.datetime, calendar: model.Calendar, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The earliest instant at or after t at which mail may go: inside the send window of a working day; without
    a window, any time of a working day (t itself on one, else 00:00 of the next working day)."""
    t = _utc(t)
    window = calendar.send_window
    day = t.astimezone(tz).date()
    if window is None:
        # Mail goes out on working days only, windowed or not (the product note: weekends are skipped).
        if is_working_day(day, calendar):
            return t
        return _first_instant(dt.datetime.combine(_working_day_after(day, 1, calendar), dt.time()), tz)
    for _ in range(_SEARCH_DAYS):
        opens, closes = _window_on(day, window, tz)
        if t < closes and opens < closes and is_working_day(day, calendar):
            return max(t, opens)
        day += dt.timedelta(days=1)
    raise ValueError(f"calendar {calendar.name!r} has no working day in {_SEARCH_DAYS} days after {t:%Y-%m-%d}")


@functools.lru_cache(maxsize=8192)  # ... and every step done at it, for each step's wait
def add_wait(start: dt.datetime, wait: timing.Duration, calendar: model.Calendar, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """When a step whose wait began at start is due: after the wait, at the next send time (a working day's)."""
    start = _utc(start)
    if wait.business_days < 0 or wait.seconds < 0:
        raise ValueError(f"a wait cannot be negative: {wait!r}")
    if not wait.is_business:
        return next_send_time(start + dt.timedelta(seconds=wait.seconds), calendar, tz)
    wall = _wall_clock(start, tz)
    if not is_working_day(wall.date(), calendar):
        # Counting starts at the beginning of the next working day, so a later start never
        # comes due earlier: Friday 17:00 + 1 is Monday 17:00, Saturday 10:00 + 1 is Tuesday 00:00.
        wall = dt.datetime.combine(_working_day_after(wall.date(), 1, calendar), dt.time())
    day = _working_day_after(wall.date(), wait.business_days, calendar)
    due = _first_instant(dt.datetime.combine(day, wall.time()), tz)
    return next_send_time(due, calendar, tz)


@functools.lru_cache(maxsize=8192)
def _window_on(day: dt.date, window: timing.Window, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The instants (UTC) at which the send window opens and closes on a local day."""
    midnight = dt.datetime.combine(day, dt.time())
    opens = _first_instant(dt.datetime.combine(day, window.start), tz)
    return opens, _first_instant(midnight + dt.timedelta(minutes=window.end_minutes), tz)


def _utc(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t.isoformat()} has no time zone: the calendar needs aware datetimes")
    return t.astimezone(dt.UTC)


@functools.lru_cache(maxsize=8192)
def _working_day_after(day: dt.date, count: int, calendar: model.Calendar) -> dt.date:
    """The count-th working day after day (count >= 1)."""
    if not calendar.workdays:
        raise ValueError(f"calendar {calendar.name!r} has no workdays")
    per_week = len(calendar.workdays)
    while count > 0:
        weeks = (count - 1) // per_week
        if weeks > 1:
            # Long waits jump whole weeks: each holds per_week workdays, less the holidays on them.
            end = day + dt.timedelta(weeks=weeks)
            count -= weeks * per_week - _holidays_on_workdays(day, end, calendar)
            day = end
        else:
            day += dt.timedelta(days=1)
            if is_working_day(day, calendar):
                count -= 1
    return day


def _holidays_on_workdays(after: dt.date, through: dt.date, calendar: model.Calendar) -> int:
    """How many holidays in (after, through] fall on one of the calendar's workdays."""
    if calendar.holiday_country is None:
        return 0
    days = _holidays(calendar.holiday_country, calendar.holiday_subdivision)
    one = dt.timedelta(days=1)
    found: list[dt.date] = days[after + one : through + one]
    return sum(1 for d in found if d.weekday() in calendar.workdays)


@functools.lru_cache(maxsize=8192)
def _first_instant(wall: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The first instant (UTC) at which the local clock in tz shows the naive wall time or a later one."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(dt.UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # it exists; fold=0 is its first occurrence if the hour repeats
    # Skipped by a spring-forward gap: fold=0 reads it with the offset before the jump (an
    # instant after it), fold=1 with the offset after (an instant before it).
    return _transition(wall.replace(tzinfo=tz, fold=1).astimezone(dt.UTC), first, tz)


@functools.lru_cache(maxsize=8192)
def _wall_clock(t: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The naive local time business days count from: what the clock shows, but never going back.

    During the second pass of a repeated hour the clock shows times it showed an hour ago;
    those starts count as the end of the repeated hour (03:00 when 03:00 CEST becomes
    02:00 CET), so that a later start never comes due earlier.
    """
    local = t.astimezone(tz)
    first_pass = local.replace(fold=0)
    offset, first_offset = local.utcoffset(), first_pass.utcoffset()
    if local.fold == 0 or offset is None or first_offset is None or first_offset <= offset:
        return local.replace(tzinfo=None)
    fall_back = _transition(first_pass.astimezone(dt.UTC), t, tz)
    return (fall_back + first_offset).replace(tzinfo=None)


def _transition(before: dt.datetime, after: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The instant between before and after (UTC, hours apart) at which tz's UTC offset changes."""
    target = after.astimezone(tz).utcoffset()
    lo, hi = math.floor(before.timestamp()), math.ceil(after.timestamp())
    # tz rules change offsets on whole seconds: search them.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return dt.datetime.fromtimestamp(hi, dt.UTC)
